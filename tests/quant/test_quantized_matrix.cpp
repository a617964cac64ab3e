// Round-to-nearest quantization, the stored layout, and the exact size of
// every format.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "dilemma/quant/quantized_matrix.hpp"
#include "quant_test_support.hpp"

using namespace dilemma;
using quant::Format;
using quant::QuantizedMatrix;
using quant::QuantScheme;

namespace {

const std::vector<QuantScheme> integer_schemes = {{.group_size = 32},
                                                  {.group_size = 64},
                                                  {.group_size = 128},
                                                  {.group_size = 64, .int4_asymmetric = true},
                                                  {.group_size = 32, .int4_asymmetric = true}};

}  // namespace

TEST_CASE("round-to-nearest keeps every weight within half a step of its group") {
  const model::Matrix w = testing::random_weights(7, 256, 1);
  for (Format format : {Format::int8, Format::int4}) {
    for (const QuantScheme& scheme : integer_schemes) {
      CAPTURE(quant::format_name(format));
      CAPTURE(scheme.group_size);
      CAPTURE(scheme.int4_asymmetric);
      const auto q = QuantizedMatrix::quantize(w, format, scheme);
      const model::Matrix restored = q.dequantize();
      const quant::CodeRange range = quant::code_range(format, scheme);
      const bool symmetric = !quant::has_offsets(format, scheme);
      for (Eigen::Index r = 0; r < w.rows(); ++r) {
        for (Eigen::Index g = 0; g < q.groups_per_row(); ++g) {
          const quant::GroupParams params = q.group_params(r, g);
          const auto group = w.row(r).segment(g * scheme.group_size, scheme.group_size);
          if (symmetric) {
            CHECK(params.offset == 0.0f);
            CHECK(params.scale == doctest::Approx(group.cwiseAbs().maxCoeff() / static_cast<float>(range.max)));
          } else {
            CHECK(params.offset == group.minCoeff());
            CHECK(params.scale == doctest::Approx((group.maxCoeff() - group.minCoeff()) / 15.0f));
          }
          for (Eigen::Index c = g * scheme.group_size; c < (g + 1) * scheme.group_size; ++c) {
            const int code = q.code(r, c);
            // RTN uses the symmetric range: -128 and -8 are left to calibration methods.
            CHECK(code >= (symmetric ? -range.max : 0));
            CHECK(code <= range.max);
            CHECK(restored(r, c) == quant::dequantize_value(code, params));
            CHECK(std::abs(w(r, c) - restored(r, c)) <= params.scale / 2 * (1 + 1e-5f) + 1e-12f);
          }
        }
      }
    }
  }
}

TEST_CASE("the largest magnitude of a symmetric group and both ends of an asymmetric group are exact") {
  model::Matrix w = model::Matrix::Zero(1, 32);
  w(0, 3) = -0.875f;  // -7 int4 steps of 0.125
  w(0, 9) = 0.4375f;  // 3.5 steps
  w(0, 20) = 0.125f;  // 1 step
  const auto int8 = QuantizedMatrix::quantize(w, Format::int8, {.group_size = 32});
  CHECK(int8.code(0, 3) == -127);
  CHECK(int8.dequantize()(0, 3) == doctest::Approx(-0.875f).epsilon(1e-7));
  const auto int4 = QuantizedMatrix::quantize(w, Format::int4, {.group_size = 32});
  CHECK(int4.group_params(0, 0).scale == 0.125f);
  CHECK(int4.code(0, 3) == -7);
  CHECK(int4.code(0, 9) == 4);  // half a step rounds away from zero
  CHECK(int4.code(0, 20) == 1);
  CHECK(int4.code(0, 0) == 0);
  CHECK(int4.dequantize()(0, 3) == -0.875f);
  const auto asymmetric = QuantizedMatrix::quantize(w, Format::int4, {.group_size = 32, .int4_asymmetric = true});
  CHECK(asymmetric.code(0, 3) == 0);
  CHECK(asymmetric.code(0, 9) == 15);
  CHECK(asymmetric.dequantize()(0, 3) == -0.875f);
  CHECK(asymmetric.dequantize()(0, 9) == doctest::Approx(0.4375f).epsilon(1e-6));
}

