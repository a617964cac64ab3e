#pragma once
// A stage is the unit the planner places on a server and quantizes: the
// embedding, one decoder layer, or the head. Each stage runs on its own, from
// an explicit input (token ids for the embedding, activations otherwise) to an
// explicit output, with per-request state that lives where the stage lives.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "dilemma/model/decoder_layer.hpp"
#include "dilemma/model/embedding.hpp"
#include "dilemma/model/head.hpp"
#include "dilemma/model/run_context.hpp"
#include "dilemma/quant/format.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

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

// A weight matrix of a stage that may be quantized, named as within the stage:
// the checkpoint tensor's name without the stage's prefix and ".weight"
// ("embed_tokens", "project_in"; "self_attn.q_proj" … "self_attn.out_proj",
// "fc1", "fc2"; "project_out", "lm_head").
template <typename Weight>
struct BasicNamedMatrix {
  std::string name;
  Weight* weight = nullptr;
};
using NamedMatrix = BasicNamedMatrix<quant::QuantizedMatrix>;
using ConstNamedMatrix = BasicNamedMatrix<const quant::QuantizedMatrix>;

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
  Matrix run(const StageInput& input, StageState& state, const RunContext& context = {}) const {
    Matrix output;
    Eigen::Index tokens = 0;
    if (kind() == StageKind::embedding) {
      const auto* ids = std::get_if<std::vector<TokenId>>(&input);
      if (ids == nullptr) dilemma::detail::fail("stage {} expects token ids, got activations", name());
      output = std::get<Embedding>(weights_)(*ids, state.tokens_seen, context);
      tokens = static_cast<Eigen::Index>(ids->size());
    } else {
      const auto* hidden = std::get_if<Matrix>(&input);
      if (hidden == nullptr) dilemma::detail::fail("stage {} expects activations, got token ids", name());
      if (hidden->cols() != input_width()) {
        dilemma::detail::fail("stage {} expects activations of width {}, got {}", name(), input_width(),
                              hidden->cols());
      }
      if (kind() == StageKind::decoder_layer) {
        output = std::get<DecoderLayer>(weights_)(*hidden, state.kv_cache, context);
      } else {
        output = std::get<Head>(weights_)(*hidden, context);
      }
      tokens = hidden->rows();
    }
    state.tokens_seen += tokens;
    return output;
  }

  // Every weight matrix of the stage that may be quantized, in the order of
  // the stage's computation. LayerNorms, biases and positions stay f32.
  std::vector<ConstNamedMatrix> matrices() const {
    std::vector<ConstNamedMatrix> named;
    for (const auto& slot : slots(weights_)) {
      named.push_back({std::string(slot.name), slot.shared ? slot.shared->get() : slot.plain});
    }
    return named;
  }
  // The same, writable (calibration replaces weights through it). A table
  // shared with another stage (the tied embedding and lm_head) is copied
  // first, so that changing it here leaves the other stage as it was.
  std::vector<NamedMatrix> matrices() {
    std::vector<NamedMatrix> named;
    for (const auto& slot : slots(weights_)) {
      if (slot.shared && slot.shared->use_count() > 1) {
        *slot.shared = std::make_shared<quant::QuantizedMatrix>(**slot.shared);
      }
      named.push_back({std::string(slot.name), slot.shared ? slot.shared->get() : slot.plain});
    }
    return named;
  }

  // The format of every matrix, or nullopt when they differ ("mixed", e.g.
  // after a calibration that chose formats per matrix).
  std::optional<quant::Format> format() const {
    std::optional<quant::Format> common;
    for (const auto& [name, weight] : matrices()) {
      if (common && *common != weight->format()) return std::nullopt;
      common = weight->format();
    }
    return common;
  }

  // Bytes of all the stage's tensors as stored: matrices with their scales and
  // offsets, and every other parameter (LayerNorms, biases, positions) in f32.
  // A table shared with another stage counts in both: each stage is placed
  // on its own.
  std::size_t weight_bytes() const {
    std::size_t bytes = 0;
    std::size_t matrix_parameters = 0;
    for (const auto& [name, weight] : matrices()) {
      bytes += weight->bytes();
      matrix_parameters += static_cast<std::size_t>(weight->rows() * weight->cols());
    }
    return bytes + (parameter_count() - matrix_parameters) * sizeof(float);
  }

  // Whether every matrix is stored in `format` (with the group size of
  // `scheme` for an integer format, and its asymmetry for int4).
  bool has_format(quant::Format format, const quant::QuantScheme& scheme = {}) const {
    return std::ranges::all_of(matrices(), [&](const ConstNamedMatrix& m) {
      const quant::QuantScheme& stored = m.weight->scheme();
      return m.weight->format() == format &&
             (!quant::is_integer_format(format) || stored.group_size == scheme.group_size) &&
             (format != quant::Format::int4 || stored.int4_asymmetric == scheme.int4_asymmetric);
    });
  }

  // Round-to-nearest quantization of every matrix of an f32 stage. Asking for
  // the format (and scheme) the stage already has changes nothing; any other
  // request on a stage that is not f32 is an error, since quantizing
  // quantized weights compounds their rounding error. Nothing changes when a
  // matrix cannot be quantized (e.g. the group size does not divide its width).
  void quantize(quant::Format target, const quant::QuantScheme& scheme = {}) {
    if (has_format(target, scheme)) return;
    check_quantizable(target, scheme);
    const auto all = slots(weights_);
    std::vector<quant::QuantizedMatrix> quantized;
    quantized.reserve(all.size());
    for (const auto& slot : all) {
      const quant::QuantizedMatrix& weight = slot.shared ? **slot.shared : *slot.plain;
      quantized.push_back(quant::QuantizedMatrix::quantize(weight.dequantize(), target, scheme,
                                                           fmt::format("{}.{}", name(), slot.name)));
    }
    for (std::size_t i = 0; i < all.size(); ++i) {
      // A shared table gets a new one: the other stage keeps the f32 original.
      if (all[i].shared) {
        *all[i].shared = std::make_shared<quant::QuantizedMatrix>(std::move(quantized[i]));
      } else {
        *all[i].plain = std::move(quantized[i]);
      }
    }
  }

  // Throws the error quantize(target, scheme) would throw for a stage that is
  // not f32, without changing anything.
  void check_quantizable(quant::Format target, const quant::QuantScheme& scheme = {}) const {
    if (has_format(target, scheme) || has_format(quant::Format::f32)) return;
    const auto current = format();
    dilemma::detail::fail(
        "stage {} is {}, not f32: cannot quantize it to {}{} (quantize from f32 weights; re-quantizing quantized "
        "weights compounds their rounding error)",
        name(), current ? quant::format_name(*current) : "mixed", quant::format_name(target),
        current == target ? fmt::format(" with group size {}", scheme.group_size) : "");
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
  // Where a matrix lives: in the stage (plain) or behind a pointer another
  // stage may share. Const when the stage is.
  template <bool Const>
  struct Slot {
    using Weight = std::conditional_t<Const, const quant::QuantizedMatrix, quant::QuantizedMatrix>;
    using Shared = std::conditional_t<Const, const std::shared_ptr<quant::QuantizedMatrix>,
                                      std::shared_ptr<quant::QuantizedMatrix>>;
    std::string_view name;
    Weight* plain = nullptr;
    Shared* shared = nullptr;
  };

  template <typename W>
  static std::vector<Slot<std::is_const_v<W>>> slots(W& weights) {
    std::vector<Slot<std::is_const_v<W>>> all;
    std::visit(
        [&](auto& w) {
          using T = std::remove_cvref_t<decltype(w)>;
          auto plain = [&](std::string_view name, auto& linear) { all.push_back({name, &linear.weight, nullptr}); };
          if constexpr (std::is_same_v<T, Embedding>) {
            all.push_back({"embed_tokens", nullptr, &w.embed_tokens});
            if (w.project_in) plain("project_in", *w.project_in);
          } else if constexpr (std::is_same_v<T, DecoderLayer>) {
            plain("self_attn.q_proj", w.self_attn.q_proj);
            plain("self_attn.k_proj", w.self_attn.k_proj);
            plain("self_attn.v_proj", w.self_attn.v_proj);
            plain("self_attn.out_proj", w.self_attn.out_proj);
            plain("fc1", w.fc1);
            plain("fc2", w.fc2);
          } else {
            if (w.project_out) plain("project_out", *w.project_out);
            all.push_back({"lm_head", nullptr, &w.lm_head});
          }
        },
        weights);
    return all;
  }

  std::size_t index_;
  Weights weights_;
};

}  // namespace dilemma::model
