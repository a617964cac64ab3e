#pragma once
// The accuracy table E measured on a checkpoint's own weights: the paper's
// normalized weight difference of round-to-nearest quantization,
//   E[s][f] = Σ_{W ∈ stage s} ‖W − Q_f(W)‖²_F / Σ_{s'} Σ_{W ∈ stage s'} ‖W‖²_F,
// over the matrices the runtime quantizes (model::Stage::matrices(); a tied
// token table counts in the embedding and in the head, since each stage
// quantizes its own copy). One pass over the weights, each matrix quantized
// with quant::QuantizedMatrix::quantize as the runtime does, so it replaces
// the Gaussian proxy whenever the weights are at hand. A profile's errors
// (cost::Profile::error_table) also cover calibrated quantization and the
// output-aware metric.

#include <array>
#include <cstddef>
#include <string>

#include <Eigen/Core>
#include <fmt/format.h>

#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/stage_work.hpp"
#include "dilemma/error.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/quant/format.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::cost {

inline ErrorTable rtn_error_table(const model::OptCheckpoint& checkpoint, const quant::QuantScheme& scheme = {}) {
  if (checkpoint.quantization()) {
    dilemma::detail::fail(
        "{}: is a quantized checkpoint; weight differences need the float teacher's weights (give the f32 model "
        "directory, or a profile's errors)",
        checkpoint.directory().string());
  }
  const model::OptConfig& config = checkpoint.config();
  const auto count = static_cast<std::size_t>(config.num_stages());
  std::vector<std::array<double, quant::all_formats.size()>> differences(count);
  std::vector<bool> storable(count * quant::all_formats.size(), false);
  double teacher_norm = 0.0;
  for (std::size_t s = 0; s < count; ++s) {
    const model::Stage stage = checkpoint.load_stage(s);
    const StageShape shape = stage_shape(config, s);
    differences[s].fill(0.0);
    for (quant::Format format : quant::all_formats) {
      storable[s * quant::all_formats.size() + static_cast<std::size_t>(format)] = can_store(shape, format, scheme);
    }
    for (const auto& [name, weight] : stage.matrices()) {
      const model::Matrix teacher = weight->dequantize();
      teacher_norm += teacher.cast<double>().squaredNorm();
      for (quant::Format format : quant::all_formats) {
        if (format == quant::Format::f32 || !storable[s * quant::all_formats.size() + static_cast<std::size_t>(format)])
          continue;
        const model::Matrix student =
            quant::QuantizedMatrix::quantize(teacher, format, scheme, fmt::format("{}.{}", stage.name(), name))
                .dequantize();
        differences[s][static_cast<std::size_t>(format)] += (teacher - student).cast<double>().squaredNorm();
      }
    }
  }
  if (!(teacher_norm > 0.0)) {
    dilemma::detail::fail("{}: every weight matrix is zero; the normalized weight difference is undefined",
                          checkpoint.directory().string());
  }
  ErrorTable table;
  table.metric = fmt::format(
      "normalized weight difference of round-to-nearest quantization (group size {}{}) of the weights in {}",
      scheme.group_size, scheme.int4_asymmetric ? ", asymmetric int4" : "", checkpoint.directory().string());
  for (std::size_t s = 0; s < count; ++s) {
    table.stage_names.push_back(stage_name(config, s));
    FormatErrors errors{};
    for (quant::Format format : quant::all_formats) {
      const std::size_t f = static_cast<std::size_t>(format);
      // A format that cannot store the stage has no entry: the planner cannot use it there.
      if (storable[s * quant::all_formats.size() + f]) errors[f] = differences[s][f] / teacher_norm;
    }
    table.errors.push_back(errors);
  }
  return table;
}

}  // namespace dilemma::cost
