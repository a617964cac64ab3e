#pragma once
// The ways a float weight becomes a quantized one, by name:
//   rtn   round to nearest (QuantizedMatrix::quantize), needs no calibration;
//   clip  round to nearest with per-group clip factors searched on the
//         calibration inputs (clip_search.hpp);
//   gptq  error-feedback quantization (gptq.hpp) with RTN group ranges;
//   kd    gptq whose group ranges are also searched, both calibration methods
//         together: the knowledge-distillation calibration of `dilemma quantize`.
// Float formats (f32, f16) are always plain conversions.

#include <array>
#include <optional>
#include <string_view>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/calibration/clip_search.hpp"
#include "dilemma/quant/calibration/gptq.hpp"
#include "dilemma/quant/calibration/input_statistics.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::quant::calibration {

enum class Method { rtn, clip, gptq, kd };

inline constexpr std::array<Method, 4> all_methods = {Method::rtn, Method::clip, Method::gptq, Method::kd};

inline constexpr std::string_view method_name(Method method) {
  switch (method) {
    case Method::rtn: return "rtn";
    case Method::clip: return "clip";
    case Method::gptq: return "gptq";
    case Method::kd: return "kd";
  }
  return "rtn";
}

// `what` names the option or field in the error, e.g. "--method".
inline Method parse_method(std::string_view name, std::string_view what = "method") {
  for (Method method : all_methods) {
    if (method_name(method) == name) return method;
  }
  dilemma::detail::fail("{}: unknown calibration method \"{}\" (expected rtn, clip, gptq or kd)", what, name);
}

// Whether `method` needs the inputs of the weight.
inline bool needs_inputs(Method method) { return method != Method::rtn; }

struct CalibrationOptions {
  GptqOptions gptq;
  ClipSearchOptions clip;
  // Within a stage, capture each matrix's inputs again once the matrices
  // before it are quantized (calibrate.hpp); otherwise all of a stage's
  // matrices are calibrated on the inputs of one pass with f32 weights.
  bool sequential_within_stage = true;
};

// Quantizes one weight with `method`; `inputs` may be null only for rtn and
// for float formats.
inline QuantizedMatrix quantize_weight(const model::Matrix& weight, Format format, const QuantScheme& scheme,
                                       Method method, const InputStatistics* inputs,
                                       const CalibrationOptions& options = {}, std::string_view name = "weight") {
  if (!is_integer_format(format) || method == Method::rtn) {
    return QuantizedMatrix::quantize(weight, format, scheme, name);
  }
  if (inputs == nullptr) {
    dilemma::detail::fail("{}: calibration method {} needs the weight's calibration inputs, none were captured", name,
                          method_name(method));
  }
  switch (method) {
    case Method::clip: return clip_search_quantize(weight, inputs->hessian(), format, scheme, options.clip, name);
    case Method::gptq: {
      GptqOptions gptq = options.gptq;
      gptq.search_scales = false;
      return gptq_quantize(weight, inputs->hessian(), format, scheme, gptq, name);
    }
    case Method::kd: {
      GptqOptions gptq = options.gptq;
      gptq.search_scales = true;
      gptq.grid = options.clip.grid;
      return gptq_quantize(weight, inputs->hessian(), format, scheme, gptq, name);
    }
    case Method::rtn: break;
  }
  return QuantizedMatrix::quantize(weight, format, scheme, name);
}

}  // namespace dilemma::quant::calibration
