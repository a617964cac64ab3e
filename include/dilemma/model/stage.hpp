#pragma once
// A stage is the unit the planner places on a server and quantizes: the
// embedding, one decoder layer, or the head. Each stage runs on its own, from
// an explicit input (token ids for the embedding, activations otherwise) to an
// explicit output, with per-request state that lives where the stage lives.

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "dilemma/model/decoder_layer.hpp"
#include "dilemma/model/embedding.hpp"
#include "dilemma/model/head.hpp"

namespace dilemma::model {

enum class StageKind { embedding, decoder_layer, head };

// What one request has left behind in one stage: the number of tokens the stage
// has processed (the embedding's next position) and, for a decoder layer, its
// keys and values.
struct StageState {
  Eigen::Index tokens_seen = 0;
  KvCache kv_cache;
};

// Token ids enter the embedding stage; activations enter every other stage.
using StageInput = std::variant<std::vector<TokenId>, Matrix>;

class Stage {
 public:
  // Alternatives in the order of StageKind, which kind() relies on.
  using Weights = std::variant<Embedding, DecoderLayer, Head>;

  Stage(std::size_t index, Weights weights) : index_(index), weights_(std::move(weights)) {}

  std::size_t index() const { return index_; }
  StageKind kind() const { return static_cast<StageKind>(weights_.index()); }
  // "embedding", "layer.<i>" (0-based decoder layer) or "head".
  std::string name() const {
    switch (kind()) {
      case StageKind::embedding: return "embedding";
      case StageKind::decoder_layer: return fmt::format("layer.{}", index_ - 1);
      case StageKind::head: return "head";
    }
    return {};
  }
  const Weights& weights() const { return weights_; }
  Weights& weights() { return weights_; }
  std::size_t parameter_count() const {
    return std::visit([](const auto& w) { return w.parameter_count(); }, weights_);
  }

  // Runs the stage on the next input.size() tokens of a request.
  Matrix run(const StageInput& input, StageState& state) const {
    Matrix output;
    Eigen::Index tokens = 0;
    if (kind() == StageKind::embedding) {
      const auto* ids = std::get_if<std::vector<TokenId>>(&input);
      if (ids == nullptr) dilemma::detail::fail("stage {} expects token ids, got activations", name());
      output = std::get<Embedding>(weights_)(*ids, state.tokens_seen);
      tokens = static_cast<Eigen::Index>(ids->size());
    } else {
      const auto* hidden = std::get_if<Matrix>(&input);
      if (hidden == nullptr) dilemma::detail::fail("stage {} expects activations, got token ids", name());
      if (hidden->cols() != input_width()) {
        dilemma::detail::fail("stage {} expects activations of width {}, got {}", name(), input_width(),
                              hidden->cols());
      }
      if (kind() == StageKind::decoder_layer) {
        output = std::get<DecoderLayer>(weights_)(*hidden, state.kv_cache);
      } else {
        output = std::get<Head>(weights_)(*hidden);
      }
      tokens = hidden->rows();
    }
    state.tokens_seen += tokens;
    return output;
  }

  // Width of the activations this stage takes (0 for the embedding, which takes ids).
  Eigen::Index input_width() const {
    switch (kind()) {
      case StageKind::embedding: return 0;
      case StageKind::decoder_layer: return std::get<DecoderLayer>(weights_).fc2.out_features();
      case StageKind::head: {
        const auto& head = std::get<Head>(weights_);
        return head.project_out ? head.project_out->in_features() : head.lm_head->cols();
      }
    }
    return 0;
  }

 private:
  std::size_t index_;
  Weights weights_;
};

}  // namespace dilemma::model
