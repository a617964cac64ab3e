#pragma once
// What one forward pass of dilemma's fp32 OPT runtime has to move and compute,
// counted from the model's actual stages, so that measured times can be set
// against the machine's limits: bytes read per decoded token (decode is a
// chain of matrix–vector products, bound by memory) and floating-point
// operations per prefill (a chain of matrix–matrix products, bound by compute).

#include <cstddef>
#include <variant>

#include "dilemma/model/opt_model.hpp"

namespace dilemma::bench {

// Weight bytes one decode step reads, by stage kind.
struct DecodeWeightTraffic {
  std::size_t embedding = 0;
  std::size_t decoder_layers = 0;
  std::size_t head = 0;
  std::size_t total() const { return embedding + decoder_layers + head; }
};

namespace detail {

template <typename... Visitors>
struct Overloaded : Visitors... {
  using Visitors::operator()...;
};

constexpr std::size_t scalar_bytes = sizeof(model::Matrix::Scalar);

inline std::size_t linear_multiply_adds(const model::Linear& linear) {
  return static_cast<std::size_t>(linear.weight.rows() * linear.weight.cols());
}

}  // namespace detail

// Bytes of weights a one-token decode step reads in `stage`, as stored (f32,
// f16, or integer codes with their group scales):
// - embedding: ONE row of the token table (a lookup, not a product), ONE row
//   of the position table, and all of project_in; counted as f32 whatever the
//   format (an upper bound, under 0.1 % of a decode step's traffic);
// - decoder layer: everything (Stage::weight_bytes) — every Linear weight and
//   bias and both LayerNorms, since each output feature is a dot product over
//   a full row;
// - head: everything, including the whole [vocab × proj] lm_head matrix,
//   because the logits of every vocabulary entry are needed to pick the next
//   token. In a tied f32 model this is the same memory as the embedding table,
//   so the token row the embedding read is counted twice (a few KiB).
inline std::size_t decode_weight_bytes(const model::Stage& stage) {
  if (const auto* e = std::get_if<model::Embedding>(&stage.weights())) {
    const auto elements = static_cast<std::size_t>(e->embed_tokens->cols() + e->embed_positions.cols()) +
                          (e->project_in ? e->project_in->parameter_count() : 0);
    return elements * detail::scalar_bytes;
  }
  return stage.weight_bytes();
}

inline DecodeWeightTraffic decode_weight_traffic(const model::OptModel& model) {
  DecodeWeightTraffic traffic;
  for (const auto& stage : model.stages()) {
    const std::size_t bytes = decode_weight_bytes(stage);
    switch (stage.kind()) {
      case model::StageKind::embedding: traffic.embedding += bytes; break;
      case model::StageKind::decoder_layer: traffic.decoder_layers += bytes; break;
      case model::StageKind::head: traffic.head += bytes; break;
    }
  }
  return traffic;
}

// Bytes of keys and values the attention of every layer reads in the step that
// just ran: each layer's whole cache, the new token's row included.
inline std::size_t kv_cache_bytes(const model::OptModel& model, model::Session& session) {
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < model.stages().size(); ++i) bytes += session.state(i).kv_cache.bytes();
  return bytes;
}

// Floating-point operations (2 per multiply-add) of a prefill of `tokens`
// tokens into an empty session that returns only the last position's logits,
// as the implementation executes them: attention computes the full
// [tokens × tokens] score matrix per head before masking, and the head runs on
// one row.
inline double prefill_flops(const model::OptModel& model, std::size_t tokens) {
  const double t = static_cast<double>(tokens);
  double multiply_adds = 0;
  for (const auto& stage : model.stages()) {
    multiply_adds += std::visit(
        detail::Overloaded{
            [&](const model::Embedding& e) {
              return e.project_in ? t * static_cast<double>(detail::linear_multiply_adds(*e.project_in)) : 0.0;
            },
            [&](const model::DecoderLayer& layer) {
              const auto& a = layer.self_attn;
              const auto projections =
                  detail::linear_multiply_adds(a.q_proj) + detail::linear_multiply_adds(a.k_proj) +
                  detail::linear_multiply_adds(a.v_proj) + detail::linear_multiply_adds(a.out_proj) +
                  detail::linear_multiply_adds(layer.fc1) + detail::linear_multiply_adds(layer.fc2);
              // q·kᵀ and scores·v, each [t × t] per head over head_dim: t² · hidden.
              const double attention = 2 * t * t * static_cast<double>(a.q_proj.out_features());
              return t * static_cast<double>(projections) + attention;
            },
            [&](const model::Head& head) {
              return static_cast<double>(head.lm_head->rows() * head.lm_head->cols()) +
                     (head.project_out ? static_cast<double>(detail::linear_multiply_adds(*head.project_out)) : 0.0);
            }},
        stage.weights());
  }
  return 2 * multiply_adds;
}

}  // namespace dilemma::bench
