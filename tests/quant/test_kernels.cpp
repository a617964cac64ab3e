// Every kernel set against the scalar reference, and the scalar kernels
// against a double-precision product with the dequantized weights, on shapes
// that are not multiples of the vector width, the 4-row blocks or the panels.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/quant/matmul.hpp"
#include "quant_test_support.hpp"

using namespace dilemma;
using quant::Format;
using quant::KernelIsa;
using quant::QuantizedMatrix;
using quant::QuantScheme;

namespace {

struct Case {
  Format format;
  QuantScheme scheme;
};

const std::vector<Case> cases = {
    {Format::f32, {}},
    {Format::f16, {}},
    {Format::int8, {.group_size = 32}},
    {Format::int8, {.group_size = 64}},
    {Format::int8, {.group_size = 128}},
    {Format::int4, {.group_size = 32}},
    {Format::int4, {.group_size = 64}},
    {Format::int4, {.group_size = 128}},
    {Format::int4, {.group_size = 32, .int4_asymmetric = true}},
    {Format::int4, {.group_size = 64, .int4_asymmetric = true}},
};

std::string describe(const Case& c) {
  return fmt::format("{} group {}{}", quant::format_name(c.format), c.scheme.group_size,
                     c.scheme.int4_asymmetric ? " asymmetric" : "");
}

std::vector<Eigen::Index> column_counts(const Case& c) {
  if (c.format == Format::int4) {
    // Whole 128-column steps too, for the AVX-512 and AVX2 int4 step kernels: on AVX-512, 3, 4, 6 and 8
    // steps run in chunks of 1, 4, 2 and 4 or 8 steps (groups of 32 or 64), or make 3, 4, 6 and 8 groups of 128.
    return {c.scheme.group_size, 2 * c.scheme.group_size, 3 * c.scheme.group_size, 384, 512, 768, 1024};
  }
  if (quant::is_integer_format(c.format)) {
    return {c.scheme.group_size, 2 * c.scheme.group_size, 3 * c.scheme.group_size};
  }
  return {1, 5, 8, 15, 16, 17, 31, 33, 100, 128};
}

// The largest |ŵ| the group of column c can hold: rounding errors of a kernel
// scale with it (the int4 kernels work on unsigned codes and an offset).
Eigen::RowVectorXd magnitude_bounds(const QuantizedMatrix& q, const model::Matrix& restored, Eigen::Index r) {
  Eigen::RowVectorXd bound(q.cols());
  for (Eigen::Index c = 0; c < q.cols(); ++c) {
    if (!quant::is_integer_format(q.format())) {
      bound(c) = std::abs(restored(r, c));
      continue;
    }
    const quant::GroupParams p = q.group_params(r, c / q.scheme().group_size);
    const double scale = p.scale;
    bound(c) = std::abs(p.offset) + scale * (q.format() == Format::int8 ? 128 : 16);
  }
  return bound;
}

struct Reference {
  Eigen::MatrixXd y;          // [tokens × rows], in double precision
  Eigen::MatrixXd tolerance;  // per element
};

Reference reference_product(const QuantizedMatrix& q, const model::Matrix& x) {
  const model::Matrix restored = q.dequantize();
  const Eigen::MatrixXd xd = x.cast<double>();
  Reference ref{xd * restored.cast<double>().transpose(), Eigen::MatrixXd(x.rows(), q.rows())};
  for (Eigen::Index r = 0; r < q.rows(); ++r) {
    const Eigen::RowVectorXd bound = magnitude_bounds(q, restored, r);
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      ref.tolerance(t, r) = 1e-5 * (bound.array() * xd.row(t).array().abs()).sum() + 1e-30;
    }
  }
  return ref;
}

void check_close(const model::Matrix& y, const Eigen::MatrixXd& expected, const Eigen::MatrixXd& tolerance) {
  REQUIRE(y.rows() == expected.rows());
  REQUIRE(y.cols() == expected.cols());
  for (Eigen::Index t = 0; t < y.rows(); ++t) {
    for (Eigen::Index r = 0; r < y.cols(); ++r) {
      CAPTURE(t);
      CAPTURE(r);
      CHECK(std::abs(y(t, r) - expected(t, r)) <= tolerance(t, r));
    }
  }
}

model::Matrix gemv_rows_of(const QuantizedMatrix& q, const model::Matrix& x, const quant::KernelContext& context) {
  model::Matrix y(x.rows(), q.rows());
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    quant::gemv(q, std::span(x.row(t).data(), static_cast<std::size_t>(x.cols())),
                std::span(y.row(t).data(), static_cast<std::size_t>(y.cols())), context);
  }
  return y;
}

}  // namespace

