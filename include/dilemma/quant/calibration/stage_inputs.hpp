#pragma once
// Calibration text walked through a model one stage at a time: the inputs of
// the current stage for every calibration sequence (token ids for the
// embedding, activations after it), from which the stage's matrix inputs are
// captured (H = Σ x xᵀ per matrix, input_statistics.hpp) and which the stage
// then turns into the next stage's inputs. Keeping only one stage boundary
// and one stage's statistics in memory is what lets calibration and profiling
// handle models whose every H together would not fit (OPT-350m: 24 layers with
// a 4096 × 4096 H for fc2 alone).
//
// Every sequence runs through a stage as one prefill call with a fresh state,
// so a decoder layer attends within the sequence only, as in evaluation.

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/model/run_context.hpp"
#include "dilemma/model/stage.hpp"
#include "dilemma/quant/calibration/input_statistics.hpp"
#include "dilemma/token_id.hpp"

namespace dilemma::quant::calibration {

// The captured inputs of one matrix of a stage.
struct MatrixInputs {
  std::string name;  // as in Stage::matrices(): "fc1", "self_attn.q_proj", …
  InputStatistics statistics;
};

// The matrices of one stage whose inputs were seen, in the order the stage
// first multiplied them. A matrix that is looked up rather than multiplied
// (the embedding table) never appears.
class StageInputs {
 public:
  const std::vector<MatrixInputs>& matrices() const { return matrices_; }
  // The statistics of `name`, or null when it was not captured.
  const InputStatistics* find(std::string_view name) const {
    const auto it = std::ranges::find(matrices_, name, &MatrixInputs::name);
    return it == matrices_.end() ? nullptr : &it->statistics;
  }
  void add(std::string_view name, const model::Matrix& input, std::string_view stage) {
    auto it = std::ranges::find(matrices_, name, &MatrixInputs::name);
    if (it == matrices_.end()) {
      matrices_.push_back({std::string(name), InputStatistics(input.cols(), fmt::format("{}.{}", stage, name))});
      it = std::prev(matrices_.end());
    }
    it->statistics.add(input);
  }

 private:
  std::vector<MatrixInputs> matrices_;
};

class StageActivations {
 public:
  // The inputs of stage 0 (the embedding): the calibration sequences' ids.
  explicit StageActivations(std::vector<std::vector<TokenId>> sequences) {
    if (sequences.empty()) dilemma::detail::fail("calibration: no calibration sequences");
    for (auto& ids : sequences) {
      if (ids.empty()) dilemma::detail::fail("calibration: sequence {} has no tokens", inputs_.size());
      tokens_ += ids.size();
      inputs_.emplace_back(std::move(ids));
    }
  }

  // Index of the stage these are the inputs of.
  std::size_t stage() const { return stage_; }
  std::size_t sequences() const { return inputs_.size(); }
  // Tokens over all sequences: the samples each captured H sums.
  std::size_t tokens() const { return tokens_; }

  // Runs `stage` on every sequence and captures the inputs of its matrices
  // (only those named in `only`, when given).
  StageInputs capture(const model::Stage& stage, const KernelContext& kernels = {},
                      std::span<const std::string> only = {}) const {
    check_stage(stage);
    StageInputs captured;
    const std::string stage_name = stage.name();
    model::RunContext context{kernels, [&](std::string_view matrix, const model::Matrix& input) {
                                if (only.empty() || std::ranges::find(only, matrix) != only.end()) {
                                  captured.add(matrix, input, stage_name);
                                }
                              }};
    for (const auto& input : inputs_) {
      model::StageState state;
      stage.run(input, state, context);
    }
    return captured;
  }

  // Replaces the inputs by `stage`'s outputs: the inputs of the next stage.
  void advance(const model::Stage& stage, const KernelContext& kernels = {}) {
    check_stage(stage);
    if (stage.kind() == model::StageKind::head) {
      dilemma::detail::fail("calibration: the head is the last stage, there is no stage after it to advance to");
    }
    const model::RunContext context{kernels, {}};
    for (auto& input : inputs_) {
      model::StageState state;
      input = stage.run(input, state, context);
    }
    ++stage_;
  }

 private:
  void check_stage(const model::Stage& stage) const {
    if (stage.index() != stage_) {
      dilemma::detail::fail("calibration: the activations are the inputs of stage {}, not of stage {} ({})", stage_,
                            stage.index(), stage.name());
    }
  }

  std::vector<model::StageInput> inputs_;
  std::size_t stage_ = 0;
  std::size_t tokens_ = 0;
};

}  // namespace dilemma::quant::calibration
