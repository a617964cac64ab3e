#pragma once
// What one stage stores and what one call of it computes and moves, counted
// from the model's shapes (OptConfig) the way dilemma's runtime executes it.
// These counts feed the roofline (analytic_costs) and the memory constraint;
// docs/model.md lists them as formulas.
//
// Storage: every weight matrix the runtime quantizes (model::Stage::matrices():
// the linear layers and the token table) is held in the stage's format; the
// learned positions, biases and LayerNorm parameters stay float32, as the
// runtime keeps them, so that a stage's bytes here equal
// model::Stage::weight_bytes() after quantization.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/model/stage.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::cost {

struct MatrixShape {
  std::int64_t rows = 0;
  std::int64_t cols = 0;  // the input dimension, along which integer formats group
};

struct StageShape {
  model::StageKind kind = model::StageKind::embedding;
  std::string name;
  std::vector<MatrixShape> matrices;  // stored in the stage's format
  std::int64_t vector_values = 0;     // positions, biases and LayerNorm weights, float32
};

// Named like model::Stage::name(): "embedding", "layer.<i>", "head".
inline std::string stage_name(const model::OptConfig& config, std::size_t stage) {
  const auto count = static_cast<std::size_t>(config.num_stages());
  if (stage >= count) dilemma::detail::fail("stage {} does not exist: the model has {} stages", stage, count);
  if (stage == 0) return "embedding";
  if (stage + 1 == count) return "head";
  return fmt::format("layer.{}", stage - 1);
}

inline StageShape stage_shape(const model::OptConfig& config, std::size_t stage) {
  const std::int64_t h = config.hidden_size, p = config.word_embed_proj_dim, f = config.ffn_dim;
  const std::int64_t layer_norm = config.layer_norm_elementwise_affine ? 2 * h : 0;
  StageShape shape;
  shape.name = stage_name(config, stage);
  if (stage == 0) {
    shape.kind = model::StageKind::embedding;
    shape.matrices = {{config.vocab_size, p}};
    if (config.has_projection()) shape.matrices.push_back({h, p});
    shape.vector_values = (config.max_position_embeddings + model::OptConfig::position_offset) * h;
  } else if (stage + 1 == static_cast<std::size_t>(config.num_stages())) {
    shape.kind = model::StageKind::head;
    // A tied head needs the token table too: a server holding the head but not
    // the embedding keeps its own copy, so each stage counts it.
    shape.matrices = {{config.vocab_size, p}};
    if (config.has_projection()) shape.matrices.push_back({p, h});
    if (config.has_final_layer_norm()) shape.vector_values = layer_norm;
  } else {
    shape.kind = model::StageKind::decoder_layer;
    shape.matrices = {{h, h}, {h, h}, {h, h}, {h, h}, {f, h}, {h, f}};
    shape.vector_values = 2 * layer_norm + (config.enable_bias ? 5 * h + f : 0);
  }
  return shape;
}

// Whether a format can store every matrix of a stage. Integer formats follow
// quant::QuantizedMatrix (docs/quantization-scheme.md): the group size must be
// a positive multiple of 32 (the int4 kernels' block) and divide every
// matrix's input dimension, since groups are never ragged.
inline bool can_store(const StageShape& shape, quant::Format format, const quant::QuantScheme& scheme) {
  if (format == quant::Format::f32 || format == quant::Format::f16) return true;
  if (scheme.group_size <= 0 || scheme.group_size % 32 != 0) return false;
  return std::all_of(shape.matrices.begin(), shape.matrices.end(),
                     [&](const MatrixShape& matrix) { return matrix.cols % scheme.group_size == 0; });
}

// Bytes of a matrix in a format. Integer formats pack each row's values (two
// int4 per byte) and keep one float32 scale (and, for asymmetric int4, one
// float32 offset) per group of group_size values; the group size must divide
// the columns (see can_store).
inline double matrix_bytes(MatrixShape shape, quant::Format format, const quant::QuantScheme& scheme) {
  const auto values = static_cast<double>(shape.rows) * static_cast<double>(shape.cols);
  if (format == quant::Format::f32) return 4.0 * values;
  if (format == quant::Format::f16) return 2.0 * values;
  if (scheme.group_size <= 0 || shape.cols % scheme.group_size != 0) {
    dilemma::detail::fail("a group size of {} does not divide the {} columns of a [{} × {}] matrix", scheme.group_size,
                          shape.cols, shape.rows, shape.cols);
  }
  const double groups = values / static_cast<double>(scheme.group_size);
  if (format == quant::Format::int8) return values + 4.0 * groups;
  return values / 2.0 + (scheme.int4_asymmetric ? 8.0 : 4.0) * groups;
}

inline double weight_bytes(const StageShape& shape, quant::Format format, const quant::QuantScheme& scheme) {
  double bytes = 4.0 * static_cast<double>(shape.vector_values);
  for (const MatrixShape& matrix : shape.matrices) bytes += matrix_bytes(matrix, format, scheme);
  return bytes;
}

// Keys and values of `tokens` positions, float32 as model::KvCache stores them.
inline double kv_cache_bytes(const model::OptConfig& config, std::size_t stage, std::int64_t tokens) {
  if (stage_shape(config, stage).kind != model::StageKind::decoder_layer) return 0.0;
  return 2.0 * static_cast<double>(config.hidden_size) * static_cast<double>(tokens) * 4.0;
}

// One call of a stage: floating-point operations (2 per multiply-add) and
// bytes moved through memory (weights read, KV cache read and appended,
// activations in and out).
struct Work {
  double flops = 0.0;
  double bytes = 0.0;
};

// A call on `tokens` new tokens after `context` tokens already in the caches.
// The head computes logits for the last position only (generation samples
// from it), whatever `tokens` is.
inline Work stage_work(const model::OptConfig& config, std::size_t stage, quant::Format format,
                       const quant::QuantScheme& scheme, std::int64_t tokens, std::int64_t context) {
  const StageShape shape = stage_shape(config, stage);
  const auto t = static_cast<double>(tokens);
  const auto h = static_cast<double>(config.hidden_size);
  const auto p = static_cast<double>(config.word_embed_proj_dim);
  Work work;
  switch (shape.kind) {
    case model::StageKind::embedding: {
      // A lookup reads only the rows of the tokens' ids (in the format) and
      // positions (float32), then writes t rows of activations.
      work.bytes = matrix_bytes({tokens, shape.matrices[0].cols}, format, scheme) + 4.0 * t * h + 4.0 * t + 4.0 * t * h;
      if (config.has_projection()) {
        work.flops = 2.0 * t * h * p;
        work.bytes += matrix_bytes(shape.matrices[1], format, scheme);
      }
      break;
    }
    case model::StageKind::decoder_layer: {
      const auto f = static_cast<double>(config.ffn_dim);
      const double attended = static_cast<double>(context + tokens);
      // Projections, then q·kᵀ and scores·v over every cached and new position.
      work.flops = 2.0 * t * (4.0 * h * h + 2.0 * h * f) + 4.0 * t * attended * h;
      work.bytes =
          weight_bytes(shape, format, scheme) + kv_cache_bytes(config, stage, context + tokens) + 2.0 * 4.0 * t * h;
      break;
    }
    case model::StageKind::head: {
      const auto vocab = static_cast<double>(config.vocab_size);
      work.flops = 2.0 * vocab * p + (config.has_projection() ? 2.0 * p * h : 0.0);
      work.bytes = weight_bytes(shape, format, scheme) + 4.0 * h + 4.0 * vocab;
      break;
    }
  }
  return work;
}

}  // namespace dilemma::cost
