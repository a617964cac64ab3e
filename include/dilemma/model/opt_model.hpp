#pragma once
// A whole OPT model in one process: its stages in order, run one after the
// other. The distributed runtime runs the same stages on different servers.

#include <cstddef>
#include <filesystem>
#include <span>
#include <utility>
#include <vector>

#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/stage.hpp"

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

  // Appends `ids` to the session (prefill when it holds many, decode when one)
  // and returns logits [ids.size() or 1, vocab_size].
  Matrix forward(std::span<const TokenId> ids, Session& session, Logits which = Logits::last) const {
    if (ids.empty()) dilemma::detail::fail("forward() needs at least one token id");
    StageInput input = std::vector<TokenId>(ids.begin(), ids.end());
    for (std::size_t i = 0; i + 1 < stages_.size(); ++i) {
      input = stages_[i].run(input, session.state(i));
    }
    Matrix& hidden = std::get<Matrix>(input);
    if (which == Logits::last && hidden.rows() > 1) {
      Matrix last = hidden.bottomRows(1);
      hidden = std::move(last);
    }
    return stages_.back().run(input, session.state(stages_.size() - 1));
  }

 private:
  OptConfig config_;
  std::vector<Stage> stages_;
};

}  // namespace dilemma::model