TEST_CASE("gemv and gemm of every kernel set match the reference, with 1 and 2 threads") {
  parallel::ThreadPool two_threads(2);
  std::uint32_t seed = 100;
  for (const Case& c : cases) {
    for (Eigen::Index rows : {1, 3, 5, 7, 17, 33}) {
      for (Eigen::Index cols : column_counts(c)) {
        CAPTURE(describe(c));
        CAPTURE(rows);
        CAPTURE(cols);
        const auto q = QuantizedMatrix::quantize(testing::random_weights(rows, cols, ++seed), c.format, c.scheme);
        const Eigen::Index tokens = 1 + static_cast<Eigen::Index>(seed % 17);
        CAPTURE(tokens);
        const model::Matrix x = testing::random_activations(tokens, cols, ++seed);
        const Reference ref = reference_product(q, x);
        const model::Matrix scalar_gemm = quant::gemm(q, x, {nullptr, KernelIsa::scalar});
        const model::Matrix scalar_gemv = gemv_rows_of(q, x, {nullptr, KernelIsa::scalar});
        check_close(scalar_gemm, ref.y, ref.tolerance);
        check_close(scalar_gemv, ref.y, ref.tolerance);
        for (KernelIsa isa : quant::available_kernel_isas()) {
          CAPTURE(quant::kernel_isa_name(isa));
          const model::Matrix gemm_one = quant::gemm(q, x, {nullptr, isa});
          const model::Matrix gemv_one = gemv_rows_of(q, x, {nullptr, isa});
          check_close(gemm_one, scalar_gemm.cast<double>(), 2 * ref.tolerance);
          check_close(gemv_one, scalar_gemv.cast<double>(), 2 * ref.tolerance);
          // Threads split rows, never a row's sum, so the results are identical.
          CHECK(quant::gemm(q, x, {&two_threads, isa}) == gemm_one);
          CHECK(gemv_rows_of(q, x, {&two_threads, isa}) == gemv_one);
        }
      }
    }
  }
}

// A GEMV gives each thread one contiguous share of the rows, so that each
// reads its weights as one stream (docs/kernels.md, "Threads").
TEST_CASE("a GEMV's chunks: one per thread, in whole 8-row blocks, at least 16 rows") {
  using quant::detail::gemv_chunk_rows;
  CHECK(gemv_chunk_rows(1024, 1) == 1024);
  CHECK(gemv_chunk_rows(1024, 2) == 512);
  CHECK(gemv_chunk_rows(50272, 2) == 25136);
  CHECK(gemv_chunk_rows(301, 2) == 152);  // 151 rounded up to a block: the second chunk has 149 rows
  CHECK(gemv_chunk_rows(1000, 3) == 336);
  CHECK(gemv_chunk_rows(20, 4) == 16);
}

TEST_CASE("many chunks and panels: a 301-row weight with 1024 columns") {
  parallel::ThreadPool two_threads(2);
  for (const Case& c :
       {Case{Format::f16, {}}, Case{Format::int8, {.group_size = 128}}, Case{Format::int4, {.group_size = 64}},
        Case{Format::int4, {.group_size = 128, .int4_asymmetric = true}}}) {
    CAPTURE(describe(c));
    const auto q = QuantizedMatrix::quantize(testing::random_weights(301, 1024, 7), c.format, c.scheme);
    for (Eigen::Index tokens : {1, 2, 33}) {
      const model::Matrix x = testing::random_activations(tokens, 1024, 8);
      const Reference ref = reference_product(q, x);
      for (KernelIsa isa : quant::available_kernel_isas()) {
        CAPTURE(quant::kernel_isa_name(isa));
        const model::Matrix y = quant::gemm(q, x, {&two_threads, isa});
        check_close(y, ref.y, 2 * ref.tolerance);
        CHECK(quant::gemm(q, x, {nullptr, isa}) == y);
      }
    }
  }
}

// The int4 step kernels store activations scaled by down to 16^−7; they
// must leave activations that would then fall out of float's normal range to
// the kernel that decodes weights, and still give the reference's products.
TEST_CASE("int4 products of tiny and zero activations match the reference on every kernel set") {
  const auto q = QuantizedMatrix::quantize(testing::random_weights(19, 512, 11), Format::int4, {.group_size = 64});
  const model::Matrix x = testing::random_activations(1, 512, 12);
  // Scaling x by a power of two scales the exact product and its tolerance alike.
  const Reference ref = reference_product(q, x);
  for (const float scale : {0x1p-50f, 0x1p-120f, 0.0f}) {
    CAPTURE(scale);
    for (KernelIsa isa : quant::available_kernel_isas()) {
      CAPTURE(quant::kernel_isa_name(isa));
      const model::Matrix y = gemv_rows_of(q, x * scale, {nullptr, isa});
      check_close(y, ref.y * scale, 2 * scale * ref.tolerance);
    }
  }
}

