#pragma once
// The activation codes of one int8-activation product, laid out in the order
// of the AVX-512 VNNI int4 kernel's registers (kernels_avx512.hpp,
// gemv_int4_steps): per step of 128 columns, the codes under the low and the
// high nibbles of a row's 64 bytes; per group, the activation scale and the
// scaled code sum that the group's weight scale or offset multiplies. Plain
// C++, so that gemv() builds it once per product rather than each chunk of
// rows again.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/detail/cache_line_vector.hpp"

namespace dilemma::quant::detail {

inline constexpr Eigen::Index int4_step = 128;

// The most groups whose per-group values the kernel holds at once (one register of floats).
inline constexpr Eigen::Index int4_step_group_chunk = 16;

inline bool int4_steps_fit(Eigen::Index group_size) {
  return int4_step % group_size == 0 || group_size % int4_step == 0;
}

// The activation codes of one product in the order of the steps' registers.
struct Int4StepCodes {
  Eigen::Index steps = 0;
  CacheLineVector<std::int8_t> low;   // 64 per step: code of the column under each byte's low nibble
  CacheLineVector<std::int8_t> high;  // 64 per step: ... under its high nibble
  // Per group of the whole steps (the column tail's groups are left to the unstepped kernel):
  std::vector<float> scale;           // s_g, the activation scale
  std::vector<float> scaled_sum;      // s_g · Σ q over the group, which the group's weight offset multiplies
};

inline Int4StepCodes lay_out_int4_step_codes(const QuantizedActivations& x) {
  Int4StepCodes codes;
  codes.steps = static_cast<Eigen::Index>(x.codes.size()) / int4_step;
  const auto steps = static_cast<std::size_t>(codes.steps);
  codes.low.resize(64 * steps);
  codes.high.resize(64 * steps);
  for (std::size_t s = 0; s < steps; ++s) {
    for (std::size_t block = 0; block < 4; ++block) {
      // Byte b of a block holds columns b and 16 + b of it.
      const std::int8_t* columns = x.codes.data() + s * int4_step + 32 * block;
      std::copy_n(columns, 16, codes.low.data() + 64 * s + 16 * block);
      std::copy_n(columns + 16, 16, codes.high.data() + 64 * s + 16 * block);
    }
  }
  const auto group_size = static_cast<std::size_t>(x.group_size);
  const std::size_t stepped_groups = steps * int4_step / group_size;
  codes.scale.resize(stepped_groups);
  codes.scaled_sum.resize(stepped_groups);
  for (std::size_t g = 0; g < stepped_groups; ++g) {
    codes.scale[g] = x.scales[g];
    codes.scaled_sum[g] = x.scales[g] * static_cast<float>(x.sums[g]);
  }
  return codes;
}

}  // namespace dilemma::quant::detail
