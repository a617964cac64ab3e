// Calibration of one weight on its inputs: GPTQ-style error feedback and the
// per-group clip search against round-to-nearest, on the objective they
// minimize (the output error over the calibration inputs), and their errors.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/LU>

#include "calibration_test_support.hpp"
#include "dilemma/quant/calibration/clip_search.hpp"
#include "dilemma/quant/calibration/gptq.hpp"
#include "dilemma/quant/calibration/method.hpp"
#include "dilemma/quant/weight_error.hpp"

using namespace dilemma;
using quant::Format;
using quant::QuantizedMatrix;
using quant::QuantScheme;
using namespace quant::calibration;

namespace {

void check_codes_in_range(const QuantizedMatrix& q) {
  const quant::CodeRange range = quant::code_range(q.format(), q.scheme());
  const auto codes = q.codes();
  const auto [min, max] = std::ranges::minmax(codes);
  CHECK(min >= range.min);
  CHECK(max <= range.max);
}

struct Case {
  Format format;
  QuantScheme scheme;
};

const std::vector<Case> integer_cases = {
    {Format::int4, {.group_size = 32}},
    {Format::int4, {.group_size = 64, .int4_asymmetric = true}},
    {Format::int8, {.group_size = 32}},
    {Format::int8, {.group_size = 128}},
};

}  // namespace

TEST_CASE("on correlated inputs GPTQ has a lower output error than round-to-nearest, clip search no higher") {
  const model::Matrix w = testing::random_weights(48, 128, 11);
  const auto stats = testing::statistics_of(testing::correlated_activations(512, 128, 12));
  for (const Case& c : integer_cases) {
    CAPTURE(quant::format_name(c.format));
    CAPTURE(c.scheme.group_size);
    CAPTURE(c.scheme.int4_asymmetric);
    const double rtn = quant::output_error(w, QuantizedMatrix::quantize(w, c.format, c.scheme), stats);
    for (bool act_order : {false, true}) {
      CAPTURE(act_order);
      const auto gptq = gptq_quantize(w, stats.hessian(), c.format, c.scheme, {.act_order = act_order});
      check_codes_in_range(gptq);
      CHECK(gptq.format() == c.format);
      CHECK(gptq.scheme().group_size == c.scheme.group_size);
      // Error feedback on strongly correlated inputs removes most of the error.
      CHECK(quant::output_error(w, gptq, stats) < 0.7 * rtn);
    }
    const auto kd = gptq_quantize(w, stats.hessian(), c.format, c.scheme, {.search_scales = true});
    check_codes_in_range(kd);
    CHECK(quant::output_error(w, kd, stats) < 0.7 * rtn);

    const auto clip = clip_search_quantize(w, stats.hessian(), c.format, c.scheme);
    check_codes_in_range(clip);
    CHECK(quant::output_error(w, clip, stats) <= rtn);
    if (c.format == Format::int4) CHECK(quant::output_error(w, clip, stats) < 0.98 * rtn);
  }
}

TEST_CASE("clip search never raises the output error above round-to-nearest, whatever the grid") {
  for (std::uint32_t seed = 20; seed < 24; ++seed) {
    const model::Matrix w = testing::random_weights(16, 64, seed);
    const auto stats = testing::statistics_of(testing::correlated_activations(100, 64, seed + 100));
    for (ClipGrid grid : {ClipGrid{}, ClipGrid{.steps = 3, .min_shrink = 0.9}, ClipGrid{.steps = 0}}) {
      const double rtn =
          quant::output_error(w, QuantizedMatrix::quantize(w, Format::int4, {.group_size = 32}), stats);
      const auto clip = clip_search_quantize(w, stats.hessian(), Format::int4, {.group_size = 32}, {.grid = grid});
      CHECK(quant::output_error(w, clip, stats) <= rtn * (1 + 1e-12));
      if (grid.steps == 0) CHECK(clip.codes() == QuantizedMatrix::quantize(w, Format::int4, {.group_size = 32}).codes());
    }
  }
}

