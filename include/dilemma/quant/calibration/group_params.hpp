#pragma once
// Group parameters with a clipped range: the round-to-nearest range of a group
// (docs/quantization-scheme.md) shrunk by a factor α ≤ 1. Clipping the few
// largest weights of a group buys a finer step for all the others; which α is
// best depends on how much each weight matters to the layer's output, which
// is what the calibration methods measure with H (input_statistics.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::quant::calibration {

// The shrink factors tried: 1, 1 − δ, 1 − 2δ, …, min_shrink with δ = (1 − min_shrink) / steps.
struct ClipGrid {
  int steps = 20;
  double min_shrink = 0.5;
};

inline std::vector<float> shrink_factors(const ClipGrid& grid) {
  if (grid.steps < 0) dilemma::detail::fail("clip grid: steps must be ≥ 0, got {}", grid.steps);
  if (!(grid.min_shrink > 0.0 && grid.min_shrink <= 1.0)) {
    dilemma::detail::fail("clip grid: min_shrink must be in (0, 1], got {}", grid.min_shrink);
  }
  std::vector<float> factors{1.0f};
  for (int k = 1; k <= grid.steps; ++k) {
    factors.push_back(static_cast<float>(1.0 - (1.0 - grid.min_shrink) * k / grid.steps));
  }
  return factors;
}

// The parameters of one group whose range is shrunk by `shrink` ∈ (0, 1]:
// symmetric formats scale the largest magnitude down (the scale becomes
// shrink · max|w| / 127 or / 7, and larger weights clamp to the end codes);
// asymmetric int4 shrinks [min, max] around its midpoint. shrink = 1 is
// exactly round-to-nearest.
inline GroupParams shrunk_group_params(Format format, const QuantScheme& scheme, std::span<const float> group,
                                       float shrink) {
  const GroupParams rtn = rtn_group_params(format, scheme, group);
  if (shrink == 1.0f) return rtn;
  if (!has_offsets(format, scheme)) return {rtn.scale * shrink, 0.0f};
  const auto [min, max] = std::ranges::minmax(group);
  const float half = shrink * (max - min) / 2;
  const float center = min / 2 + max / 2;
  return {2 * half / 15.0f, center - half};
}

namespace detail {

inline void check_params_finite(GroupParams params, std::string_view name, Eigen::Index row, Eigen::Index group) {
  if (!std::isfinite(params.scale) || !std::isfinite(params.offset)) {
    dilemma::detail::fail("{}: row {} group {} spans a range too wide for a float32 scale", name, row, group);
  }
}

// Every row of `values` (one group's columns of a weight, [rows × group
// size]) rounded to nearest with its range shrunk by `shrink`: each row's
// parameters into `params`, and the error values − Ŵ as the result. `name`
// and `group` locate a range too wide for float32 in the error message.
inline Eigen::MatrixXd shrunk_group_errors(Format format, const QuantScheme& scheme, const model::Matrix& values,
                                           float shrink, std::vector<GroupParams>& params, std::string_view name,
                                           Eigen::Index group) {
  params.resize(static_cast<std::size_t>(values.rows()));
  Eigen::MatrixXd error(values.rows(), values.cols());
  for (Eigen::Index r = 0; r < values.rows(); ++r) {
    const std::span<const float> row(values.row(r).data(), static_cast<std::size_t>(values.cols()));
    const GroupParams p = shrunk_group_params(format, scheme, row, shrink);
    check_params_finite(p, name, r, group);
    params[static_cast<std::size_t>(r)] = p;
    for (Eigen::Index i = 0; i < values.cols(); ++i) {
      const float w = values(r, i);
      error(r, i) = static_cast<double>(w) - dequantize_value(quantize_value(format, scheme, w, p), p);
    }
  }
  return error;
}

}  // namespace detail

}  // namespace dilemma::quant::calibration
