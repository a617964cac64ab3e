// The int8-activation mode: activations rounded to int8 per group, integer
// dot products, and the error that costs against float activations.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "dilemma/quant/matmul.hpp"
#include "quant_test_support.hpp"

using namespace dilemma;
using quant::ActivationPrecision;
using quant::Format;
using quant::KernelIsa;
using quant::QuantizedMatrix;

namespace {

model::Matrix int8_product(const QuantizedMatrix& q, const model::Matrix& x, KernelIsa isa,
                           parallel::ThreadPool* pool) {
  model::Matrix y;
  quant::gemm(q, x, y, {pool, isa, ActivationPrecision::int8});
  return y;
}

}  // namespace

TEST_CASE("activations are rounded per group to int8 with scale max|x|/127") {
  std::vector<float> x(64, 0.0f);
  x[0] = -2.54f;
  x[1] = 1.0f;
  x[2] = 0.01f;
  x[33] = 0.5f;
  const auto q = quant::quantize_activations(x, 32);
  REQUIRE(q.scales.size() == 2);
  CHECK(q.scales[0] == doctest::Approx(0.02f));
  CHECK(q.codes[0] == -127);
  CHECK(q.codes[1] == 50);
  CHECK(q.codes[2] == 1);  // 0.5 steps round away from zero
  CHECK(q.codes[3] == 0);
  CHECK(q.sums[0] == -127 + 50 + 1);
  CHECK(q.codes[33] == 127);
  CHECK(q.sums[1] == 127);
  const std::vector<float> restored = q.dequantize();
  for (std::size_t c = 0; c < x.size(); ++c) CHECK(std::abs(restored[c] - x[c]) <= q.scales[c / 32] / 2 * 1.0001f);

  const auto zeros = quant::quantize_activations(std::vector<float>(32, 0.0f), 32);
  CHECK(zeros.scales[0] == 0.0f);
  CHECK(zeros.sums[0] == 0);

  x[40] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(quant::quantize_activations(x, 32), "int8 activations: activation 40 is inf, which has no int8 code",
                       Error);
  x[40] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(quant::quantize_activations(x, 32), "int8 activations: activation 40 is nan, which has no int8 code",
                       Error);
  CHECK(quant::parse_activation_precision("int8", "--activations") == quant::ActivationPrecision::int8);
  CHECK(quant::parse_activation_precision("f32", "--activations") == quant::ActivationPrecision::f32);
  CHECK_THROWS_WITH_AS(quant::parse_activation_precision("int4", "--activations"),
                       "--activations: unknown activation precision \"int4\" (expected f32, bf16 or int8)", Error);
  CHECK_THROWS_WITH_AS(quant::quantize_activations(std::vector<float>(48), 32),
                       "int8 activations: group size 32 does not split 48 activations (at most 65536)", Error);
}

TEST_CASE("the weights and activation buffers the kernels load a step at a time start on a cache line") {
  const auto on_cache_line = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; };
  std::mt19937 engine(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Several sizes, so that an allocator that happens to return aligned blocks for one size is not enough.
  for (const std::size_t cols : {128, 384, 1024, 4096}) {
    CAPTURE(cols);
    std::vector<float> x(cols);
    for (float& v : x) v = normal(engine);
    const auto q = quant::quantize_activations(x, 64);
    CHECK(on_cache_line(q.codes.data()));
    const auto steps = quant::detail::lay_out_int4_step_codes(q);
    CHECK(on_cache_line(steps.low.data()));
    CHECK(on_cache_line(steps.high.data()));
    const auto lanes = quant::detail::lay_out_int4_step_lanes(x.data(), static_cast<Eigen::Index>(cols), 64);
    REQUIRE(lanes.steps > 0);
    CHECK(on_cache_line(lanes.lanes.data()));
    model::Matrix weight(3, static_cast<Eigen::Index>(cols));
    for (Eigen::Index i = 0; i < weight.size(); ++i) weight.data()[i] = normal(engine);
    for (const Format format : {Format::f32, Format::f16, Format::int8, Format::int4}) {
      CAPTURE(quant::format_name(format));
      CHECK(on_cache_line(QuantizedMatrix::quantize(weight, format).storage().data()));
    }
  }
}

