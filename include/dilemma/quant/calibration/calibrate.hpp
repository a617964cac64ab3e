#pragma once
// Calibration of whole stages and models: every matrix of a stage quantized
// with a method of method.hpp on the inputs it actually sees.
//
// Sequential, as GPTQ quantizes a model: a stage is calibrated on the inputs
// that the already-quantized stages before it produce (the student's prefix,
// not the teacher's), so that each stage also compensates for the error
// accumulated before it; and within a stage the matrices are quantized in the
// order of the computation, each on inputs computed with the matrices before
// it already quantized (q/k/v, then out_proj, then fc1, then fc2). Matrices
// fed the very same inputs (q, k and v) are quantized in the same round.
// The teacher's own inputs would make every stage fit a situation the student
// never runs in.
//
// The embedding table is looked up, never multiplied, so it has no inputs and
// is always rounded to nearest; a tied head's lm_head is a separate copy
// (Stage::matrices() unshares it) calibrated on the head's inputs.

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/stage.hpp"
#include "dilemma/quant/calibration/method.hpp"
#include "dilemma/quant/calibration/stage_inputs.hpp"
#include "dilemma/quant/weight_error.hpp"

namespace dilemma::quant::calibration {

// Quantizes every matrix of the f32 stage `stage` to `format` with `method`,
// on `inputs` (which must be the inputs of this stage).
inline void calibrate_stage(model::Stage& stage, const StageActivations& inputs, Format format,
                            const QuantScheme& scheme, Method method, const CalibrationOptions& options = {},
                            const KernelContext& kernels = {}) {
  if (format == Format::f32 && stage.format() == Format::f32) return;
  stage.check_quantizable(format, scheme);
  if (stage.format() != Format::f32) return;  // already in `format` with `scheme`

  // The teacher's weights, before any is replaced.
  std::vector<std::string> pending;
  std::vector<model::Matrix> teacher;
  for (const auto& [name, weight] : std::as_const(stage).matrices()) {
    pending.push_back(name);
    teacher.push_back(weight->dequantize());
  }
  // Without statistics, a matrix is rounded to nearest.
  auto replace = [&](const std::string& name, const InputStatistics* statistics) {
    const auto index = static_cast<std::size_t>(std::ranges::find(pending, name) - pending.begin());
    for (auto& [matrix_name, weight] : stage.matrices()) {
      if (matrix_name == name) {
        *weight = quantize_weight(teacher[index], format, scheme, statistics ? method : Method::rtn, statistics, options,
                                  fmt::format("{}.{}", stage.name(), name));
      }
    }
    pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(index));
    teacher.erase(teacher.begin() + static_cast<std::ptrdiff_t>(index));
  };

  if (needs_inputs(method) && is_integer_format(format)) {
    // The first capture, with every matrix still f32, gives the order of the
    // computation and which matrices share their inputs; each later group is
    // captured again, alone, with the groups before it quantized.
    const StageInputs all = inputs.capture(stage, kernels, pending);
    std::vector<std::vector<std::string>> groups;
    for (std::size_t i = 0; i < all.matrices().size(); ++i) {
      const MatrixInputs& matrix = all.matrices()[i];
      const InputStatistics& previous = all.matrices()[i == 0 ? 0 : i - 1].statistics;
      // Bitwise equal statistics of consecutive matrices: the very same inputs.
      const bool same = i > 0 && previous.samples() == matrix.statistics.samples() &&
                        previous.width() == matrix.statistics.width() &&
                        previous.hessian() == matrix.statistics.hessian();
      if (!same) groups.emplace_back();
      groups.back().push_back(matrix.name);
    }
    for (std::size_t g = 0; g < groups.size(); ++g) {
      const bool again = g > 0 && options.sequential_within_stage;
      const StageInputs captured = again ? inputs.capture(stage, kernels, groups[g]) : StageInputs{};
      for (const std::string& name : groups[g]) replace(name, (again ? captured : all).find(name));
    }
  }
  // Matrices without inputs (the embedding table), and every matrix when the
  // method needs none.
  while (!pending.empty()) replace(pending.front(), nullptr);
}

// Quantizes each stage of the f32 model `model` to its format (one per stage:
// embedding, layers, head) with `method`, sequentially on the calibration
// sequences (token ids, BOS included, as eval::encode_for_scoring gives them).
inline void calibrate_model(model::OptModel& model, std::vector<std::vector<TokenId>> sequences,
                            std::span<const Format> formats, const QuantScheme& scheme, Method method,
                            const CalibrationOptions& options = {}, const KernelContext& kernels = {}) {
  const auto stages = model.stages();
  if (formats.size() != stages.size()) {
    dilemma::detail::fail("calibration: {} formats given for the {} stages of the model", formats.size(),
                          stages.size());
  }
  // Every stage must be quantizable before the first one changes.
  for (std::size_t s = 0; s < stages.size(); ++s) {
    stages[s].check_quantizable(formats[s], scheme);
    if (!is_integer_format(formats[s])) continue;
    for (const auto& [name, weight] : std::as_const(stages[s]).matrices()) {
      quant::detail::check_shape(weight->rows(), weight->cols(), formats[s], scheme,
                                 fmt::format("{}.{}", stages[s].name(), name));
    }
  }
  if (!needs_inputs(method)) {
    for (std::size_t s = 0; s < stages.size(); ++s) stages[s].quantize(formats[s], scheme);
    return;
  }
  StageActivations inputs(std::move(sequences));
  for (std::size_t s = 0; s < stages.size(); ++s) {
    calibrate_stage(stages[s], inputs, formats[s], scheme, method, options, kernels);
    if (s + 1 < stages.size()) inputs.advance(stages[s], kernels);
  }
}

// The error sums (weight_error.hpp) of a student stage against its teacher
// stage, over all matrices; output terms for the matrices in `inputs`
// (captured on the teacher stage).
inline MatrixError stage_error(const model::Stage& teacher, const model::Stage& student, const StageInputs& inputs) {
  const auto teacher_matrices = teacher.matrices();
  const auto student_matrices = student.matrices();
  if (teacher.index() != student.index() || teacher_matrices.size() != student_matrices.size()) {
    dilemma::detail::fail("stage_error(): stage {} ({}) is not a quantized copy of stage {} ({})", student.index(),
                          student.name(), teacher.index(), teacher.name());
  }
  MatrixError total;
  for (std::size_t i = 0; i < teacher_matrices.size(); ++i) {
    const auto& name = teacher_matrices[i].name;
    if (student_matrices[i].name != name) {
      dilemma::detail::fail("stage_error(): stage {} has {} where its teacher has {}", student.name(),
                            student_matrices[i].name, name);
    }
    total += measure_error(teacher_matrices[i].weight->dequantize(), *student_matrices[i].weight, inputs.find(name),
                           fmt::format("{}.{}", teacher.name(), name));
  }
  return total;
}

}  // namespace dilemma::quant::calibration
