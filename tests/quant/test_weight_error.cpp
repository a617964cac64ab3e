// The teacher–student metrics of one weight: the paper's weight difference
// and the output-aware error, checked against their definitions computed
// directly from the activations.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "calibration_test_support.hpp"
#include "dilemma/quant/calibration/input_statistics.hpp"
#include "dilemma/quant/weight_error.hpp"

using namespace dilemma;
using quant::Format;
using quant::QuantizedMatrix;
using quant::calibration::InputStatistics;

TEST_CASE("the weight difference is the squared Frobenius norm of W − Ŵ") {
  const model::Matrix w = testing::random_weights(16, 64, 3);
  CHECK(quant::weight_difference(w, QuantizedMatrix::quantize(w, Format::f32)) == 0.0);
  for (Format format : {Format::f16, Format::int8, Format::int4}) {
    const auto q = QuantizedMatrix::quantize(w, format, {.group_size = 32});
    const model::Matrix back = q.dequantize();
    double expected = 0.0;
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
      for (Eigen::Index c = 0; c < w.cols(); ++c) {
        const double d = static_cast<double>(w(r, c)) - back(r, c);
        expected += d * d;
      }
    }
    CHECK(expected > 0.0);
    CHECK(quant::weight_difference(w, q) == doctest::Approx(expected).epsilon(1e-12));
  }
}

TEST_CASE("the output error is the mean of ‖(W − Ŵ)x‖² over the captured inputs, in two batches or one") {
  const model::Matrix w = testing::random_weights(24, 64, 5);
  const model::Matrix x = testing::correlated_activations(40, 64, 6);
  InputStatistics stats(64);
  stats.add(x.topRows(15));
  stats.add(x.bottomRows(25));
  CHECK(stats.samples() == 40);
  CHECK((stats.hessian() - (x.transpose() * x).cast<double>()).cwiseAbs().maxCoeff() <
        1e-4 * stats.hessian().cwiseAbs().maxCoeff());
  CHECK(stats.hessian().isApprox(stats.hessian().transpose(), 0.0));

  const auto q = QuantizedMatrix::quantize(w, Format::int4, {.group_size = 32});
  const Eigen::MatrixXd e = w.cast<double>() - q.dequantize().cast<double>();
  const Eigen::MatrixXd xd = x.cast<double>();
  double error = 0.0;
  double energy = 0.0;
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    error += (e * xd.row(t).transpose()).squaredNorm();
    energy += (w.cast<double>() * xd.row(t).transpose()).squaredNorm();
  }
  CHECK(quant::output_error(w, q, stats) == doctest::Approx(error / 40).epsilon(1e-5));
  CHECK(quant::output_energy(w, stats) == doctest::Approx(energy / 40).epsilon(1e-5));

  const quant::MatrixError all = quant::measure_error(w, q, &stats);
  CHECK(all.weight_difference == doctest::Approx(e.squaredNorm()).epsilon(1e-12));
  CHECK(all.weight_norm == doctest::Approx(w.cast<double>().squaredNorm()).epsilon(1e-12));
  CHECK(all.output_error == doctest::Approx(error / 40).epsilon(1e-5));
  CHECK(all.output_energy == doctest::Approx(energy / 40).epsilon(1e-5));

  // Without inputs (an indexed table) only the weight terms count; sums add.
  const quant::MatrixError weights_only = quant::measure_error(w, q, nullptr);
  CHECK(weights_only.output_error == 0.0);
  CHECK(weights_only.output_energy == 0.0);
  quant::MatrixError total = all;
  total += weights_only;
  CHECK(total.weight_difference == doctest::Approx(2 * all.weight_difference));
  CHECK(total.output_error == all.output_error);
}

TEST_CASE("bad shapes and inputs of the metrics are errors that name the weight") {
  const model::Matrix w = testing::random_weights(8, 64, 7);
  const auto q = QuantizedMatrix::quantize(w, Format::int8, {.group_size = 32});
  const model::Matrix other = testing::random_weights(8, 32, 7);
  CHECK_THROWS_WITH_AS(quant::weight_difference(other, q, "fc1"),
                       "fc1: the quantized weight is [8 × 64], the float weight [8 × 32]", Error);

  InputStatistics narrow(32, "fc1");
  CHECK_THROWS_WITH_AS(narrow.add(model::Matrix::Zero(3, 64)),
                       "fc1: inputs of width 64 given to statistics of width 32", Error);
  model::Matrix bad = model::Matrix::Zero(3, 32);
  bad(2, 5) = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(narrow.add(bad), "fc1: input [2, 5] is inf, not a finite number", Error);
  CHECK_THROWS_WITH_AS(InputStatistics(0, "fc1"), "fc1: input width must be positive, got 0", Error);

  CHECK_THROWS_WITH_AS(quant::output_error(w, q, narrow, "fc1"),
                       "fc1: input statistics H is [32 × 32], expected [64 × 64] for a weight with 64 columns", Error);
  CHECK_THROWS_WITH_AS(quant::output_error(w, q, InputStatistics(64), "fc1"),
                       "fc1: no calibration inputs were captured", Error);
}
