#pragma once
// The activation codes of one int8-activation product, laid out in the order
// of the AVX-512 VNNI int4 kernel's registers (kernels_avx512.hpp,
// gemv_int4_steps): per step of 128 columns, the codes under the low and the
// high nibbles of a row's 64 bytes, and per int32 lane the sums and scales
// that lane needs. Plain C++, so that gemv() builds it once per product
// rather than each chunk of rows again.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "dilemma/quant/activations.hpp"

namespace dilemma::quant::detail {

inline constexpr Eigen::Index int4_step = 128;

inline bool int4_steps_fit(Eigen::Index group_size) {
  return int4_step % group_size == 0 || group_size % int4_step == 0;
}

// The activation codes of one product in the order of the steps' registers.
struct Int4StepCodes {
  Eigen::Index steps = 0;
  std::vector<std::int8_t> low;    // 64 per step: code of the column under each byte's low nibble
  std::vector<std::int8_t> high;   // 64 per step: ... under its high nibble
  std::vector<std::int32_t> bias;  // 16 per step: −8 · Σ codes of the lane (symmetric int4 stores u = q + 8)
  std::vector<float> scale;        // 16 per step: the activation scale s_g of the lane's group
  std::vector<float> scaled_sum;   // 16 per step: s_g · Σ codes of the lane (for asymmetric offsets)
  std::vector<Eigen::Index> first_group;  // per step: the group of its first column
};

inline Int4StepCodes lay_out_int4_step_codes(const QuantizedActivations& x) {
  Int4StepCodes codes;
  codes.steps = static_cast<Eigen::Index>(x.codes.size()) / int4_step;
  const auto steps = static_cast<std::size_t>(codes.steps);
  codes.low.resize(64 * steps);
  codes.high.resize(64 * steps);
  codes.bias.resize(16 * steps);
  codes.scale.resize(16 * steps);
  codes.scaled_sum.resize(16 * steps);
  codes.first_group.resize(steps);
  for (std::size_t s = 0; s < steps; ++s) {
    codes.first_group[s] = static_cast<Eigen::Index>(s) * int4_step / x.group_size;
    for (std::size_t block = 0; block < 4; ++block) {
      // Byte b of a block holds columns b and 16 + b of it.
      const std::int8_t* columns = x.codes.data() + s * int4_step + 32 * block;
      std::copy_n(columns, 16, codes.low.data() + 64 * s + 16 * block);
      std::copy_n(columns + 16, 16, codes.high.data() + 64 * s + 16 * block);
    }
    for (std::size_t lane = 0; lane < 16; ++lane) {
      std::int32_t sum = 0;
      for (std::size_t k = 4 * lane; k < 4 * lane + 4; ++k) sum += codes.low[64 * s + k] + codes.high[64 * s + k];
      const std::size_t group = (s * int4_step + 32 * (lane / 4)) / static_cast<std::size_t>(x.group_size);
      codes.bias[16 * s + lane] = -8 * sum;
      codes.scale[16 * s + lane] = x.scales[group];
      codes.scaled_sum[16 * s + lane] = x.scales[group] * static_cast<float>(sum);
    }
  }
  return codes;
}

}  // namespace dilemma::quant::detail