TEST_CASE("groups of equal values get scale 0 and are reproduced exactly") {
  model::Matrix w = model::Matrix::Zero(2, 64);
  w.row(1).setConstant(0.25f);
  for (const QuantScheme& scheme : integer_schemes) {
    if (scheme.group_size > 64) continue;
    for (Format format : {Format::int8, Format::int4}) {
      const auto q = QuantizedMatrix::quantize(w, format, scheme);
      CHECK(q.group_params(0, 0).scale == 0.0f);
      CHECK(q.dequantize().row(0) == w.row(0));
      if (quant::has_offsets(format, scheme)) CHECK(q.dequantize().row(1) == w.row(1));
    }
  }
}

TEST_CASE("f32 is stored exactly and f16 rounds to the nearest half") {
  const model::Matrix w = testing::random_weights(3, 37, 2);
  CHECK(QuantizedMatrix::quantize(w, Format::f32).dequantize() == w);
  const model::Matrix half = QuantizedMatrix::quantize(w, Format::f16).dequantize();
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    CHECK(half.reshaped()(i) == static_cast<float>(Eigen::half(w.reshaped()(i))));
  }
  model::Matrix largest(1, 1);
  largest(0, 0) = -65504.0f;
  CHECK(QuantizedMatrix::quantize(largest, Format::f16).dequantize()(0, 0) == -65504.0f);
}

TEST_CASE("bytes() is the exact storage and matches bits_per_weight") {
  for (Format format : quant::all_formats) {
    for (const QuantScheme& scheme : integer_schemes) {
      const model::Matrix w = testing::random_weights(5, 384, 3);
      const auto q = QuantizedMatrix::quantize(w, format, scheme);
      const double expected_bits = quant::bits_per_weight(format, scheme) * static_cast<double>(w.size());
      CHECK(static_cast<double>(q.bytes()) * 8 == expected_bits);
      CHECK(q.bytes() == q.data().size() + (q.scales().size() + q.offsets().size()) * sizeof(float));
    }
  }
  const auto int4 = QuantizedMatrix::quantize(testing::random_weights(4, 128, 4), Format::int4, {.group_size = 64});
  CHECK(int4.data().size() == 4 * 128 / 2);
  CHECK(int4.scales().size() == 4 * 2);
  CHECK(int4.offsets().empty());
  CHECK(int4.bytes() == 256 + 32);
}

TEST_CASE("in memory, an integer row's scales, offsets and codes are one record, rows back to back") {
  // The kernels address row r's codes, scales and offsets at r · stride from row 0's (detail::WeightView).
  const QuantScheme scheme{.group_size = 32, .int4_asymmetric = true};
  const auto q = QuantizedMatrix::quantize(testing::random_weights(3, 96, 12), Format::int4, scheme);
  const std::span<const std::byte> storage = q.storage();
  REQUIRE(storage.size() == q.bytes());
  const std::size_t record = storage.size() / 3;
  REQUIRE(record == 3 * 4 + 3 * 4 + 96 / 2);  // 3 scales, 3 offsets, 48 bytes of codes
  const std::vector<float> scales = q.scales(), offsets = q.offsets();
  const std::vector<std::byte> codes = q.data();
  for (std::size_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    const std::byte* row = storage.data() + r * record;
    std::vector<float> parameters(6);
    std::memcpy(parameters.data(), row, 6 * sizeof(float));
    CHECK(std::equal(parameters.begin(), parameters.begin() + 3, scales.begin() + 3 * static_cast<std::ptrdiff_t>(r)));
    CHECK(std::equal(parameters.begin() + 3, parameters.end(), offsets.begin() + 3 * static_cast<std::ptrdiff_t>(r)));
    CHECK(std::equal(row + 24, row + record, codes.begin() + 48 * static_cast<std::ptrdiff_t>(r)));
  }
  const auto f16 = QuantizedMatrix::quantize(testing::random_weights(3, 96, 13), Format::f16);
  CHECK(f16.storage().size() == f16.bytes());
  const std::vector<std::byte> f16_data = f16.data();
  CHECK(std::equal(f16_data.begin(), f16_data.end(), f16.storage().begin()));
}