TEST_CASE("with uncorrelated inputs (diagonal H) or none, GPTQ is exactly round-to-nearest") {
  const model::Matrix w = testing::random_weights(20, 96, 31);
  Eigen::MatrixXd diagonal = Eigen::MatrixXd::Zero(96, 96);
  for (Eigen::Index i = 0; i < 96; ++i) diagonal(i, i) = 1.0 + i % 7;
  for (const Case& c : integer_cases) {
    if (96 % c.scheme.group_size != 0) continue;
    const auto rtn = QuantizedMatrix::quantize(w, c.format, c.scheme);
    for (bool act_order : {false, true}) {
      const auto gptq = gptq_quantize(w, diagonal, c.format, c.scheme, {.act_order = act_order});
      CHECK(gptq.codes() == rtn.codes());
      CHECK(std::ranges::equal(gptq.scales(), rtn.scales()));
      CHECK(std::ranges::equal(gptq.offsets(), rtn.offsets()));
    }
    CHECK(gptq_quantize(w, Eigen::MatrixXd::Zero(96, 96), c.format, c.scheme).codes() == rtn.codes());
  }
}

namespace {

// GPTQ written as the optimal-brain-surgeon update it stands for, column by
// column with an explicit inverse: quantize column j, spread its error
// (w_j − ŵ_j) / [H⁻¹]_jj · [H⁻¹]_j,: over the columns not yet quantized, then
// remove j from H⁻¹ (H⁻¹ ← H⁻¹ − H⁻¹_:,j H⁻¹_j,: / [H⁻¹]_jj). Group
// parameters come from the group's current weights when its first column is
// reached, in column order (no act order).
std::vector<std::int8_t> reference_gptq(const model::Matrix& weight, Eigen::MatrixXd h, Format format,
                                        const QuantScheme& scheme, double damping) {
  const Eigen::Index rows = weight.rows(), cols = weight.cols(), size = scheme.group_size;
  h.diagonal().array() += damping * h.diagonal().mean();
  Eigen::MatrixXd inverse = h.inverse();
  Eigen::MatrixXd w = weight.cast<double>();
  std::vector<std::int8_t> codes(static_cast<std::size_t>(rows * cols));
  std::vector<quant::GroupParams> params(static_cast<std::size_t>(rows));
  for (Eigen::Index j = 0; j < cols; ++j) {
    if (j % size == 0) {
      for (Eigen::Index r = 0; r < rows; ++r) {
        std::vector<float> group(static_cast<std::size_t>(size));
        for (Eigen::Index i = 0; i < size; ++i) group[static_cast<std::size_t>(i)] = static_cast<float>(w(r, j + i));
        params[static_cast<std::size_t>(r)] = quant::rtn_group_params(format, scheme, group);
      }
    }
    Eigen::VectorXd error(rows);
    for (Eigen::Index r = 0; r < rows; ++r) {
      const auto p = params[static_cast<std::size_t>(r)];
      const int code = quant::quantize_value(format, scheme, static_cast<float>(w(r, j)), p);
      codes[static_cast<std::size_t>(r * cols + j)] = static_cast<std::int8_t>(code);
      error(r) = (w(r, j) - quant::dequantize_value(code, p)) / inverse(j, j);
    }
    w -= error * inverse.row(j);
    inverse -= inverse.col(j) * inverse.row(j) / inverse(j, j);
  }
  return codes;
}

}  // namespace

