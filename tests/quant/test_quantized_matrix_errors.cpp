// Bad weights, schemes and stored data are refused with messages that name
// the tensor and what is wrong.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dilemma/quant/quantized_matrix.hpp"
#include "quant_test_support.hpp"

using namespace dilemma;
using quant::Format;
using quant::QuantizedMatrix;
using quant::QuantScheme;

namespace {

std::vector<std::byte> zero_bytes(std::size_t n) { return std::vector<std::byte>(n); }

}  // namespace

TEST_CASE("a group size that does not divide the columns, or is no multiple of 32, is an error") {
  const model::Matrix w = testing::random_weights(192, 96, 1);
  CHECK_THROWS_WITH_AS(
      QuantizedMatrix::quantize(w, Format::int4, {.group_size = 64}, "model.decoder.project_in.weight"),
      "model.decoder.project_in.weight: group size 64 does not divide the 96 columns of its "
      "[192 × 96] weight",
      Error);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::quantize(w, Format::int8, {.group_size = 48}, "w"),
                       "w: group size 48 is not a positive multiple of 32", Error);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::quantize(w, Format::int8, {.group_size = 0}, "w"),
                       "w: group size 0 is not a positive multiple of 32", Error);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::quantize(w, Format::int4, {.group_size = -32}, "w"),
                       "w: group size -32 is not a positive multiple of 32", Error);
  // Float formats have no groups, so any scheme is fine for them.
  CHECK_NOTHROW(QuantizedMatrix::quantize(w, Format::f16, {.group_size = 64}));
  CHECK_NOTHROW(QuantizedMatrix::quantize(w, Format::int4, {.group_size = 96}));
}

TEST_CASE("non-finite weights are refused by every format, and f16 refuses values beyond its range") {
  model::Matrix w = model::Matrix::Zero(2, 64);
  w(1, 2) = std::numeric_limits<float>::quiet_NaN();
  for (Format format : quant::all_formats) {
    CHECK_THROWS_WITH_AS(QuantizedMatrix::quantize(w, format, {.group_size = 32}, "w"),
                         "w: element [1, 2] is nan, not a finite number", Error);
  }
  w(1, 2) = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(QuantizedMatrix::quantize(w, Format::int8, {.group_size = 32}, "w"),
                       "w: element [1, 2] is -inf, not a finite number", Error);
  w(1, 2) = 0;
  w(0, 1) = 70000.0f;
  CHECK_THROWS_WITH_AS(QuantizedMatrix::quantize(w, Format::f16, {}, "w"),
                       "w: element [0, 1] = 70000 is outside the f16 range (±65504)", Error);
  w(0, 1) = -3e38f;
  w(0, 2) = 3e38f;
  CHECK_THROWS_WITH_AS(QuantizedMatrix::quantize(w, Format::int4, {.group_size = 32, .int4_asymmetric = true}, "w"),
                       "w: row 0 group 0 spans a range too wide for a float32 scale", Error);
}

TEST_CASE("empty shapes are refused") {
  CHECK_THROWS_WITH_AS(QuantizedMatrix::quantize(model::Matrix(0, 64), Format::int8, {.group_size = 32}, "w"),
                       "w: shape [0 × 64] has no elements", Error);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_data(Format::f32, {}, 3, 0, {}, {}, {}, "w"),
                       "w: shape [3 × 0] has no elements", Error);
}

TEST_CASE("stored data with the wrong size, scale count or offset count is refused") {
  const QuantScheme scheme{.group_size = 32};
  const QuantScheme asymmetric{.group_size = 32, .int4_asymmetric = true};
  const std::vector<float> four(4, 0.1f);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_data(Format::int4, scheme, 2, 64, zero_bytes(10), four, {}, "w"),
                       "w: int4 data has 10 bytes, expected 64 for [2 × 64]", Error);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_data(Format::f16, scheme, 2, 64, zero_bytes(512), {}, {}, "w"),
                       "w: f16 data has 512 bytes, expected 256 for [2 × 64]", Error);
  CHECK_THROWS_WITH_AS(
      QuantizedMatrix::from_data(Format::int8, scheme, 2, 64, zero_bytes(128), {four.data(), 3}, {}, "w"),
      "w: 3 scales, expected 4 (2 rows × 2 groups of 32)", Error);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_data(Format::int4, asymmetric, 2, 64, zero_bytes(64), four, {}, "w"),
                       "w: 0 offsets, expected 4 for asymmetric int4", Error);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_data(Format::int8, scheme, 2, 64, zero_bytes(128), four, four, "w"),
                       "w: 4 offsets, expected 0 for symmetric int8", Error);
  CHECK_THROWS_WITH_AS(
      QuantizedMatrix::from_data(Format::f16, scheme, 2, 64, zero_bytes(256), {four.data(), 2}, {}, "w"),
      "w: f16 takes no scales or offsets, got 2 and 0", Error);
  CHECK_NOTHROW(QuantizedMatrix::from_data(Format::int4, asymmetric, 2, 64, zero_bytes(64), four, four, "w"));
}