TEST_CASE("int4 packs column 32b+j in the low and 32b+16+j in the high nibble of byte 16b+j") {
  const QuantScheme scheme{.group_size = 32};
  std::vector<std::int8_t> codes(2 * 64, 0);
  codes[0] = -8;       // row 0, column 0: low nibble of byte 0, stored as -8 + 8 = 0
  codes[16] = 7;       // column 16: high nibble of byte 0, stored as 15
  codes[1] = 3;        // column 1: low nibble of byte 1, stored as 11
  codes[32] = -1;      // column 32: low nibble of byte 16, stored as 7
  codes[64 + 63] = 5;  // row 1, column 63: high nibble of the row's last byte (31), stored as 13
  const std::vector<float> scales(4, 1.0f);
  const auto q = QuantizedMatrix::from_codes(Format::int4, scheme, 2, 64, codes, scales);
  const auto bytes = q.data();
  REQUIRE(bytes.size() == 64);
  CHECK(std::to_integer<int>(bytes[0]) == 0xF0);
  CHECK(std::to_integer<int>(bytes[1]) == 0x8B);
  CHECK(std::to_integer<int>(bytes[2]) == 0x88);
  CHECK(std::to_integer<int>(bytes[16]) == 0x87);
  CHECK(std::to_integer<int>(bytes[32 + 31]) == 0xD8);
  CHECK(q.codes() == codes);
}

