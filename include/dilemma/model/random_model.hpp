#pragma once
// Deterministic random weights for any OptConfig, generated in memory: how
// tests and benchmarks run OPT-350m-sized models without downloading one.
// Uniform values with OPT's init std (0.02) keep activations in a realistic
// range; LayerNorms start at identity as in training.

#include <cmath>
#include <cstdint>
#include <memory>

#include "dilemma/model/opt_model.hpp"

namespace dilemma::model {

namespace detail {

// splitmix64: fast, seedable, identical on every platform (unlike
// std::uniform_real_distribution), which keeps benchmarks reproducible.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float symmetric() { return static_cast<float>(next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }

 private:
  std::uint64_t state_;
};

inline Matrix random_matrix(Eigen::Index rows, Eigen::Index cols, float std_dev, SplitMix64& rng) {
  const float half_width = std_dev * std::sqrt(3.0f);
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = half_width * rng.symmetric();
  return m;
}

}  // namespace detail

inline OptModel random_opt_model(const OptConfig& config, std::uint64_t seed) {
  config.validate("random_opt_model config");
  detail::SplitMix64 rng(seed);
  const auto std_dev = static_cast<float>(config.init_std);
  const Eigen::Index h = config.hidden_size, f = config.ffn_dim, p = config.word_embed_proj_dim;
  auto linear = [&](Eigen::Index out, Eigen::Index in, bool bias) {
    Linear l{f32_weight(detail::random_matrix(out, in, std_dev, rng)), {}};
    if (bias) l.bias = RowVector::Zero(out);
    return l;
  };
  auto layer_norm = [&] {
    LayerNorm norm;
    norm.eps = OptConfig::layer_norm_eps;
    if (config.layer_norm_elementwise_affine) {
      norm.weight = RowVector::Ones(h);
      norm.bias = RowVector::Zero(h);
    }
    return norm;
  };

  std::vector<Stage> stages;
  Embedding embedding;
  embedding.embed_tokens =
      std::make_shared<quant::QuantizedMatrix>(f32_weight(detail::random_matrix(config.vocab_size, p, std_dev, rng)));
  if (config.has_projection()) embedding.project_in = linear(h, p, false);
  embedding.embed_positions =
      detail::random_matrix(config.max_position_embeddings + OptConfig::position_offset, h, std_dev, rng);
  embedding.position_offset = OptConfig::position_offset;
  const auto tokens = embedding.embed_tokens;
  stages.emplace_back(0, std::move(embedding));

  for (Eigen::Index i = 0; i < config.num_hidden_layers; ++i) {
    DecoderLayer layer;
    layer.self_attn_layer_norm = layer_norm();
    layer.self_attn.q_proj = linear(h, h, config.enable_bias);
    layer.self_attn.k_proj = linear(h, h, config.enable_bias);
    layer.self_attn.v_proj = linear(h, h, config.enable_bias);
    layer.self_attn.out_proj = linear(h, h, config.enable_bias);
    layer.self_attn.num_heads = config.num_attention_heads;
    layer.final_layer_norm = layer_norm();
    layer.fc1 = linear(f, h, config.enable_bias);
    layer.fc2 = linear(h, f, config.enable_bias);
    layer.layer_norm_before = config.do_layer_norm_before;
    layer.activation = config.activation_function;
    stages.emplace_back(static_cast<std::size_t>(i + 1), std::move(layer));
  }

  Head head;
  if (config.has_final_layer_norm()) head.final_layer_norm = layer_norm();
  if (config.has_projection()) head.project_out = linear(p, h, false);
  head.lm_head = config.tie_word_embeddings ? tokens
                                            : std::make_shared<quant::QuantizedMatrix>(
                                                  f32_weight(detail::random_matrix(config.vocab_size, p, std_dev, rng)));
  stages.emplace_back(static_cast<std::size_t>(config.num_stages() - 1), std::move(head));
  return OptModel(config, std::move(stages));
}

}  // namespace dilemma::model
