#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include <doctest/doctest.h>

#include "dilemma/io/dtype.hpp"

using dilemma::io::DType;

namespace {

// IEEE binary16 decoded from its definition, independently of Eigen and F16C.
double f16_reference(std::uint16_t bits) {
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  double magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(mantissa, -24);
  } else if (exponent == 31) {
    magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else {
    magnitude = std::ldexp(1024 + mantissa, exponent - 25);
  }
  return (bits & 0x8000) != 0 ? -magnitude : magnitude;
}

std::vector<std::uint16_t> all_16_bit_patterns() {
  std::vector<std::uint16_t> patterns(65536);
  for (std::size_t i = 0; i < patterns.size(); ++i) patterns[i] = static_cast<std::uint16_t>(i);
  return patterns;
}

template <typename T>
std::span<const std::byte> bytes_of(const std::vector<T>& values) {
  return std::as_bytes(std::span(values));
}

}  // namespace

TEST_CASE("dtype names, sizes and kinds follow the safetensors spelling") {
  struct Expected {
    DType dtype;
    const char* name;
    std::size_t size;
    bool floating;
  };
  const Expected table[] = {
      {DType::f32, "F32", 4, true},       {DType::f16, "F16", 2, true},  {DType::bf16, "BF16", 2, true},
      {DType::f64, "F64", 8, true},       {DType::i8, "I8", 1, false},   {DType::u8, "U8", 1, false},
      {DType::i16, "I16", 2, false},      {DType::i32, "I32", 4, false}, {DType::i64, "I64", 8, false},
      {DType::boolean, "BOOL", 1, false},
  };
  for (const Expected& expected : table) {
    CAPTURE(expected.name);
    CHECK(dilemma::io::dtype_name(expected.dtype) == expected.name);
    CHECK(dilemma::io::parse_dtype(expected.name) == expected.dtype);
    CHECK(dilemma::io::dtype_size(expected.dtype) == expected.size);
    CHECK(dilemma::io::is_floating(expected.dtype) == expected.floating);
  }
  CHECK_FALSE(dilemma::io::parse_dtype("f32").has_value());
  CHECK_FALSE(dilemma::io::parse_dtype("F8_E4M3").has_value());
  CHECK_FALSE(dilemma::io::parse_dtype("").has_value());
}

TEST_CASE("F16 converts exactly for all 65536 bit patterns and round-trips") {
  const std::vector<std::uint16_t> patterns = all_16_bit_patterns();
  std::vector<float> converted(patterns.size());
  dilemma::io::convert_to_f32(DType::f16, bytes_of(patterns), converted);

  // An odd count starting one byte in: an unaligned source and a scalar tail.
  std::vector<std::byte> shifted(1 + 2 * 13);
  std::memcpy(shifted.data() + 1, patterns.data() + 0x3bf0, 2 * 13);
  std::vector<float> shifted_converted(13);
  dilemma::io::convert_to_f32(DType::f16, std::span(shifted).subspan(1), shifted_converted);
  for (std::size_t i = 0; i < shifted_converted.size(); ++i) CHECK(shifted_converted[i] == converted[0x3bf0 + i]);

  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    const double expected = f16_reference(patterns[i]);
    const float value = converted[i];
    if (std::isnan(expected)) {
      if (!std::isnan(value)) ++mismatches;
      continue;
    }
    const bool same_value = static_cast<double>(value) == expected && std::signbit(value) == std::signbit(expected);
    const auto back = Eigen::half_impl::raw_half_as_uint16(Eigen::half(value));
    if (!same_value || back != patterns[i]) ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK(converted[0x3c00] == 1.0f);
  CHECK(converted[0xc000] == -2.0f);
  CHECK(converted[0x0001] == std::ldexp(1.0f, -24));
  CHECK(converted[0x7bff] == 65504.0f);
}

TEST_CASE("BF16 converts by widening and round-trips for all 65536 bit patterns") {
  const std::vector<std::uint16_t> patterns = all_16_bit_patterns();
  std::vector<float> converted(patterns.size());
  dilemma::io::convert_to_f32(DType::bf16, bytes_of(patterns), converted);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(converted[i]) >> 16 != patterns[i]) ++mismatches;
    if ((std::bit_cast<std::uint32_t>(converted[i]) & 0xffff) != 0) ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK(converted[0x3f80] == 1.0f);
  CHECK(converted[0xc040] == -3.0f);
  CHECK(converted[0x3e20] == 0.15625f);
}

TEST_CASE("F32 is copied and F64 rounded to nearest") {
  const std::vector<float> floats = {1.5f, -0.0f, std::numeric_limits<float>::denorm_min(), 3.0e38f};
  std::vector<float> copied(floats.size());
  dilemma::io::convert_to_f32(DType::f32, bytes_of(floats), copied);
  CHECK(std::memcmp(copied.data(), floats.data(), floats.size() * sizeof(float)) == 0);

  const std::vector<double> doubles = {0.1, -2.5, 1.0 + 1e-12, 1e300};
  std::vector<float> narrowed(doubles.size());
  dilemma::io::convert_to_f32(DType::f64, bytes_of(doubles), narrowed);
  CHECK(narrowed[0] == 0.1f);
  CHECK(narrowed[1] == -2.5f);
  CHECK(narrowed[2] == 1.0f);
  CHECK(narrowed[3] == std::numeric_limits<float>::infinity());

  std::vector<float> nothing;
  dilemma::io::convert_to_f32(DType::f16, {}, nothing);
}

TEST_CASE("convert_to_f32 rejects integer dtypes and mismatched sizes") {
  const std::vector<std::int32_t> ints = {1, 2};
  std::vector<float> out(2);
  CHECK_THROWS_WITH_AS(dilemma::io::convert_to_f32(DType::i32, bytes_of(ints), out),
                       "convert_to_f32: I32 is not a floating-point dtype", dilemma::Error);
  CHECK_THROWS_WITH_AS(dilemma::io::convert_to_f32(DType::boolean, {}, {}),
                       "convert_to_f32: BOOL is not a floating-point dtype", dilemma::Error);
  CHECK_THROWS_WITH_AS(dilemma::io::convert_to_f32(DType::f16, bytes_of(ints), out),
                       "convert_to_f32: 8 bytes of F16 do not match 2 float32 destination elements (4 bytes expected)",
                       dilemma::Error);
  std::vector<float> three(3);
  CHECK_THROWS_WITH_AS(dilemma::io::convert_to_f32(DType::f32, bytes_of(ints), three),
                       "convert_to_f32: 8 bytes of F32 do not match 3 float32 destination elements (12 bytes expected)",
                       dilemma::Error);
}