TEST_CASE("every code survives packing, for int8 and both int4 variants") {
  for (const auto& [format, scheme] :
       {std::pair{Format::int8, QuantScheme{.group_size = 32}}, std::pair{Format::int4, QuantScheme{.group_size = 32}},
        std::pair{Format::int4, QuantScheme{.group_size = 64, .int4_asymmetric = true}}}) {
    const quant::CodeRange range = quant::code_range(format, scheme);
    const Eigen::Index rows = 3;
    const Eigen::Index cols = 256;
    std::vector<std::int8_t> codes(static_cast<std::size_t>(rows * cols));
    for (std::size_t i = 0; i < codes.size(); ++i) {
      codes[i] = static_cast<std::int8_t>(
          range.min + static_cast<int>((i * 7) % static_cast<std::size_t>(range.max - range.min + 1)));
    }
    const std::size_t groups = static_cast<std::size_t>(rows * cols / scheme.group_size);
    std::vector<float> scales(groups);
    std::vector<float> offsets(quant::has_offsets(format, scheme) ? groups : 0);
    for (std::size_t g = 0; g < groups; ++g) scales[g] = 0.01f * static_cast<float>(g + 1);
    for (std::size_t g = 0; g < offsets.size(); ++g) offsets[g] = -0.1f * static_cast<float>(g);
    const auto q = QuantizedMatrix::from_codes(format, scheme, rows, cols, codes, scales, offsets);
    CHECK(q.codes() == codes);
    const model::Matrix restored = q.dequantize();
    for (Eigen::Index r = 0; r < rows; ++r) {
      for (Eigen::Index c = 0; c < cols; ++c) {
        const auto g = static_cast<std::size_t>(r * cols / scheme.group_size + c / scheme.group_size);
        const float expected =
            scales[g] * codes[static_cast<std::size_t>(r * cols + c)] + (offsets.empty() ? 0.0f : offsets[g]);
        CHECK(restored(r, c) == doctest::Approx(expected).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("a matrix rebuilt from its stored data is identical") {
  const model::Matrix w = testing::random_weights(6, 192, 5);
  for (Format format : quant::all_formats) {
    for (const QuantScheme& scheme : integer_schemes) {
      if (192 % scheme.group_size != 0) continue;
      const auto q = QuantizedMatrix::quantize(w, format, scheme);
      const auto copy =
          QuantizedMatrix::from_data(format, scheme, q.rows(), q.cols(), q.data(), q.scales(), q.offsets());
      CHECK(copy.dequantize() == q.dequantize());
      CHECK(copy.bytes() == q.bytes());
    }
  }
}

TEST_CASE("quantize_value rounds half away from zero and clamps to the stored range") {
  const QuantScheme symmetric{.group_size = 32};
  const QuantScheme asymmetric{.group_size = 32, .int4_asymmetric = true};
  CHECK(quant::quantize_value(Format::int8, symmetric, 0.3125f, {0.125f, 0}) == 3);  // 2.5 steps
  CHECK(quant::quantize_value(Format::int8, symmetric, -0.3125f, {0.125f, 0}) == -3);
  CHECK(quant::quantize_value(Format::int8, symmetric, 1e30f, {0.1f, 0}) == 127);
  CHECK(quant::quantize_value(Format::int8, symmetric, -1e30f, {0.1f, 0}) == -128);
  CHECK(quant::quantize_value(Format::int4, symmetric, -3.0f, {0.1f, 0}) == -8);
  CHECK(quant::quantize_value(Format::int4, symmetric, 3.0f, {0.1f, 0}) == 7);
  CHECK(quant::quantize_value(Format::int4, asymmetric, 1.0f, {0.125f, 0.5f}) == 4);
  CHECK(quant::quantize_value(Format::int4, asymmetric, 0.0f, {0.125f, 0.5f}) == 0);
  CHECK(quant::quantize_value(Format::int4, asymmetric, 0.7f, {0.0f, 0.7f}) == 0);
  CHECK(quant::dequantize_value(4, {0.125f, 0.5f}) == 1.0f);
  CHECK_THROWS_WITH_AS(quant::quantize_value(Format::int8, symmetric, NAN, {0.1f, 0}),
                       "quantize_value(): weight nan is not finite", Error);
  CHECK_THROWS_WITH_AS(quant::quantize_value(Format::int8, symmetric, 1.0f, {-0.1f, 0}),
                       "quantize_value(): invalid group parameters (scale -0.1, offset 0)", Error);
  CHECK_THROWS_WITH_AS(quant::quantize_value(Format::f16, symmetric, 1.0f, {0.1f, 0}),
                       "code_range(): f16 is not an integer format", Error);
}

TEST_CASE("rtn_group_params gives the scale a calibration method starts from") {
  const std::vector<float> group = {0.5f, -1.4f, 0.7f, 0.0f};
  const auto int8 = quant::rtn_group_params(Format::int8, {}, group);
  CHECK(int8.scale == doctest::Approx(1.4f / 127));
  CHECK(int8.offset == 0.0f);
  const auto int4 = quant::rtn_group_params(Format::int4, {}, group);
  CHECK(int4.scale == doctest::Approx(0.2f));
  const auto asymmetric = quant::rtn_group_params(Format::int4, {.int4_asymmetric = true}, group);
  CHECK(asymmetric.scale == doctest::Approx(2.1f / 15));
  CHECK(asymmetric.offset == -1.4f);
  CHECK_THROWS_WITH_AS(quant::rtn_group_params(Format::f32, {}, group),
                       "rtn_group_params(): f32 is not an integer format", Error);
}

TEST_CASE("dequantize_row gives one row, e.g. a token's embedding") {
  const model::Matrix w = testing::random_weights(9, 128, 6);
  for (Format format : quant::all_formats) {
    const auto q = QuantizedMatrix::quantize(w, format, {.group_size = 32});
    const model::Matrix all = q.dequantize();
    std::vector<float> row(128);
    q.dequantize_row(4, row);
    CHECK(Eigen::Map<const Eigen::RowVectorXf>(row.data(), 128) == all.row(4));
  }
}
