#pragma once
// The float or bfloat16 activations of one int4 GEMV in the order of the
// AVX-512 kernels that multiply them without decoding the weights into column
// order (kernels_avx512.hpp, "int4 weights, float or bfloat16 activations, 128
// columns per step"). A step is 128 columns, 64 bytes of a row, one register of 16
// int32 lanes.
// * float: nibble k of lane l, masked in place, converts exactly to the float
//   u·16^k, so the activation under it is stored here scaled by 16^−k, and
//   the product u·16^k · x·16^−k is u·x, exactly, inside the FMA.
// * bfloat16: nibble k of 16-bit word j, moved to the word's low bits under
//   the exponent of 1.0, is the bfloat16 1 + u/128, so the activation under
//   it is stored as the bfloat16 128·x̃, and vdpbf16ps adds 128·x̃ + u·x̃
//   (products of two bfloat16 are exact in float); the kernel subtracts
//   128·Σx̃ per group. Only the AVX-512 BF16 kernel reads this layout, so
//   kernels_avx512.hpp builds it, with vector instructions; here are its
//   definition and when a product takes it.
// Built once per product; the AVX-512 kernels build both layouts with vector
// permutations, the AVX2 ones the float layout with the loop below.

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "dilemma/quant/detail/cache_line_vector.hpp"
#include "dilemma/quant/detail/int4_step_codes.hpp"

namespace dilemma::quant::detail {

struct Int4StepLanes {
  Eigen::Index steps = 0;        // 0: the product does not use this layout
  CacheLineVector<float> lanes;  // 128 per step: vector k (0 … 7), lane l = x[step_column(l, k)] · 16^−k
};

// On CPUs with AVX-512 BF16 only, laid out by kernels_avx512.hpp.
struct Int4Bf16StepLanes {
  Eigen::Index steps = 0;
  std::vector<float> rounded;            // x̃, one per column, for the group sums
  CacheLineVector<std::uint16_t> lanes;  // 128 per step: vector k (0 … 3), word j = 128·x̃[bf16_step_column(j, k)]
};

// The column, within its step, of the low (high = 0) or high nibble of step
// byte b: byte b is byte b mod 16 of int4 block b/16, and byte i of a block
// holds columns i (low nibble) and 16 + i (high).
inline constexpr Eigen::Index step_byte_column(Eigen::Index byte, Eigen::Index high) {
  return 32 * (byte / 16) + 16 * high + byte % 16;
}

// The column under nibble k (0 … 7) of int32 lane l, which holds bytes 4l … 4l + 3.
inline constexpr Eigen::Index step_column(Eigen::Index lane, Eigen::Index nibble) {
  return step_byte_column(4 * lane + nibble / 2, nibble % 2);
}

// The column under nibble k (0 … 3) of 16-bit word j, which holds bytes 2j and 2j + 1.
inline constexpr Eigen::Index bf16_step_column(Eigen::Index word, Eigen::Index nibble) {
  return step_byte_column(2 * word + nibble / 2, nibble % 2);
}

// Lane i = 16k + l of a step's 128: the column under it, step_column(l, k),
// and the 16^−k its activation is scaled by. A table, so that laying out a
// product's activations is one load and one multiply per column. Computed
// per column (std::ldexp among them), the layout and the group sums took
// almost half as long as the kernel itself on an fc2-shaped product in cache
// (docs/performance.md, "A Zen 5 host").
struct StepLaneMap {
  std::array<std::uint8_t, int4_step> column;
  std::array<float, int4_step> scale;
};

inline constexpr StepLaneMap step_lane_map = [] {
  StepLaneMap map{};
  float scale = 1.0f;
  for (Eigen::Index k = 0; k < 8; ++k, scale /= 16.0f) {
    for (Eigen::Index l = 0; l < 16; ++l) {
      const auto i = static_cast<std::size_t>(16 * k + l);
      map.column[i] = static_cast<std::uint8_t>(step_column(l, k));
      map.scale[i] = scale;
    }
  }
  return map;
}();

// Below this largest |x|, x·16^−7 would leave float's normal range and lose
// bits; such products take the kernel that decodes weights instead. The
// bfloat16 layout, whose vdpbf16ps reads subnormals as zero, keeps the same
// bound.
inline constexpr float int4_step_lanes_min_magnitude = 0x1p-60f;

// From this largest |x| on, 128·x̃ could overflow; such products take the float kernels.
inline constexpr float int4_bf16_step_lanes_max_magnitude = 0x1p120f;

// The steps of the float layout for activations x of a product with `cols`
// columns, or 0 (no such layout) when cols is not a whole number of steps or
// x is too small.
inline Eigen::Index int4_float_steps(const float* x, Eigen::Index cols, Eigen::Index group_size) {
  if (cols % int4_step != 0 || !int4_steps_fit(group_size)) return 0;
  // NaNs do not count (PropagateNumbers): x with a NaN still takes this layout, and its products come out NaN.
  const float largest = Eigen::Map<const Eigen::ArrayXf>(x, cols).abs().maxCoeff<Eigen::PropagateNumbers>();
  if (largest != 0.0f && largest < int4_step_lanes_min_magnitude) return 0;
  return cols / int4_step;
}

// The float layout, or none (steps = 0), in plain C++: the AVX2 kernels' and
// the reference of the AVX-512 one (kernels_avx512.hpp), which builds the same
// floats with permutations.
inline Int4StepLanes lay_out_int4_step_lanes(const float* x, Eigen::Index cols, Eigen::Index group_size) {
  Int4StepLanes out;
  out.steps = int4_float_steps(x, cols, group_size);
  out.lanes.resize(static_cast<std::size_t>(int4_step * out.steps));
  for (Eigen::Index s = 0; s < out.steps; ++s) {
    const float* step_x = x + int4_step * s;
    float* lanes = out.lanes.data() + int4_step * s;
    for (std::size_t i = 0; i < step_lane_map.column.size(); ++i) {
      lanes[i] = step_x[step_lane_map.column[i]] * step_lane_map.scale[i];
    }
  }
  return out;
}

// The steps of the bfloat16 layout for activations x of a product with
// `cols` columns, or 0 (no such layout) when cols is not a whole number of
// steps or the largest |x| is outside [min, max) above (or x has a NaN).
inline Eigen::Index int4_bf16_steps(const float* x, Eigen::Index cols, Eigen::Index group_size) {
  if (cols % int4_step != 0 || !int4_steps_fit(group_size)) return 0;
  const float largest = Eigen::Map<const Eigen::ArrayXf>(x, cols).abs().maxCoeff<Eigen::PropagateNaN>();
  const bool in_range = largest == 0.0f || (largest >= int4_step_lanes_min_magnitude &&
                                            largest < int4_bf16_step_lanes_max_magnitude);
  return in_range ? cols / int4_step : 0;
}

}  // namespace dilemma::quant::detail