TEST_CASE("GPTQ's Cholesky form equals the column-by-column optimal brain surgeon update") {
  const model::Matrix w = testing::random_weights(12, 96, 81);
  const auto stats = testing::statistics_of(testing::correlated_activations(200, 96, 82));
  for (const Case& c : {Case{Format::int4, {.group_size = 32}}, Case{Format::int8, {.group_size = 96}},
                        Case{Format::int4, {.group_size = 32, .int4_asymmetric = true}}}) {
    const auto expected = reference_gptq(w, stats.hessian(), c.format, c.scheme, 0.01);
    const auto codes = gptq_quantize(w, stats.hessian(), c.format, c.scheme, {.act_order = false}).codes();
    std::size_t same = 0;
    for (std::size_t i = 0; i < codes.size(); ++i) same += codes[i] == expected[i] ? 1 : 0;
    // Both round the same error-corrected weights; only a weight within
    // float noise of a rounding boundary could differ.
    CHECK(same >= codes.size() - 2);
  }
}

TEST_CASE("GPTQ's lazy block updates change no result") {
  const model::Matrix w = testing::random_weights(24, 192, 41);
  const auto stats = testing::statistics_of(testing::correlated_activations(300, 192, 42));
  for (bool act_order : {false, true}) {
    const auto reference = gptq_quantize(w, stats.hessian(), Format::int4, {.group_size = 64},
                                         {.act_order = act_order, .block_size = 192});
    for (Eigen::Index block : {1, 7, 64, 500}) {
      CAPTURE(block);
      const auto q = gptq_quantize(w, stats.hessian(), Format::int4, {.group_size = 64},
                                   {.act_order = act_order, .block_size = block});
      CHECK(q.codes() == reference.codes());
      CHECK(std::ranges::equal(q.scales(), reference.scales()));
    }
  }
}

TEST_CASE("a singular H (fewer tokens than columns, a channel that is always zero) is handled by damping") {
  const model::Matrix w = testing::random_weights(16, 64, 51);
  model::Matrix x = testing::correlated_activations(12, 64, 52);
  x.col(5).setZero();
  const auto stats = testing::statistics_of(x);
  const double rtn = quant::output_error(w, QuantizedMatrix::quantize(w, Format::int4, {.group_size = 32}), stats);
  const auto gptq = gptq_quantize(w, stats.hessian(), Format::int4, {.group_size = 32});
  check_codes_in_range(gptq);
  CHECK(quant::output_error(w, gptq, stats) < rtn);
  // The dead channel's weights meet only zeros: its error costs nothing, and
  // no error is fed back into it from other columns beyond what rounding allows.
  CHECK(std::isfinite(quant::weight_difference(w, gptq)));
}

