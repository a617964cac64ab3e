#pragma once
// The float activations of one int4 GEMV in the order of the AVX-512 kernel
// that multiplies them without decoding the weights into column order
// (kernels_avx512.hpp, "int4 weights, float activations, 128 columns per
// step"). A step is 128 columns, 64 bytes of a row, one register of 16 int32
// lanes; nibble k of lane l, masked in place, converts exactly to the float
// u·16^k, so the activation under it is stored here scaled by 16^−k, and the
// product u·16^k · x·16^−k is u·x, exactly, inside the FMA. Plain C++, built
// once per product.

#include <array>
#include <cstddef>
#include <cstdint>

#include <Eigen/Core>

#include "dilemma/quant/detail/cache_line_vector.hpp"
#include "dilemma/quant/detail/int4_step_codes.hpp"

namespace dilemma::quant::detail {

struct Int4StepLanes {
  Eigen::Index steps = 0;        // 0: the product does not use this layout
  CacheLineVector<float> lanes;  // 128 per step: vector k (0 … 7), lane l = x[step_column(l, k)] · 16^−k
};

// The column, within its step, under nibble k of int32 lane l: lane l holds
// bytes 4l … 4l + 3, byte 4l + k/2 is byte 4(l mod 4) + k/2 of int4 block l/4,
// and byte b of a block holds columns b (low nibble) and 16 + b (high).
inline constexpr Eigen::Index step_column(Eigen::Index lane, Eigen::Index nibble) {
  return 32 * (lane / 4) + (nibble % 2) * 16 + 4 * (lane % 4) + nibble / 2;
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
// bits; such products take the kernel that decodes weights instead.
inline constexpr float int4_step_lanes_min_magnitude = 0x1p-60f;

// The layout for activations x of a product with `cols` columns, or none
// (steps = 0) when cols is not a whole number of steps or x is too small.
inline Int4StepLanes lay_out_int4_step_lanes(const float* x, Eigen::Index cols, Eigen::Index group_size) {
  Int4StepLanes out;
  if (cols % int4_step != 0 || !int4_steps_fit(group_size)) return out;
  // NaNs do not count (PropagateNumbers): x with a NaN still takes this layout, and its products come out NaN.
  const float largest = Eigen::Map<const Eigen::ArrayXf>(x, cols).abs().maxCoeff<Eigen::PropagateNumbers>();
  if (largest != 0.0f && largest < int4_step_lanes_min_magnitude) return out;
  out.steps = cols / int4_step;
  out.lanes.resize(static_cast<std::size_t>(cols));
  for (Eigen::Index s = 0; s < out.steps; ++s) {
    const float* step_x = x + int4_step * s;
    float* lanes = out.lanes.data() + int4_step * s;
    for (std::size_t i = 0; i < step_lane_map.column.size(); ++i) {
      lanes[i] = step_x[step_lane_map.column[i]] * step_lane_map.scale[i];
    }
  }
  return out;
}

}  // namespace dilemma::quant::detail
