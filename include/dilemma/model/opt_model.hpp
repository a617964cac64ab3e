#pragma once
// A whole OPT model in one process: its stages in order, run one after the
// other. The distributed runtime runs the same stages on different servers.

#include <cstddef>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <span>
#include <utility>
#include <vector>

#include <fmt/ranges.h>

#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/run_context.hpp"
#include "dilemma/model/stage.hpp"
#include "dilemma/quant/format_assignment.hpp"

namespace dilemma::model {

// Which positions' logits forward() returns: every position (scoring text) or
// only the last one (generation, where the head's cost is one row, not T).
enum class Logits { all, last };

// One request's state in every stage of a model.
class Session {
 public:
  explicit Session(std::size_t stage_count) : states_(stage_count) {}
  // Tokens processed so far (prompt plus generated).
  Eigen::Index length() const { return states_.empty() ? 0 : states_.front().tokens_seen; }
  StageState& state(std::size_t stage) { return states_.at(stage); }

 private:
  std::vector<StageState> states_;
};

class OptModel {
 public:
  OptModel(OptConfig config, std::vector<Stage> stages) : config_(std::move(config)), stages_(std::move(stages)) {
    const auto expected = static_cast<std::size_t>(config_.num_stages());
    if (stages_.size() != expected) {
      dilemma::detail::fail("an OPT model with {} layers has {} stages, got {}", config_.num_hidden_layers,
                            expected, stages_.size());
    }
    for (std::size_t i = 0; i < stages_.size(); ++i) {
      const StageKind expected_kind = i == 0                  ? StageKind::embedding
                                      : i + 1 == stages_.size() ? StageKind::head
                                                                : StageKind::decoder_layer;
      if (stages_[i].kind() != expected_kind || stages_[i].index() != i) {
        dilemma::detail::fail("stage {} ({}) is out of order: expected embedding, layers, head", i,
                              stages_[i].name());
      }
    }
  }

  static OptModel load(const std::filesystem::path& model_dir) {
    const auto checkpoint = OptCheckpoint::open(model_dir);
    return OptModel(checkpoint.config(), checkpoint.load_all_stages());
  }

  const OptConfig& config() const { return config_; }
  std::span<const Stage> stages() const { return stages_; }
  std::span<Stage> stages() { return stages_; }
  Session new_session() const { return Session(stages_.size()); }

  std::size_t parameter_count() const {
    std::size_t count = 0;
    for (const auto& stage : stages_) count += stage.parameter_count();
    // A tied lm_head is the embedding's matrix: count it once.
    if (config_.tie_word_embeddings) count -= static_cast<std::size_t>(config_.vocab_size * config_.word_embed_proj_dim);
    return count;
  }

  // Bytes of all weights as stored (Stage::weight_bytes), a table the tied
  // embedding and head share counted once.
  std::size_t weight_bytes() const {
    std::size_t bytes = 0;
    for (const auto& stage : stages_) bytes += stage.weight_bytes();
    const auto& embedding = std::get<Embedding>(stages_.front().weights());
    const auto& head = std::get<Head>(stages_.back().weights());
    if (embedding.embed_tokens == head.lm_head) bytes -= head.lm_head->bytes();
    return bytes;
  }

  // The format of each stage (nullopt for a stage whose matrices differ).
  std::vector<std::optional<quant::Format>> formats() const {
    std::vector<std::optional<quant::Format>> all;
    for (const auto& stage : stages_) all.push_back(stage.format());
    return all;
  }

  // Round-to-nearest quantization of each stage to its format (Stage::quantize):
  // one format per stage, embedding, layers, head. Checked before anything
  // changes: the count, and that the group size divides the input width of
  // every matrix that gets an integer format.
  void quantize(std::span<const quant::Format> formats, const quant::QuantScheme& scheme = {}) {
    if (formats.size() != stages_.size()) {
      dilemma::detail::fail("quantize(): {} formats given, expected N = 2 + layers = {} ({})", formats.size(),
                            stages_.size(), quant::detail::describe_stages(stages_.size()));
    }
    check_group_size(formats, scheme);
    for (std::size_t i = 0; i < stages_.size(); ++i) stages_[i].check_quantizable(formats[i], scheme);
    for (std::size_t i = 0; i < stages_.size(); ++i) stages_[i].quantize(formats[i], scheme);
  }

  void quantize(const quant::FormatAssignment& assignment) {
    quantize(assignment.resolve(stages_.size()), assignment.scheme());
  }

  // Appends `ids` to the session (prefill when it holds many, decode when one)
  // and returns logits [ids.size() or 1, vocab_size].
  Matrix forward(std::span<const TokenId> ids, Session& session, Logits which = Logits::last,
                 const RunContext& context = {}) const {
    if (ids.empty()) dilemma::detail::fail("forward() needs at least one token id");
    StageInput input = std::vector<TokenId>(ids.begin(), ids.end());
    for (std::size_t i = 0; i + 1 < stages_.size(); ++i) {
      input = stages_[i].run(input, session.state(i), context);
    }
    Matrix& hidden = std::get<Matrix>(input);
    if (which == Logits::last && hidden.rows() > 1) {
      Matrix last = hidden.bottomRows(1);
      hidden = std::move(last);
    }
    return stages_.back().run(input, session.state(stages_.size() - 1), context);
  }

 private:
  // Integer groups must tile every row: the group size divides the input
  // width (columns) of each matrix that gets an integer format.
  void check_group_size(std::span<const quant::Format> formats, const quant::QuantScheme& scheme) const {
    quant::detail::check_scheme(scheme, "quantize()");
    std::int64_t common = 0;  // gcd of the widths that must be divisible
    std::optional<std::string> offender;
    for (std::size_t i = 0; i < stages_.size(); ++i) {
      if (!quant::is_integer_format(formats[i])) continue;
      for (const auto& [name, weight] : stages_[i].matrices()) {
        common = std::gcd(common, static_cast<std::int64_t>(weight->cols()));
        if (!offender && weight->cols() % scheme.group_size != 0) {
          offender = fmt::format("the {} columns of {}.{} [{} × {}]", weight->cols(), stages_[i].name(), name,
                                 weight->rows(), weight->cols());
        }
      }
    }
    if (!offender) return;
    std::vector<std::int64_t> fitting;
    for (std::int64_t size = quant::int4_block; size <= common; size += quant::int4_block) {
      if (common % size == 0) fitting.push_back(size);
    }
    dilemma::detail::fail("group size {} does not divide {} ({})", scheme.group_size, *offender,
                          fitting.empty()
                              ? std::string("no group size fits every matrix given an integer format")
                              : fmt::format("group sizes that fit every matrix given an integer format: {}",
                                            fmt::join(fitting, ", ")));
  }

  OptConfig config_;
  std::vector<Stage> stages_;
};

}  // namespace dilemma::model