TEST_CASE("vectorized rounding gives std::round's code for every activation, halfway values included") {
  std::mt19937 engine(77);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> step(-126, 126);
  for (const Eigen::Index group : {32, 64, 128}) {
    std::vector<float> x(static_cast<std::size_t>(4 * group));
    for (std::size_t c = 0; c < x.size(); ++c) x[c] = normal(engine);
    // A few activations exactly halfway between two codes of their group's scale.
    for (std::size_t g = 0; g < 4; ++g) {
      const std::span<float> values(x.data() + g * static_cast<std::size_t>(group), static_cast<std::size_t>(group));
      const float magnitude = std::abs(*std::ranges::max_element(values, {}, [](float v) { return std::abs(v); }));
      for (std::size_t c = 1; c < 6; ++c) values[c] = (static_cast<float>(step(engine)) + 0.5f) * (magnitude / 127.0f);
    }
    const auto q = quant::quantize_activations(x, group);
    for (std::size_t c = 0; c < x.size(); ++c) {
      CAPTURE(c);
      const float scale = q.scales[c / static_cast<std::size_t>(group)];
      CHECK(q.codes[c] == static_cast<std::int8_t>(std::clamp(std::round(x[c] / scale), -127.0f, 127.0f)));
    }
  }
}

TEST_CASE("every kernel set rounds activations to the reference's codes, scales and sums, bit for bit") {
  std::mt19937 engine(91);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> step(-126, 126);
  // 8 and 40 leave the AVX-512 kernel a tail of lanes; 7 sends the AVX2 one to the reference.
  for (const Eigen::Index group : {7, 8, 32, 40, 64, 128}) {
    for (int trial = 0; trial < 50; ++trial) {
      CAPTURE(group);
      CAPTURE(trial);
      const auto size = static_cast<std::size_t>(group);
      std::vector<float> x(6 * size);
      for (float& v : x) v = normal(engine) * static_cast<float>(1 + trial % 5);
      // Group 1 on or next to halfway points between codes, group 2 zeros, group 3 a subnormal, group 4 tiny.
      for (std::size_t c = 1; c < size; ++c) x[size + c] = (static_cast<float>(step(engine)) + 0.5f) * 0.01f;
      x[size] = 1.27f;
      std::fill_n(x.begin() + static_cast<std::ptrdiff_t>(2 * size), size, 0.0f);
      x[3 * size + size / 2] = 1e-42f;
      for (std::size_t c = 0; c < size; ++c) x[4 * size + c] *= 1e-39f;
      const auto reference = quant::quantize_activations(x, group);
      for (KernelIsa isa : quant::available_kernel_isas()) {
        CAPTURE(quant::kernel_isa_name(isa));
        const auto q = quant::detail::quantize_activations_with(isa, x, group);
        CHECK(std::ranges::equal(q.codes, reference.codes));
        CHECK(q.scales == reference.scales);
        CHECK(q.sums == reference.sums);
      }
    }
  }
  std::vector<float> x(128, 0.5f);
  for (KernelIsa isa : quant::available_kernel_isas()) {
    CAPTURE(quant::kernel_isa_name(isa));
    x[70] = -std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(quant::detail::quantize_activations_with(isa, x, 64),
                         "int8 activations: activation 70 is -inf, which has no int8 code", Error);
    x[70] = 0.5f;
    x[127] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH_AS(quant::detail::quantize_activations_with(isa, x, 32),
                         "int8 activations: activation 127 is nan, which has no int8 code", Error);
    x[127] = 0.5f;
    CHECK_THROWS_WITH_AS(quant::detail::quantize_activations_with(isa, x, 48),
                         "int8 activations: group size 48 does not split 128 activations (at most 65536)", Error);
  }
}

TEST_CASE("int8-activation kernels compute Ŵ·x̂ exactly per group, for every kernel set and 1 and 2 threads") {
  parallel::ThreadPool two_threads(2);
  testing::for_each_product_shape(500, [&](const testing::IntegerCase& c, const QuantizedMatrix& q,
                                           const model::Matrix& x) {
    const Eigen::Index tokens = x.rows(), rows = q.rows(), cols = q.cols();
    CAPTURE(testing::describe(c));
    CAPTURE(rows);
    CAPTURE(cols);
    const Eigen::MatrixXd restored = q.dequantize().cast<double>();
    const Eigen::MatrixXd magnitudes = testing::rounding_magnitudes(q);
    Eigen::MatrixXd expected(tokens, rows);
    Eigen::MatrixXd tolerance(tokens, rows);
    for (Eigen::Index t = 0; t < tokens; ++t) {
      const auto codes =
          quant::quantize_activations(std::span(x.row(t).data(), static_cast<std::size_t>(cols)), c.scheme.group_size);
      const std::vector<float> rounded = codes.dequantize();
      const Eigen::VectorXd xd = Eigen::Map<const Eigen::VectorXf>(rounded.data(), cols).cast<double>();
      expected.row(t) = (restored * xd).transpose();
      // int32 sums are exact; only the per-group float scaling rounds.
      tolerance.row(t) = (1e-5 * (magnitudes * xd.cwiseAbs()).array() + 1e-30).transpose();
    }
    const model::Matrix scalar = int8_product(q, x, KernelIsa::scalar, nullptr);
    for (KernelIsa isa : quant::available_kernel_isas()) {
      CAPTURE(quant::kernel_isa_name(isa));
      const model::Matrix y = int8_product(q, x, isa, nullptr);
      CHECK(((y.cast<double>() - expected).array().abs() <= tolerance.array()).all());
      CHECK(((y - scalar).cast<double>().array().abs() <= 2 * tolerance.array()).all());
      CHECK(int8_product(q, x, isa, &two_threads) == y);
    }
  });
}

