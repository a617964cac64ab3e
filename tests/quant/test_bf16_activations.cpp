// The bfloat16-activation mode: activations rounded to bfloat16, the AVX-512
// BF16 int4 kernel against the float kernels on the same rounded activations,
// and the error that costs against float activations.

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/quant/matmul.hpp"
#include "quant_test_support.hpp"

using namespace dilemma;
using quant::ActivationPrecision;
using quant::Format;
using quant::KernelIsa;
using quant::QuantizedMatrix;

namespace {

std::vector<float> rounded_to_bf16(std::span<const float> x) {
  std::vector<float> rounded(x.begin(), x.end());
  quant::round_to_bf16(rounded);
  return rounded;
}

model::Matrix rounded_to_bf16(const model::Matrix& x) {
  model::Matrix rounded = x;
  quant::round_to_bf16(std::span(rounded.data(), static_cast<std::size_t>(rounded.size())));
  return rounded;
}

model::Matrix bf16_product(const QuantizedMatrix& q, const model::Matrix& x, KernelIsa isa,
                           parallel::ThreadPool* pool) {
  model::Matrix y;
  quant::gemm(q, x, y, {pool, isa, ActivationPrecision::bf16});
  return y;
}

std::vector<float> bf16_gemv(const QuantizedMatrix& q, std::span<const float> x, KernelIsa isa,
                             parallel::ThreadPool* pool = nullptr) {
  std::vector<float> y(static_cast<std::size_t>(q.rows()));
  quant::gemv(q, x, y, {pool, isa, ActivationPrecision::bf16});
  return y;
}

}  // namespace

TEST_CASE("activations round to the nearest bfloat16, ties to even, as Eigen::bfloat16 rounds them") {
  const float one_and_half_ulp = 1.0f + 3.0f / 256;  // halfway between 1 + 1/128 and 1 + 2/128
  std::vector<float> x = {1.0f,
                          1.0f + 1.0f / 256,  // halfway between 1 and 1 + 1/128: to 1, the even one
                          one_and_half_ulp,
                          -1.0f - 1.0f / 512,
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::infinity(),
                          -0.0f,
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::quiet_NaN(),
                          std::bit_cast<float>(0x7FFFFFFFu)};  // a NaN whose rounding up would carry into the sign
  quant::round_to_bf16(x);
  CHECK(x[0] == 1.0f);
  CHECK(x[1] == 1.0f);
  CHECK(x[2] == 1.0f + 2.0f / 128);
  CHECK(x[3] == -1.0f);
  CHECK(x[4] == std::numeric_limits<float>::infinity());
  CHECK(x[5] == std::numeric_limits<float>::infinity());
  CHECK(std::bit_cast<std::uint32_t>(x[6]) == 0x80000000u);
  CHECK(x[7] == 0.0f);
  CHECK(std::isnan(x[8]));
  CHECK(std::isnan(x[9]));

  std::mt19937 engine(31);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::vector<float> random(100000);
  for (float& v : random) v = std::bit_cast<float>(bits(engine));
  std::vector<float> rounded = random;
  quant::round_to_bf16(rounded);
  for (std::size_t i = 0; i < random.size(); ++i) {
    const float eigen = static_cast<float>(Eigen::bfloat16(random[i]));
    if (std::isnan(random[i])) {
      CHECK(std::isnan(rounded[i]));
    } else if (std::bit_cast<std::uint32_t>(rounded[i]) != std::bit_cast<std::uint32_t>(eigen)) {
      FAIL_CHECK(fmt::format("{:#010x}: {} against Eigen's {}", std::bit_cast<std::uint32_t>(random[i]), rounded[i],
                             eigen));
    }
  }
  CHECK(quant::parse_activation_precision("bf16", "--activations") == ActivationPrecision::bf16);
  CHECK(quant::activation_precision_name(ActivationPrecision::bf16) == "bf16");
  CHECK_THROWS_WITH_AS(quant::parse_activation_precision("fp16", "--activations"),
                       "--activations: unknown activation precision \"fp16\" (expected f32, bf16 or int8)", Error);
  // The command-line choices: every name, each parsing back to its precision.
  const std::vector<std::string> names = quant::activation_precision_names();
  CHECK(names == std::vector<std::string>{"f32", "bf16", "int8"});
  for (std::size_t i = 0; i < names.size(); ++i) {
    CHECK(quant::parse_activation_precision(names[i], "--activations") == quant::all_activation_precisions[i]);
  }
}

