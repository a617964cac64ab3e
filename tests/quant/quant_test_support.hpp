#pragma once
// Random weights and activations for the quantization tests, reproducible
// from a seed, and the integer formats and schemes the activation modes are
// tested on.

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::testing {

// Gaussian weights with a few large outliers, like trained transformer
// weights, whose groups then have very different scales.
inline model::Matrix random_weights(Eigen::Index rows, Eigen::Index cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  model::Matrix w(rows, cols);
  for (float& value : w.reshaped()) {
    value = normal(rng);
    if (uniform(rng) < 0.01f) value *= 20.0f;
  }
  return w;
}

inline model::Matrix random_activations(Eigen::Index rows, Eigen::Index cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  model::Matrix x(rows, cols);
  for (float& value : x.reshaped()) value = normal(rng);
  return x;
}

struct IntegerCase {
  quant::Format format;
  quant::QuantScheme scheme;
};

inline const std::vector<IntegerCase> integer_cases = {
    {quant::Format::int8, {.group_size = 32}},
    {quant::Format::int8, {.group_size = 64}},
    {quant::Format::int8, {.group_size = 128}},
    {quant::Format::int4, {.group_size = 32}},
    {quant::Format::int4, {.group_size = 64}},
    {quant::Format::int4, {.group_size = 128}},
    {quant::Format::int4, {.group_size = 256}},
    {quant::Format::int4, {.group_size = 32, .int4_asymmetric = true}},
    {quant::Format::int4, {.group_size = 64, .int4_asymmetric = true}},
    {quant::Format::int4, {.group_size = 128, .int4_asymmetric = true}},
};

inline std::string describe(const IntegerCase& c) {
  return fmt::format("{} group {}{}", quant::format_name(c.format), c.scheme.group_size,
                     c.scheme.int4_asymmetric ? " asymmetric" : "");
}

// Per weight, the magnitude its product's float rounding is bounded by: |ŵ|,
// plus for int4 twice its group's |offset|, since the kernels sum int4
// products in the unsigned form ŵ = s·u + o (o = −8·s when symmetric), whose
// terms |s·u| ≤ |ŵ| + |o| and |o| can be far larger than ŵ itself, and
// `scale_multiple`·|s| for kernels that add a multiple of s·x per weight and
// take it off per group.
inline Eigen::MatrixXd rounding_magnitudes(const quant::QuantizedMatrix& q, double scale_multiple = 0) {
  Eigen::MatrixXd magnitude = q.dequantize().cast<double>().cwiseAbs();
  if (q.format() != quant::Format::int4) return magnitude;
  for (Eigen::Index r = 0; r < q.rows(); ++r) {
    for (Eigen::Index c = 0; c < q.cols(); ++c) {
      const quant::GroupParams params = q.group_params(r, c / q.scheme().group_size);
      const double offset = q.scheme().int4_asymmetric ? params.offset : -8.0 * params.scale;
      magnitude(r, c) += 2 * std::abs(offset) + scale_multiple * std::abs(params.scale);
    }
  }
  return magnitude;
}

// Calls check(c, q, x) for every integer case c, every weight q of its
// format and scheme with 1, 3, 5, 7 or 17 rows and 1, 2, 3, 4, 8, 9, 17 or 37
// groups of columns, and activations x of 1 to 5 tokens, all random from
// `seed` on. The AVX-512 int4 kernels' 128-column steps with groups of 32 or
// 64 run in chunks of the most steps (8, 4, 2 or 1) that divide a row's: 3, 9,
// 17 and 37 groups give 0, 2, 4 and 9 steps of groups of 32, and 1, 4, 8 and
// 18 of groups of 64, each with columns left over. Rows of one chunk of up to
// four steps and no columns left over have a kernel of their own (int8
// activations): 4 and 8 groups of 32 (one and two steps), 2, 4 and 8 groups of
// 64 (one, two and four).
template <typename Check>
void for_each_product_shape(std::uint32_t seed, Check&& check) {
  for (const IntegerCase& c : integer_cases) {
    for (Eigen::Index rows : {1, 3, 5, 7, 17}) {
      for (Eigen::Index groups : {1, 2, 3, 4, 8, 9, 17, 37}) {
        const Eigen::Index cols = groups * c.scheme.group_size;
        const auto q = quant::QuantizedMatrix::quantize(random_weights(rows, cols, ++seed), c.format, c.scheme);
        const Eigen::Index tokens = 1 + static_cast<Eigen::Index>(seed % 5);
        check(c, q, random_activations(tokens, cols, ++seed));
      }
    }
  }
}

}  // namespace dilemma::testing