TEST_CASE("bad calibration inputs are errors that name the weight") {
  const model::Matrix w = testing::random_weights(8, 64, 61);
  const auto stats = testing::statistics_of(testing::correlated_activations(80, 64, 62));
  const QuantScheme scheme{.group_size = 32};

  CHECK_THROWS_WITH_AS(gptq_quantize(w, Eigen::MatrixXd::Identity(64, 32), Format::int4, scheme, {}, "fc1"),
                       "fc1: input statistics H is [64 × 32], expected a square matrix", Error);
  CHECK_THROWS_WITH_AS(clip_search_quantize(w, Eigen::MatrixXd::Identity(32, 32), Format::int4, scheme, {}, "fc1"),
                       "fc1: input statistics H is [32 × 32], expected [64 × 64] for a weight with 64 columns", Error);
  Eigen::MatrixXd nan_h = stats.hessian();
  nan_h(3, 4) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(gptq_quantize(w, nan_h, Format::int8, scheme, {}, "fc1"),
                       "fc1: input statistics H[3, 4] is nan, not a finite number", Error);
  model::Matrix nan_w = w;
  nan_w(2, 9) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(gptq_quantize(nan_w, stats.hessian(), Format::int8, scheme, {}, "fc1"),
                       "fc1: element [2, 9] is nan, not a finite number", Error);
  CHECK_THROWS_WITH_AS(clip_search_quantize(nan_w, stats.hessian(), Format::int8, scheme, {}, "fc1"),
                       "fc1: element [2, 9] is nan, not a finite number", Error);

  CHECK_THROWS_WITH_AS(gptq_quantize(w, stats.hessian(), Format::f16, scheme, {}, "fc1"),
                       "fc1: f16 is not an integer format", Error);
  CHECK_THROWS_WITH_AS(clip_search_quantize(w, stats.hessian(), Format::f32, scheme, {}, "fc1"),
                       "fc1: f32 is not an integer format", Error);
  CHECK_THROWS_WITH_AS(gptq_quantize(w, stats.hessian(), Format::int4, {.group_size = 128}, {}, "fc1"),
                       "fc1: group size 128 does not divide the 64 columns of its [8 × 64] weight", Error);
  CHECK_THROWS_WITH_AS(gptq_quantize(w, stats.hessian(), Format::int4, scheme, {.block_size = 0}, "fc1"),
                       "fc1: GPTQ block size must be positive, got 0", Error);
  CHECK_THROWS_WITH_AS(gptq_quantize(w, stats.hessian(), Format::int4, scheme, {.damping = -0.5}, "fc1"),
                       "fc1: GPTQ damping must be a finite number ≥ 0, got -0.5", Error);
  CHECK_THROWS_WITH_AS(clip_search_quantize(w, stats.hessian(), Format::int4, scheme, {.passes = 0}, "fc1"),
                       "fc1: clip search needs at least 1 pass, got 0", Error);
  CHECK_THROWS_WITH_AS(
      clip_search_quantize(w, stats.hessian(), Format::int4, scheme, {.grid = {.min_shrink = 0.0}}, "fc1"),
      "clip grid: min_shrink must be in (0, 1], got 0", Error);

  // An H that no damping of 1 % can make positive definite (it is not a sum of
  // outer products): eigenvalues 2·64 − 1 and −1.
  const Eigen::MatrixXd indefinite = 2.0 * Eigen::MatrixXd::Ones(64, 64) - Eigen::MatrixXd::Identity(64, 64);
  CHECK_THROWS_WITH_AS(gptq_quantize(w, indefinite, Format::int4, scheme, {}, "fc1"),
                       "fc1: input statistics H is not positive definite even with damping 0.01 × its mean diagonal "
                       "1; use a larger damping",
                       Error);
}

TEST_CASE("methods by name, and quantize_weight dispatches to them") {
  CHECK(parse_method("kd") == Method::kd);
  CHECK(method_name(Method::clip) == "clip");
  CHECK_THROWS_WITH_AS(parse_method("awq", "--method"),
                       "--method: unknown calibration method \"awq\" (expected rtn, clip, gptq or kd)", Error);

  const model::Matrix w = testing::random_weights(16, 64, 71);
  const auto stats = testing::statistics_of(testing::correlated_activations(120, 64, 72));
  const QuantScheme scheme{.group_size = 32};
  CHECK(quantize_weight(w, Format::int4, scheme, Method::rtn, nullptr).codes() ==
        QuantizedMatrix::quantize(w, Format::int4, scheme).codes());
  CHECK(quantize_weight(w, Format::int4, scheme, Method::gptq, &stats).codes() ==
        gptq_quantize(w, stats.hessian(), Format::int4, scheme).codes());
  CHECK(quantize_weight(w, Format::int4, scheme, Method::clip, &stats).codes() ==
        clip_search_quantize(w, stats.hessian(), Format::int4, scheme).codes());
  CHECK(quantize_weight(w, Format::int4, scheme, Method::kd, &stats).codes() ==
        gptq_quantize(w, stats.hessian(), Format::int4, scheme, {.search_scales = true}).codes());
  // Float formats are conversions whatever the method.
  CHECK(quantize_weight(w, Format::f16, scheme, Method::kd, nullptr).format() == Format::f16);
  CHECK_THROWS_WITH_AS(quantize_weight(w, Format::int8, scheme, Method::gptq, nullptr, {}, "fc2"),
                       "fc2: calibration method gptq needs the weight's calibration inputs, none were captured",
                       Error);
}