TEST_CASE("an int8-activation GEMM agrees with each token's GEMV, bit for bit below the panel kernel's tokens") {
  // 600 rows span several row chunks and panels, with a part-filled last panel; 5 groups
  // leave (group 32 or 64) columns past the int4 GEMV kernel's last whole 128-column step.
  // From panel_gemm_min_tokens tokens on, AVX-512 VNNI adds a row's groups in another
  // order than the GEMV kernels: equal to float rounding. 7, 8 and 19 tokens: below the
  // panel kernel, one block of 8 tokens, and two with a part-filled third.
  parallel::ThreadPool two_threads(2);
  std::uint32_t seed = 900;
  for (const testing::IntegerCase& c : testing::integer_cases) {
    for (const Eigen::Index tokens : {7, 8, 19}) {
      CAPTURE(testing::describe(c));
      CAPTURE(tokens);
      const Eigen::Index rows = 600, cols = 5 * c.scheme.group_size;
      const auto q = QuantizedMatrix::quantize(testing::random_weights(rows, cols, ++seed), c.format, c.scheme);
      const model::Matrix x = testing::random_activations(tokens, cols, ++seed);
      const Eigen::MatrixXd magnitudes = testing::rounding_magnitudes(q);
      for (KernelIsa isa : quant::available_kernel_isas()) {
        CAPTURE(quant::kernel_isa_name(isa));
        const model::Matrix y = int8_product(q, x, isa, &two_threads);
        std::size_t differ = 0, beyond_rounding = 0;
        for (Eigen::Index t = 0; t < tokens; ++t) {
          std::vector<float> decoded(static_cast<std::size_t>(rows));
          quant::gemv(q, std::span(x.row(t).data(), static_cast<std::size_t>(cols)), decoded,
                      {nullptr, isa, ActivationPrecision::int8});
          const auto codes = quant::quantize_activations(std::span(x.row(t).data(), static_cast<std::size_t>(cols)),
                                                         c.scheme.group_size);
          const std::vector<float> rounded = codes.dequantize();
          const Eigen::VectorXd bound =
              1e-5 * magnitudes * Eigen::Map<const Eigen::VectorXf>(rounded.data(), cols).cast<double>().cwiseAbs();
          for (Eigen::Index r = 0; r < rows; ++r) {
            const double difference = std::abs(static_cast<double>(decoded[static_cast<std::size_t>(r)]) - y(t, r));
            differ += difference != 0.0;
            beyond_rounding += difference > bound(r);
          }
        }
        CHECK(beyond_rounding == 0);
        if (tokens < quant::detail::panel_gemm_min_tokens) CHECK(differ == 0);
      }
    }
  }
}

TEST_CASE("the error of int8 activations is bounded by half an activation step per weight") {
  const auto q = QuantizedMatrix::quantize(testing::random_weights(64, 512, 7), Format::int4, {.group_size = 64});
  const model::Matrix x = testing::random_activations(3, 512, 8);
  const model::Matrix restored = q.dequantize();
  for (KernelIsa isa : quant::available_kernel_isas()) {
    const model::Matrix exact = quant::gemm(q, x, {nullptr, isa, ActivationPrecision::f32});
    const model::Matrix rounded = int8_product(q, x, isa, nullptr);
    double error = 0;
    double norm = 0;
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      const auto codes = quant::quantize_activations(std::span(x.row(t).data(), 512), 64);
      for (Eigen::Index r = 0; r < q.rows(); ++r) {
        double bound = 0;
        for (Eigen::Index c = 0; c < 512; ++c) bound += std::abs(restored(r, c)) * codes.scales[c / 64] / 2;
        CHECK(std::abs(rounded(t, r) - exact(t, r)) <= bound * 1.001 + 1e-5);
        error += std::pow(rounded(t, r) - exact(t, r), 2);
        norm += std::pow(exact(t, r), 2);
      }
    }
    // Gaussian activations: about 0.5 % relative error in the output.
    CHECK(std::sqrt(error / norm) < 0.01);
  }
}

TEST_CASE("float weights ignore the int8-activation mode") {
  const model::Matrix x = testing::random_activations(2, 96, 9);
  for (Format format : {Format::f32, Format::f16}) {
    const auto q = QuantizedMatrix::quantize(testing::random_weights(5, 96, 10), format);
    for (KernelIsa isa : quant::available_kernel_isas()) {
      CHECK(int8_product(q, x, isa, nullptr) == quant::gemm(q, x, {nullptr, isa}));
    }
  }
}
