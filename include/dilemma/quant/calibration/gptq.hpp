#pragma once
// Error-feedback quantization in the manner of GPTQ (Frantar et al., "GPTQ:
// Accurate Post-Training Quantization for Generative Pre-trained
// Transformers", 2022): minimizes the layer's output error on the calibration
// inputs, ‖W X − Ŵ X‖² = tr((W − Ŵ) H (W − Ŵ)ᵀ) with H = Σ x xᵀ, one column at
// a time. Rows are independent under this objective (they share H), so every
// row is handled at once.
//
// Columns are quantized in a processing order (by default by descending
// diag(H), "act order": columns with large inputs first, while the remaining
// columns can still absorb their error). After column j is rounded, the
// remaining columns are corrected so that the rounding error of column j is
// compensated in the output as well as the not-yet-quantized columns allow —
// the optimal brain surgeon update, δ_rest = −(w_j − ŵ_j) / [H⁻¹]_jj · [H⁻¹]_j,rest
// computed, as GPTQ does, from U, the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU),
// whose row j already holds the inverse of H restricted to the columns still
// unquantized. Damping λ·mean(diag H) on H's diagonal keeps the factorization
// defined when H is singular (a column whose input is always 0, or fewer
// calibration tokens than columns).
//
// Updates are applied lazily in blocks of columns (rank-`block_size` products
// instead of one rank-1 update per column), which changes no result.
//
// Group scales are chosen "on the fly", as in GPTQ with groups: when the first
// column of a group comes up, the group's parameters are computed from the
// group's *current* weights, i.e. after the corrections from every column
// quantized before. Groups stay contiguous in the original column order (the
// storage's layout, docs/quantization-scheme.md), also with act order, so the
// scale indices need no permutation; only the processing order is permuted.
// With search_scales, a group's range is also shrunk by the factor of a grid
// that minimizes the group's own output error eᵀ H_gg e (clip_search.hpp does
// the same search for plain rounding).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <string_view>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/calibration/group_params.hpp"
#include "dilemma/quant/calibration/input_statistics.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::quant::calibration {

struct GptqOptions {
  double damping = 0.01;         // λ: added to diag(H) as λ · mean(diag(H))
  bool act_order = true;         // process columns by descending diag(H)
  Eigen::Index block_size = 128; // columns per lazy update
  bool search_scales = false;    // pick each group's clip factor from `grid`
  ClipGrid grid{};
};

