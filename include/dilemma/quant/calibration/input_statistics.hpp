#pragma once
// What calibration knows about a weight's inputs: the second moment
//     H = Σ_t x_t x_tᵀ            (cols × cols, over n captured input rows x_t)
// of the activations that multiply W [rows × cols] (y = W·x). Every objective
// of the calibration methods and metrics is a quadratic form in H: the output
// error of a quantized weight Ŵ over the captured inputs is
//     Σ_t ‖(W − Ŵ) x_t‖² = tr((W − Ŵ) H (W − Ŵ)ᵀ),
// so the activations themselves need not be kept. H is accumulated in double
// across batches: GPTQ inverts it, and summing many thousands of float outer
// products would lose the small eigenvalues that the inverse depends on.

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"

namespace dilemma::quant::calibration {

using HessianMatrix = Eigen::MatrixXd;

class InputStatistics {
 public:
  InputStatistics() = default;
  // `name` (the weight's) starts every error message.
  explicit InputStatistics(Eigen::Index width, std::string_view name = "inputs") : name_(name) {
    if (width <= 0) dilemma::detail::fail("{}: input width must be positive, got {}", name_, width);
    hessian_ = HessianMatrix::Zero(width, width);
  }

  // Adds the rows of `x` [tokens × width], one input vector per token.
  void add(const model::Matrix& x) {
    if (x.cols() != width()) {
      dilemma::detail::fail("{}: inputs of width {} given to statistics of width {}", name_, x.cols(), width());
    }
    if (!x.allFinite()) {
      for (Eigen::Index t = 0; t < x.rows(); ++t) {
        for (Eigen::Index c = 0; c < x.cols(); ++c) {
          if (!std::isfinite(x(t, c))) {
            dilemma::detail::fail("{}: input [{}, {}] is {}, not a finite number", name_, t, c, x(t, c));
          }
        }
      }
    }
    // One batch (a sequence, typically ≤ a few hundred rows) is summed in
    // float, at twice the speed; the batches add up in double.
    Eigen::MatrixXf batch = Eigen::MatrixXf::Zero(width(), width());
    batch.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
    batch.triangularView<Eigen::StrictlyUpper>() = batch.transpose();
    hessian_ += batch.cast<double>();
    samples_ += x.rows();
  }

  Eigen::Index width() const { return hessian_.rows(); }
  // Σ x xᵀ over every input row added so far.
  const HessianMatrix& hessian() const { return hessian_; }
  // Number of input rows added.
  std::int64_t samples() const { return samples_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_ = "inputs";
  HessianMatrix hessian_;
  std::int64_t samples_ = 0;
};

namespace detail {

// Checks that `hessian` can be the H of a weight with `cols` columns.
inline void check_hessian(const HessianMatrix& hessian, Eigen::Index cols, std::string_view name) {
  if (hessian.rows() != hessian.cols()) {
    dilemma::detail::fail("{}: input statistics H is [{} × {}], expected a square matrix", name, hessian.rows(),
                          hessian.cols());
  }
  if (hessian.rows() != cols) {
    dilemma::detail::fail("{}: input statistics H is [{} × {}], expected [{} × {}] for a weight with {} columns", name,
                          hessian.rows(), hessian.cols(), cols, cols, cols);
  }
  for (Eigen::Index r = 0; r < hessian.rows(); ++r) {
    for (Eigen::Index c = 0; c < hessian.cols(); ++c) {
      if (!std::isfinite(hessian(r, c))) {
        dilemma::detail::fail("{}: input statistics H[{}, {}] is {}, not a finite number", name, r, c, hessian(r, c));
      }
    }
  }
}

inline void check_finite_weight(const model::Matrix& weight, std::string_view name) {
  if (weight.allFinite()) return;
  for (Eigen::Index r = 0; r < weight.rows(); ++r) {
    for (Eigen::Index c = 0; c < weight.cols(); ++c) {
      if (!std::isfinite(weight(r, c))) {
        dilemma::detail::fail("{}: element [{}, {}] is {}, not a finite number", name, r, c, weight(r, c));
      }
    }
  }
}

}  // namespace detail

}  // namespace dilemma::quant::calibration