TEST_CASE("stored scales must be finite and non-negative, offsets finite, float weights finite") {
  const QuantScheme scheme{.group_size = 32};
  const QuantScheme asymmetric{.group_size = 32, .int4_asymmetric = true};
  std::vector<float> scales(4, 0.1f);
  scales[2] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_data(Format::int8, scheme, 2, 64, zero_bytes(128), scales, {}, "w"),
                       "w: scale of row 1 group 0 is nan, expected a finite number ≥ 0", Error);
  scales[2] = -0.5f;
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_data(Format::int4, scheme, 2, 64, zero_bytes(64), scales, {}, "w"),
                       "w: scale of row 1 group 0 is -0.5, expected a finite number ≥ 0", Error);
  scales[2] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_data(Format::int4, scheme, 2, 64, zero_bytes(64), scales, {}, "w"),
                       "w: scale of row 1 group 0 is inf, expected a finite number ≥ 0", Error);
  scales[2] = 0.1f;
  std::vector<float> offsets(4, 0.0f);
  offsets[1] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(
      QuantizedMatrix::from_data(Format::int4, asymmetric, 2, 64, zero_bytes(64), scales, offsets, "w"),
      "w: offset of row 0 group 1 is inf, expected a finite number", Error);

  std::vector<float> values(2 * 64, 1.0f);
  values[64 + 5] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(
      QuantizedMatrix::from_data(Format::f32, {}, 2, 64, std::as_bytes(std::span(values)), {}, {}, "w"),
      "w: element [1, 5] is nan, not a finite number", Error);
  std::vector<std::uint16_t> halves(2 * 64, 0x3C00);  // 1.0
  halves[3] = 0x7C00;                                 // +inf
  CHECK_THROWS_WITH_AS(
      QuantizedMatrix::from_data(Format::f16, {}, 2, 64, std::as_bytes(std::span(halves)), {}, {}, "w"),
      "w: element [0, 3] is inf, not a finite number", Error);
}

TEST_CASE("codes from a calibration method are checked against the format's range") {
  const QuantScheme scheme{.group_size = 32};
  const std::vector<float> scales(4, 0.1f);
  std::vector<std::int8_t> codes(128, 0);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_codes(Format::int4, scheme, 2, 64, {codes.data(), 5}, scales, {}, "w"),
                       "w: 5 codes, expected 128 for [2 × 64]", Error);
  codes[64 + 3] = 8;
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_codes(Format::int4, scheme, 2, 64, codes, scales, {}, "w"),
                       "w: code 8 at [1, 3] is outside [-8, 7] for int4", Error);
  codes[64 + 3] = -1;
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_codes(Format::int4, {.group_size = 32, .int4_asymmetric = true}, 2, 64,
                                                   codes, scales, scales, "w"),
                       "w: code -1 at [1, 3] is outside [0, 15] for int4", Error);
  CHECK_THROWS_WITH_AS(QuantizedMatrix::from_codes(Format::f32, scheme, 2, 64, codes, {}, {}, "w"),
                       "w: f32 is not an integer format", Error);
  codes[64 + 3] = -128;
  CHECK(QuantizedMatrix::from_codes(Format::int8, scheme, 2, 64, codes, scales, {}, "w").code(1, 3) == -128);
}

TEST_CASE("accessors refuse indices outside the matrix") {
  const auto q = QuantizedMatrix::quantize(testing::random_weights(2, 64, 2), Format::int8, {.group_size = 32});
  CHECK_THROWS_WITH_AS(q.code(2, 0), "code(): no element [2, 0] in a [2 × 64] matrix", Error);
  CHECK_THROWS_WITH_AS(q.code(0, -1), "code(): no element [0, -1] in a [2 × 64] matrix", Error);
  CHECK_THROWS_WITH_AS(q.group_params(0, 2),
                       "group_params(): no group 2 of row 0 ([2 × 64] int8 weight, 2 groups per row)", Error);
  std::vector<float> row(64);
  CHECK_THROWS_WITH_AS(q.dequantize_row(2, row), "dequantize_row(): row 2 into 64 floats of a [2 × 64] weight", Error);
  std::vector<float> short_row(63);
  CHECK_THROWS_WITH_AS(q.dequantize_row(0, short_row), "dequantize_row(): row 0 into 63 floats of a [2 × 64] weight",
                       Error);
  const auto f32 = QuantizedMatrix::quantize(testing::random_weights(2, 64, 2), Format::f32);
  CHECK_THROWS_WITH_AS(f32.code(0, 0), "QuantizedMatrix::code(): f32 is not an integer format", Error);
  CHECK_THROWS_WITH_AS(f32.codes(), "QuantizedMatrix::codes(): f32 is not an integer format", Error);
  CHECK(f32.groups_per_row() == 0);
  CHECK(f32.scales().empty());
}
