#pragma once
// One OPT decoder layer: self-attention and a two-layer feed-forward network,
// each wrapped in a residual connection with LayerNorm before (OPT-125m,
// 1.3b, …) or after (OPT-350m) the sublayer.

#include <cmath>
#include <cstddef>
#include <numbers>

#include "dilemma/model/attention.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/model/layer_norm.hpp"

namespace dilemma::model {

namespace detail {

inline void activate_in_place(Matrix& x, Activation activation) {
  switch (activation) {
    case Activation::relu:
      x = x.cwiseMax(0.0f);
      return;
    case Activation::gelu:
      x = x.unaryExpr([](float v) { return 0.5f * v * (1.0f + std::erf(v * std::numbers::sqrt2_v<float> / 2)); });
      return;
    case Activation::gelu_tanh:
      x = x.unaryExpr([](float v) {
        constexpr float k = 0.7978845608028654f;  // sqrt(2/pi)
        return 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
      });
      return;
    case Activation::silu:
      x = x.unaryExpr([](float v) { return v / (1.0f + std::exp(-v)); });
      return;
  }
}

}  // namespace detail

struct DecoderLayer {
  LayerNorm self_attn_layer_norm;
  SelfAttention self_attn;
  LayerNorm final_layer_norm;
  Linear fc1, fc2;
  bool layer_norm_before = true;
  Activation activation = Activation::relu;

  std::size_t parameter_count() const {
    return self_attn_layer_norm.parameter_count() + self_attn.parameter_count() +
           final_layer_norm.parameter_count() + fc1.parameter_count() + fc2.parameter_count();
  }

  Matrix operator()(const Matrix& input, KvCache& cache, const RunContext& context = {}) const {
    Matrix hidden = input;
    if (layer_norm_before) self_attn_layer_norm.apply_in_place(hidden);
    hidden = input + self_attn(hidden, cache, context);
    if (!layer_norm_before) self_attn_layer_norm.apply_in_place(hidden);

    Matrix ffn_in = hidden;
    if (layer_norm_before) final_layer_norm.apply_in_place(ffn_in);
    context.observe("fc1", ffn_in);
    Matrix inner = fc1(ffn_in, context);
    detail::activate_in_place(inner, activation);
    context.observe("fc2", inner);
    hidden += fc2(inner, context);
    if (!layer_norm_before) final_layer_norm.apply_in_place(hidden);
    return hidden;
  }
};

}  // namespace dilemma::model