inline QuantizedMatrix gptq_quantize(const model::Matrix& weight, const HessianMatrix& hessian, Format format,
                                     const QuantScheme& scheme = {}, const GptqOptions& options = {},
                                     std::string_view name = "weight") {
  quant::detail::check_integer_format(format, name);
  quant::detail::check_shape(weight.rows(), weight.cols(), format, scheme, name);
  detail::check_finite_weight(weight, name);
  detail::check_hessian(hessian, weight.cols(), name);
  if (!(options.damping >= 0.0) || !std::isfinite(options.damping)) {
    dilemma::detail::fail("{}: GPTQ damping must be a finite number ≥ 0, got {}", name, options.damping);
  }
  if (options.block_size < 1) {
    dilemma::detail::fail("{}: GPTQ block size must be positive, got {}", name, options.block_size);
  }
  const std::vector<float> factors = options.search_scales ? shrink_factors(options.grid) : std::vector<float>{1.0f};

  const Eigen::Index rows = weight.rows();
  const Eigen::Index cols = weight.cols();
  const Eigen::Index size = scheme.group_size;
  const Eigen::Index groups = cols / size;

  // Processing order and each column's place in it.
  std::vector<Eigen::Index> order(static_cast<std::size_t>(cols));
  std::iota(order.begin(), order.end(), Eigen::Index{0});
  if (options.act_order) {
    std::stable_sort(order.begin(), order.end(),
                     [&](Eigen::Index a, Eigen::Index b) { return hessian(a, a) > hessian(b, b); });
  }
  std::vector<Eigen::Index> place(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) place[static_cast<std::size_t>(order[i])] = static_cast<Eigen::Index>(i);

  // H in processing order, damped. A column whose input was always zero has a
  // zero row and column; any positive diagonal decouples it, and the mean
  // keeps the damping independent of H's scale.
  Eigen::MatrixXd h(cols, cols);
  for (Eigen::Index i = 0; i < cols; ++i) {
    for (Eigen::Index j = 0; j < cols; ++j) h(i, j) = hessian(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  double mean_diagonal = h.diagonal().mean();
  if (mean_diagonal <= 0.0) mean_diagonal = 1.0;  // no inputs at all: GPTQ becomes plain rounding
  for (Eigen::Index i = 0; i < cols; ++i) {
    if (h(i, i) == 0.0) h(i, i) = mean_diagonal;
  }
  h.diagonal().array() += options.damping * mean_diagonal;
  // U, the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), without forming H⁻¹:
  // with J the order reversal and J H J = L Lᵀ, H = R Rᵀ for the upper
  // triangular R = J L J, so H⁻¹ = R⁻ᵀ R⁻¹ and U = R⁻¹ = J L⁻¹ J (positive
  // diagonal, hence the Cholesky factor). One factorization and one
  // triangular inverse instead of two factorizations and a full inverse.
  const Eigen::MatrixXd reversed = h.reverse();
  const Eigen::LLT<Eigen::MatrixXd> factor(reversed);
  if (factor.info() != Eigen::Success) {
    dilemma::detail::fail(
        "{}: input statistics H is not positive definite even with damping {} × its mean diagonal {}; "
        "use a larger damping",
        name, options.damping, mean_diagonal);
  }
  Eigen::MatrixXd lower_inverse = Eigen::MatrixXd::Identity(cols, cols);
  factor.matrixL().solveInPlace(lower_inverse);
  const Eigen::MatrixXd u = lower_inverse.reverse();

  // Working weights in processing order.
  Eigen::MatrixXd w(rows, cols);
  for (Eigen::Index i = 0; i < cols; ++i) w.col(i) = weight.col(order[static_cast<std::size_t>(i)]).cast<double>();

  std::vector<std::int8_t> codes(static_cast<std::size_t>(rows * cols));
  std::vector<float> scales(static_cast<std::size_t>(rows * groups));
  std::vector<float> offsets(has_offsets(format, scheme) ? scales.size() : 0);
  std::vector<GroupParams> params(static_cast<std::size_t>(rows * groups));
  std::vector<bool> ready(static_cast<std::size_t>(groups), false);

  // Chooses the parameters of group g from its current weights `values`
  // [rows × size] (original column order within the group): per row, the
  // shrink factor whose rounding error e has the smallest eᵀ H_gg e.
  auto choose_group = [&](Eigen::Index g, const model::Matrix& values) {
    const Eigen::MatrixXd block = hessian.block(g * size, g * size, size, size);
    std::vector<GroupParams> best;
    std::vector<GroupParams> candidate;
    Eigen::VectorXd best_error;
    for (std::size_t k = 0; k < factors.size(); ++k) {
      const Eigen::MatrixXd error = detail::shrunk_group_errors(format, scheme, values, factors[k], candidate, name, g);
      if (factors.size() == 1) {
        best = candidate;
        break;
      }
      const Eigen::VectorXd weighted = (error * block).cwiseProduct(error).rowwise().sum();
      if (k == 0) {
        best = candidate;
        best_error = weighted;
        continue;
      }
      for (Eigen::Index r = 0; r < rows; ++r) {
        if (weighted(r) < best_error(r)) {
          best_error(r) = weighted(r);
          best[static_cast<std::size_t>(r)] = candidate[static_cast<std::size_t>(r)];
        }
      }
    }
    for (Eigen::Index r = 0; r < rows; ++r) {
      const auto index = static_cast<std::size_t>(r * groups + g);
      params[index] = best[static_cast<std::size_t>(r)];
      scales[index] = params[index].scale;
      if (!offsets.empty()) offsets[index] = params[index].offset;
    }
  };

  for (Eigen::Index begin = 0; begin < cols; begin += options.block_size) {
    const Eigen::Index end = std::min(cols, begin + options.block_size);
    Eigen::MatrixXd scaled_errors(rows, end - begin);  // (w_j − ŵ_j) / U_jj of the block's columns
    for (Eigen::Index i = begin; i < end; ++i) {
      const Eigen::Index column = order[static_cast<std::size_t>(i)];
      const Eigen::Index g = column / size;
      if (!ready[static_cast<std::size_t>(g)]) {
        // No column of g is quantized yet, so all of them sit at places ≥ i:
        // inside this block they are up to date, beyond it they still owe
        // this block's corrections so far.
        Eigen::MatrixXd values(rows, size);
        for (Eigen::Index k = 0; k < size; ++k) {
          const Eigen::Index p = place[static_cast<std::size_t>(g * size + k)];
          values.col(k) = w.col(p);
          if (p >= end && i > begin) {
            values.col(k) -= scaled_errors.leftCols(i - begin) * u.col(p).segment(begin, i - begin);
          }
        }
        choose_group(g, values.cast<float>());
        ready[static_cast<std::size_t>(g)] = true;
      }
      const double diagonal = u(i, i);
      for (Eigen::Index r = 0; r < rows; ++r) {
        const GroupParams group = params[static_cast<std::size_t>(r * groups + g)];
        const int code = quantize_value(format, scheme, static_cast<float>(w(r, i)), group);
        codes[static_cast<std::size_t>(r * cols + column)] = static_cast<std::int8_t>(code);
        scaled_errors(r, i - begin) = (w(r, i) - dequantize_value(code, group)) / diagonal;
      }
      if (i + 1 < end) {
        w.middleCols(i + 1, end - i - 1).noalias() -=
            scaled_errors.col(i - begin) * u.row(i).segment(i + 1, end - i - 1);
      }
    }
    if (end < cols) {
      w.rightCols(cols - end).noalias() -= scaled_errors * u.block(begin, end, end - begin, cols - end);
    }
  }
  return QuantizedMatrix::from_codes(format, scheme, rows, cols, codes, scales, offsets, name);
}

}  // namespace dilemma::quant::calibration
