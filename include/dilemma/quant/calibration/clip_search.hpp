#pragma once
// Per-group clipping search: round-to-nearest codes, but each group's range is
// shrunk by the factor α (group_params.hpp) that minimizes the layer's output
// error over the calibration inputs,
//     tr((W − Ŵ) H (W − Ŵ)ᵀ),   H = Σ x xᵀ,
// rather than the weight error. The objective couples the groups of a row
// through H's off-diagonal blocks, so the search is coordinate descent: start
// from α = 1 everywhere (RTN), then for each group in turn pick, row by row,
// the α of the grid that minimizes the whole row's objective with the other
// groups fixed; repeat for a few passes. Each step can only lower the
// objective, so the result is never worse than RTN on the calibration inputs.
// A step's change for row r, with d the change of the row's error in group g
// and v = e H the row's current error times H, is dᵀ H_gg d + 2 dᵀ v_g; the
// rows are independent and are searched together with matrix products.

#include <cstdint>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/calibration/group_params.hpp"
#include "dilemma/quant/calibration/input_statistics.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::quant::calibration {

struct ClipSearchOptions {
  ClipGrid grid{};
  int passes = 2;  // sweeps over all groups
};

inline QuantizedMatrix clip_search_quantize(const model::Matrix& weight, const HessianMatrix& hessian, Format format,
                                            const QuantScheme& scheme = {}, const ClipSearchOptions& options = {},
                                            std::string_view name = "weight") {
  quant::detail::check_integer_format(format, name);
  quant::detail::check_shape(weight.rows(), weight.cols(), format, scheme, name);
  detail::check_finite_weight(weight, name);
  detail::check_hessian(hessian, weight.cols(), name);
  if (options.passes < 1) dilemma::detail::fail("{}: clip search needs at least 1 pass, got {}", name, options.passes);
  const std::vector<float> factors = shrink_factors(options.grid);

  const Eigen::Index rows = weight.rows();
  const Eigen::Index cols = weight.cols();
  const Eigen::Index size = scheme.group_size;
  const Eigen::Index groups = cols / size;
  auto params_of = [&](Eigen::Index r, Eigen::Index g, float shrink) {
    const std::span<const float> group(weight.row(r).data() + g * size, static_cast<std::size_t>(size));
    const GroupParams params = shrunk_group_params(format, scheme, group, shrink);
    detail::check_params_finite(params, name, r, g);
    return params;
  };
  std::vector<GroupParams> unused;
  auto group_error = [&](Eigen::Index g, float shrink) {
    return detail::shrunk_group_errors(format, scheme, weight.middleCols(g * size, size), shrink, unused, name, g);
  };

  std::vector<float> chosen(static_cast<std::size_t>(rows * groups), 1.0f);
  Eigen::MatrixXd error(rows, cols);
  for (Eigen::Index g = 0; g < groups; ++g) {
    error.middleCols(g * size, size) = group_error(g, 1.0f);
  }
  Eigen::MatrixXd error_h = error * hessian;  // row r: e_r H

  for (int pass = 0; pass < options.passes; ++pass) {
    bool changed = false;
    for (Eigen::Index g = 0; g < groups; ++g) {
      const Eigen::MatrixXd block = hessian.block(g * size, g * size, size, size);
      const Eigen::MatrixXd current = error.middleCols(g * size, size);
      const Eigen::MatrixXd current_h = error_h.middleCols(g * size, size);
      // Rounding noise must not count as an improvement, or a pass could
      // raise the objective it claims to lower.
      const Eigen::VectorXd tolerance = 1e-12 * error.cwiseProduct(error_h).rowwise().sum().cwiseAbs();
      Eigen::VectorXd best_change = Eigen::VectorXd::Zero(rows);
      Eigen::MatrixXd best = current;
      for (float shrink : factors) {
        const Eigen::MatrixXd candidate = group_error(g, shrink);
        const Eigen::MatrixXd step = candidate - current;
        const Eigen::VectorXd change =
            (step * block).cwiseProduct(step).rowwise().sum() + 2.0 * step.cwiseProduct(current_h).rowwise().sum();
        for (Eigen::Index r = 0; r < rows; ++r) {
          if (change(r) < best_change(r) - tolerance(r)) {
            best_change(r) = change(r);
            best.row(r) = candidate.row(r);
            chosen[static_cast<std::size_t>(r * groups + g)] = shrink;
            changed = true;
          }
        }
      }
      const Eigen::MatrixXd step = best - current;
      if (!step.isZero(0.0)) {
        error_h.noalias() += step * hessian.middleRows(g * size, size);
        error.middleCols(g * size, size) = best;
      }
    }
    if (!changed) break;
  }

  std::vector<std::int8_t> codes(static_cast<std::size_t>(rows * cols));
  std::vector<float> scales(static_cast<std::size_t>(rows * groups));
  std::vector<float> offsets(has_offsets(format, scheme) ? scales.size() : 0);
  for (Eigen::Index r = 0; r < rows; ++r) {
    for (Eigen::Index g = 0; g < groups; ++g) {
      const auto index = static_cast<std::size_t>(r * groups + g);
      const GroupParams params = params_of(r, g, chosen[index]);
      scales[index] = params.scale;
      if (!offsets.empty()) offsets[index] = params.offset;
      for (Eigen::Index c = g * size; c < (g + 1) * size; ++c) {
        codes[static_cast<std::size_t>(r * cols + c)] =
            static_cast<std::int8_t>(quantize_value(format, scheme, weight(r, c), params));
      }
    }
  }
  return QuantizedMatrix::from_codes(format, scheme, rows, cols, codes, scales, offsets, name);
}

}  // namespace dilemma::quant::calibration