TEST_CASE("the AVX-512 float layout of int4 steps is the plain one, bit for bit") {
#if DILEMMA_QUANT_X86_KERNELS
  if (!quant::kernel_isa_available(KernelIsa::avx512)) return;
  for (const Eigen::Index steps : {1, 2, 8, 32}) {
    CAPTURE(steps);
    model::Matrix x = testing::random_activations(1, quant::detail::int4_step * steps, static_cast<std::uint32_t>(steps));
    x(0, 5) = 0x1p-130f;  // scaled by 16^−k it becomes subnormal or zero in both layouts alike
    x(0, 70) = std::numeric_limits<float>::quiet_NaN();
    const Eigen::Index cols = x.cols();
    const auto plain = quant::detail::lay_out_int4_step_lanes(x.data(), cols, 64);
    REQUIRE(plain.steps == steps);
    const auto vector = quant::detail::avx512::lay_out_int4_step_lanes(x.data(), steps);
    REQUIRE(vector.lanes.size() == plain.lanes.size());
    CHECK(std::memcmp(vector.lanes.data(), plain.lanes.data(), plain.lanes.size() * sizeof(float)) == 0);
  }
#endif
}

// Kernels that split ŵ·x into s·Σu·x + offset·Σx turn ŵ·∞ into ∞ − ∞ = NaN
// where the others give ±∞; either way no output may come out finite.
TEST_CASE("an infinite or NaN activation leaves no int4 output finite, on every kernel set") {
  const auto q = QuantizedMatrix::quantize(testing::random_weights(37, 256, 13), Format::int4, {.group_size = 64});
  for (const float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    CAPTURE(bad);
    model::Matrix x = testing::random_activations(1, 256, 14);
    x(0, 5) = bad;
    for (KernelIsa isa : quant::available_kernel_isas()) {
      CAPTURE(quant::kernel_isa_name(isa));
      const model::Matrix y = gemv_rows_of(q, x, {nullptr, isa});
      CHECK_FALSE(y.array().isFinite().any());
    }
  }
}

TEST_CASE("every kernel set dequantizes rows like QuantizedMatrix::dequantize") {
  for (const Case& c : cases) {
    CAPTURE(describe(c));
    const Eigen::Index cols = quant::is_integer_format(c.format) ? 2 * c.scheme.group_size : 45;
    const auto q = QuantizedMatrix::quantize(testing::random_weights(5, cols, 9), c.format, c.scheme);
    const model::Matrix expected = q.dequantize();
    for (KernelIsa isa : quant::available_kernel_isas()) {
      CAPTURE(quant::kernel_isa_name(isa));
      model::Matrix rows(3, cols);
      quant::detail::dequantize_rows(isa, quant::detail::WeightView::of(q), 1, 4, rows.data());
      for (Eigen::Index r = 0; r < 3; ++r) {
        // scale·u + offset may be computed with or without a fused multiply-add,
        // so the difference is bounded by the terms' size, not the result's.
        const Eigen::RowVectorXd bound = magnitude_bounds(q, expected, r + 1);
        for (Eigen::Index c = 0; c < cols; ++c) {
          CHECK(std::abs(rows(r, c) - expected(r + 1, c)) <= 1.2e-7 * bound(c));
        }
      }
    }
  }
}

TEST_CASE("a product with no tokens is empty, and y is resized") {
  const auto q = QuantizedMatrix::quantize(testing::random_weights(3, 64, 10), Format::int4, {.group_size = 32});
  model::Matrix y(5, 5);
  quant::gemm(q, model::Matrix(0, 64), y);
  CHECK(y.rows() == 0);
  CHECK(y.cols() == 3);
}

TEST_CASE("mismatched shapes, aliasing and unavailable kernels are errors") {
  const auto q = QuantizedMatrix::quantize(testing::random_weights(3, 64, 11), Format::int8, {.group_size = 32});
  std::vector<float> x(64), y(3), buffer(80);
  CHECK_THROWS_WITH_AS(quant::gemv(q, std::span(x).first(63), y),
                       "gemv(): a [3 × 64] weight needs x of 64 and y of 3 floats, got 63 and 3", Error);
  CHECK_THROWS_WITH_AS(quant::gemv(q, x, std::span(y).first(2)),
                       "gemv(): a [3 × 64] weight needs x of 64 and y of 3 floats, got 64 and 2", Error);
  CHECK_THROWS_WITH_AS(quant::gemv(q, std::span(buffer).first(64), std::span(buffer).subspan(62, 3)),
                       "gemv(): x and y overlap", Error);
  model::Matrix activations = testing::random_activations(2, 63, 12);
  model::Matrix out;
  CHECK_THROWS_WITH_AS(quant::gemm(q, activations, out),
                       "gemm(): a [3 × 64] weight needs activations with 64 columns, got [2 × 63]", Error);
  model::Matrix same = testing::random_activations(2, 64, 13);
  CHECK_THROWS_WITH_AS(quant::gemm(q, same, same), "gemm(): x and y are the same matrix", Error);
  for (KernelIsa isa : quant::all_kernel_isas) {
    if (quant::kernel_isa_available(isa)) continue;
    CHECK_THROWS_WITH_AS(quant::gemv(q, x, y, {nullptr, isa}),
                         fmt::format("quant kernels: {} kernels are not available on this CPU or build (best: {})",
                                     quant::kernel_isa_name(isa), quant::kernel_isa_name(quant::best_kernel_isa()))
                             .c_str(),
                         Error);
  }
}