TEST_CASE("the bfloat16 step layout puts every column of a step under exactly one nibble, as 128·x̃") {
  std::vector<int> seen(quant::detail::int4_step, 0);
  for (Eigen::Index k = 0; k < 4; ++k) {
    for (Eigen::Index j = 0; j < 32; ++j) ++seen[static_cast<std::size_t>(quant::detail::bf16_step_column(j, k))];
  }
  CHECK(std::ranges::all_of(seen, [](int count) { return count == 1; }));
  // Word 0 holds byte 0 (columns 0 and 16) and byte 1 (columns 1 and 17); word 8 begins block 1.
  CHECK(quant::detail::bf16_step_column(0, 0) == 0);
  CHECK(quant::detail::bf16_step_column(0, 1) == 16);
  CHECK(quant::detail::bf16_step_column(0, 2) == 1);
  CHECK(quant::detail::bf16_step_column(0, 3) == 17);
  CHECK(quant::detail::bf16_step_column(8, 0) == 32);
  CHECK(quant::detail::bf16_step_column(31, 3) == 127);
#if DILEMMA_QUANT_X86_KERNELS
  if (!quant::kernel_isa_available(KernelIsa::avx512)) return;
  // Random bits in range: every exponent the layout takes, ties among them (low halves 0x8000).
  std::mt19937 engine(3);
  std::uniform_int_distribution<std::uint32_t> mantissa(0, (1u << 23) - 1), exponent(127 - 60, 127 + 119);
  std::vector<float> x(3 * quant::detail::int4_step);
  for (std::size_t c = 0; c < x.size(); ++c) {
    const std::uint32_t low = c % 5 == 0 ? 0x8000u : mantissa(engine);
    const auto sign = static_cast<std::uint32_t>(c % 2);
    x[c] = std::bit_cast<float>(sign << 31 | exponent(engine) << 23 | (low & 0x7FFFFFu));
  }
  x[7] = 0.0f;
  REQUIRE(quant::detail::int4_bf16_steps(x.data(), static_cast<Eigen::Index>(x.size()), 64) == 3);
  const quant::detail::Int4Bf16StepLanes lanes = quant::detail::avx512::lay_out_int4_bf16_step_lanes(x.data(), 3);
  const std::vector<float> rounded = rounded_to_bf16(x);
  CHECK(lanes.rounded == rounded);
  for (Eigen::Index s = 0; s < 3; ++s) {
    for (Eigen::Index k = 0; k < 4; ++k) {
      for (Eigen::Index j = 0; j < 32; ++j) {
        const auto column = static_cast<std::size_t>(128 * s + quant::detail::bf16_step_column(j, k));
        const auto word = lanes.lanes[static_cast<std::size_t>(128 * s + 32 * k + j)];
        CHECK(std::bit_cast<float>(std::uint32_t{word} << 16) == 128.0f * rounded[column]);
      }
    }
  }
#endif
}

TEST_CASE("bfloat16-activation kernels compute Ŵ·x̃ to float rounding, for every kernel set and 1 and 2 threads") {
  parallel::ThreadPool two_threads(2);
  testing::for_each_product_shape(700, [&](const testing::IntegerCase& c, const QuantizedMatrix& q,
                                           const model::Matrix& x) {
    const Eigen::Index rows = q.rows(), cols = q.cols();
    CAPTURE(testing::describe(c));
    CAPTURE(rows);
    CAPTURE(cols);
    const model::Matrix rounded = rounded_to_bf16(x);
    const Eigen::MatrixXd expected = rounded.cast<double>() * q.dequantize().cast<double>().transpose();
    // The bfloat16 kernel adds (128 + u)·x̃ per weight and takes 128·Σx̃ off per group.
    const Eigen::MatrixXd magnitudes = testing::rounding_magnitudes(q, 136).transpose();
    const Eigen::MatrixXd tolerance = (1e-5 * rounded.cast<double>().cwiseAbs() * magnitudes).array() + 1e-30;
    for (KernelIsa isa : quant::available_kernel_isas()) {
      CAPTURE(quant::kernel_isa_name(isa));
      const model::Matrix y = bf16_product(q, x, isa, nullptr);
      CHECK(((y.cast<double>() - expected).array().abs() <= tolerance.array()).all());
      CHECK(bf16_product(q, x, isa, &two_threads) == y);
      // Each token's GEMV: the kernel this mode has of its own on AVX-512 BF16.
      for (Eigen::Index t = 0; t < x.rows(); ++t) {
        const std::vector<float> decoded =
            bf16_gemv(q, std::span(x.row(t).data(), static_cast<std::size_t>(cols)), isa, &two_threads);
        const Eigen::VectorXd error =
            Eigen::Map<const Eigen::VectorXf>(decoded.data(), rows).cast<double>() - expected.row(t).transpose();
        CHECK((error.array().abs() <= tolerance.row(t).transpose().array()).all());
      }
    }
  });
}

