#pragma once
// The optional reduced-precision activation modes of the integer kernels. By
// default every product multiplies the stored weights with the float
// activations as they are. The caller may choose instead (KernelContext::
// activations), for integer weights only (float weights always see float
// activations):
//
// * ActivationPrecision::int8: the activation vector is first rounded to
//   int8, group by group with the weights' groups,
//       x̂_c = s_g · q_c,   s_g = max_{c∈g} |x_c| / 127,   q_c = round(x_c / s_g) ∈ [-127, 127],
//   and an int8 or int4 weight then costs one integer multiply-add per weight
//   (vpdpbusd, or vpmaddubsw + vpmaddwd without VNNI) instead of a conversion
//   to float and an FMA: the kernels compute y = Ŵ·x̂ exactly in int32 per
//   group and scale in float. The result differs from Ŵ·x by Ŵ·(x̂ − x), with
//   |x̂_c − x_c| ≤ s_g / 2.
// * ActivationPrecision::bf16: each activation is rounded to bfloat16 (8
//   significant bits, float's exponent range, round to nearest even), x̃_c,
//   with |x̃_c − x_c| ≤ 2^−9·|x_c|, and the kernels compute y = Ŵ·x̃ to float
//   rounding. Where the CPU has AVX-512 BF16, an int4 weight then costs a
//   quarter of a vdpbf16ps per weight instead of a conversion and an FMA
//   (kernels_avx512.hpp); elsewhere the float kernels multiply x̃.
//
// docs/kernels.md reports both modes' errors against float activations.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/quant/detail/cache_line_vector.hpp"

namespace dilemma::quant {

enum class ActivationPrecision { f32, bf16, int8 };

inline constexpr std::array<ActivationPrecision, 3> all_activation_precisions = {
    ActivationPrecision::f32, ActivationPrecision::bf16, ActivationPrecision::int8};

inline constexpr std::string_view activation_precision_name(ActivationPrecision precision) {
  switch (precision) {
    case ActivationPrecision::f32: return "f32";
    case ActivationPrecision::bf16: return "bf16";
    case ActivationPrecision::int8: return "int8";
  }
  return "f32";
}

// Every activation_precision_name, in all_activation_precisions' order: the
// choices of a command-line option.
inline std::vector<std::string> activation_precision_names() {
  std::vector<std::string> names;
  for (const ActivationPrecision precision : all_activation_precisions) {
    names.emplace_back(activation_precision_name(precision));
  }
  return names;
}

// "f32", "bf16" or "int8"; `what` names the setting in the error.
inline ActivationPrecision parse_activation_precision(std::string_view name, std::string_view what) {
  for (const ActivationPrecision precision : all_activation_precisions) {
    if (name == activation_precision_name(precision)) return precision;
  }
  dilemma::detail::fail("{}: unknown activation precision \"{}\" (expected f32, bf16 or int8)", what, name);
}

// x̃: each activation rounded in place to the nearest bfloat16 (ties to
// even), kept as a float; ±inf stay, a NaN stays a (quiet) NaN. The same bits
// as Eigen::bfloat16's conversion (tested), as a loop the compiler vectorizes:
// Eigen's took 0.8 ns per element on the Zen 5 host, this one 0.1 ns at -O3.
inline void round_to_bf16(std::span<float> x) {
  for (float& value : x) {
    const auto bits = std::bit_cast<std::uint32_t>(value);
    const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
    const std::uint32_t rounded = nan ? bits | 0x00400000u : bits + 0x7FFFu + ((bits >> 16) & 1u);
    value = std::bit_cast<float>(rounded & 0xFFFF0000u);
  }
}

// Groups larger than this could overflow the int32 sum of 255 · 127 products.
inline constexpr Eigen::Index max_int8_activation_group = 65536;

// One activation vector in int8, per group of `group_size` elements.
struct QuantizedActivations {
  Eigen::Index group_size = 0;
  detail::CacheLineVector<std::int8_t> codes;  // q, one per element
  std::vector<float> scales;                   // s_g, one per group
  std::vector<std::int32_t> sums;              // Σ q over each group, for the kernels' unsigned-weight corrections

  // x̂ = s_g · q.
  std::vector<float> dequantize() const {
    std::vector<float> restored(codes.size());
    for (std::size_t c = 0; c < codes.size(); ++c) {
      restored[c] = scales[c / static_cast<std::size_t>(group_size)] * static_cast<float>(codes[c]);
    }
    return restored;
  }
};

namespace detail {

// The result of rounding x in groups of `group_size`, sized and zeroed, once
// the groups are known to split x; the rounding functions fill it in.
inline QuantizedActivations unfilled_activations(std::span<const float> x, Eigen::Index group_size) {
  if (group_size <= 0 || group_size > max_int8_activation_group ||
      x.size() % static_cast<std::size_t>(group_size) != 0) {
    dilemma::detail::fail("int8 activations: group size {} does not split {} activations (at most {})", group_size,
                          x.size(), max_int8_activation_group);
  }
  const std::size_t groups = x.size() / static_cast<std::size_t>(group_size);
  return {group_size, CacheLineVector<std::int8_t>(x.size()), std::vector<float>(groups),
          std::vector<std::int32_t>(groups)};
}

// Fails naming the first activation of x[first, first + count) that is ±inf or NaN.
[[noreturn]] inline void fail_non_finite_activation(std::span<const float> x, std::size_t first, std::size_t count) {
  const std::span<const float> values = x.subspan(first, count);
  const auto bad = std::ranges::find_if(values, [](float v) { return !std::isfinite(v); });
  dilemma::detail::fail("int8 activations: activation {} is {}, which has no int8 code",
                        first + static_cast<std::size_t>(bad - values.begin()), *bad);
}

}  // namespace detail

// Rounds half away from zero; a group of zeros gets scale 0. Non-finite
// activations have no int8 code and are an error. The reference: products
// round with detail::quantize_activations_with (matmul.hpp), which runs
// SIMD versions of the same operations where it can, bit for bit alike.
inline QuantizedActivations quantize_activations(std::span<const float> x, Eigen::Index group_size) {
  QuantizedActivations q = detail::unfilled_activations(x, group_size);
  const auto size = static_cast<std::size_t>(group_size);
  // Eigen's array expressions vectorize the scan and the rounding (its
  // round() is half away from zero, as std::round) as long as no cast joins
  // them, so the rounded values go through a float array first.
  Eigen::ArrayXf rounded(static_cast<Eigen::Index>(x.size()));
  for (std::size_t g = 0; g < q.scales.size(); ++g) {
    const auto first = static_cast<Eigen::Index>(g * size);
    const Eigen::Map<const Eigen::ArrayXf> group(x.data() + first, group_size);
    const float magnitude = group.abs().maxCoeff<Eigen::PropagateNaN>();
    if (!std::isfinite(magnitude)) detail::fail_non_finite_activation(x, g * size, size);
    const float scale = magnitude / 127.0f;
    q.scales[g] = scale;
    if (scale == 0) {
      rounded.segment(first, group_size).setZero();
    } else {
      rounded.segment(first, group_size) = (group / scale).round().max(-127.0f).min(127.0f);
    }
  }
  const Eigen::ArrayXi codes = rounded.cast<int>();
  Eigen::Map<Eigen::Array<std::int8_t, Eigen::Dynamic, 1>>(q.codes.data(), codes.size()) = codes.cast<std::int8_t>();
  for (std::size_t g = 0; g < q.sums.size(); ++g) {
    q.sums[g] = codes.segment(static_cast<Eigen::Index>(g * size), group_size).sum();
  }
  return q;
}

}  // namespace dilemma::quant