TEST_CASE("activations the bfloat16 int4 layout cannot hold take the float kernels on x̃") {
  const auto q = QuantizedMatrix::quantize(testing::random_weights(9, 256, 41), Format::int4, {.group_size = 64});
  const std::vector<float> base = rounded_to_bf16(std::span(testing::random_activations(1, 256, 42).data(), 256));
  // 2^121: 128·x̃ would overflow; 2^-70: below the layout's smallest largest |x|.
  for (const float scale : {0x1p121f, 0x1p-70f}) {
    CAPTURE(scale);
    std::vector<float> x = base;
    for (float& v : x) v *= scale;
    CHECK(quant::detail::int4_bf16_steps(x.data(), 256, 64) == 0);
    const Eigen::VectorXd expected =
        q.dequantize().cast<double>() * Eigen::Map<const Eigen::VectorXf>(x.data(), 256).cast<double>();
    for (KernelIsa isa : quant::available_kernel_isas()) {
      CAPTURE(quant::kernel_isa_name(isa));
      const std::vector<float> y = bf16_gemv(q, x, isa);
      for (Eigen::Index r = 0; r < q.rows(); ++r) {
        CHECK(std::isfinite(y[static_cast<std::size_t>(r)]));
        CHECK(y[static_cast<std::size_t>(r)] == doctest::Approx(expected(r)).epsilon(1e-4).scale(scale));
      }
    }
  }
  std::vector<float> with_nan = base;
  with_nan[100] = std::numeric_limits<float>::quiet_NaN();
  for (KernelIsa isa : quant::available_kernel_isas()) {
    for (const float v : bf16_gemv(q, with_nan, isa)) CHECK(std::isnan(v));
  }
}

TEST_CASE("the error of bfloat16 activations is bounded by 2^-9 of each activation") {
  const auto q = QuantizedMatrix::quantize(testing::random_weights(64, 512, 17), Format::int4, {.group_size = 64});
  const model::Matrix x = testing::random_activations(3, 512, 18);
  const Eigen::MatrixXd restored = q.dequantize().cast<double>();
  for (KernelIsa isa : quant::available_kernel_isas()) {
    CAPTURE(quant::kernel_isa_name(isa));
    const model::Matrix exact = quant::gemm(q, x, {nullptr, isa, ActivationPrecision::f32});
    const model::Matrix rounded = bf16_product(q, x, isa, nullptr);
    const Eigen::MatrixXd bound = x.cast<double>().cwiseAbs() * restored.cwiseAbs().transpose() * 0x1p-9;
    CHECK(((rounded - exact).cast<double>().array().abs() <= bound.array() * 1.001 + 1e-5).all());
    // Gaussian activations: about 0.1 % relative error in the output, five times less than int8 activations.
    const double relative = (rounded - exact).cast<double>().norm() / exact.cast<double>().norm();
    CHECK(relative < 0.003);
    CHECK(relative > 0.0);
  }
}

TEST_CASE("float weights ignore the bfloat16-activation mode") {
  const model::Matrix x = testing::random_activations(2, 96, 19);
  for (Format format : {Format::f32, Format::f16}) {
    const auto q = QuantizedMatrix::quantize(testing::random_weights(5, 96, 20), format);
    for (KernelIsa isa : quant::available_kernel_isas()) {
      CHECK(bf16_product(q, x, isa, nullptr) == quant::gemm(q, x, {nullptr, isa}));
    }
  }
}
