#pragma once
// The portable kernels: plain C++ for any architecture, and the reference the
// SIMD kernels are tested against. They follow the stored form directly,
// y_r = Σ_g (scale_g · Σ_{c∈g} code_c · x_c + offset_g · Σ_{c∈g} x_c),
// so the per-group sums of x (`group_sums`) are computed once per product.

#include <cstddef>
#include <cstdint>

#include <Eigen/Core>

#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/detail/weight_view.hpp"

namespace dilemma::quant::detail {

// y[r] for r in [begin, end); `group_sums` is Σ x over each group (integer formats).
inline void gemv_rows_scalar(const WeightView& w, const float* x, const float* group_sums, float* y, Eigen::Index begin,
                             Eigen::Index end) {
  const Eigen::Index half_block = int4_block / 2;
  for (Eigen::Index r = begin; r < end; ++r) {
    float sum = 0;
    switch (w.format) {
      case Format::f32: {
        const float* row = w.f32_row(r);
        for (Eigen::Index c = 0; c < w.cols; ++c) sum += row[c] * x[c];
        break;
      }
      case Format::f16: {
        const std::uint16_t* row = w.f16_row(r);
        for (Eigen::Index c = 0; c < w.cols; ++c) sum += f16_bits_to_f32(row[c]) * x[c];
        break;
      }
      case Format::int8: {
        const std::int8_t* row = w.int8_row(r);
        for (Eigen::Index g = 0; g < w.groups(); ++g) {
          float dot = 0;
          for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; ++c) {
            dot += static_cast<float>(row[c]) * x[c];
          }
          sum += w.scales_row(r)[g] * dot;
        }
        break;
      }
      case Format::int4: {
        const std::uint8_t* row = w.int4_row(r);
        const int bias = w.asymmetric ? 0 : 8;
        for (Eigen::Index g = 0; g < w.groups(); ++g) {
          float dot = 0;
          for (Eigen::Index block = g * w.group_size; block < (g + 1) * w.group_size; block += int4_block) {
            const std::uint8_t* bytes = row + block / 2;
            for (Eigen::Index j = 0; j < half_block; ++j) {
              dot += static_cast<float>((bytes[j] & 0xF) - bias) * x[block + j];
              dot += static_cast<float>((bytes[j] >> 4) - bias) * x[block + half_block + j];
            }
          }
          sum += w.scales_row(r)[g] * dot;
          if (w.asymmetric) sum += w.offsets_row(r)[g] * group_sums[g];
        }
        break;
      }
    }
    y[r] = sum;
  }
}

// Rows [begin, end) of Ŵ into `out`, row-major [(end − begin) × cols].
inline void dequantize_rows_scalar(const WeightView& w, Eigen::Index begin, Eigen::Index end, float* out) {
  const Eigen::Index half_block = int4_block / 2;
  for (Eigen::Index r = begin; r < end; ++r, out += w.cols) {
    switch (w.format) {
      case Format::f32: {
        const float* row = w.f32_row(r);
        for (Eigen::Index c = 0; c < w.cols; ++c) out[c] = row[c];
        break;
      }
      case Format::f16: {
        const std::uint16_t* row = w.f16_row(r);
        for (Eigen::Index c = 0; c < w.cols; ++c) out[c] = f16_bits_to_f32(row[c]);
        break;
      }
      case Format::int8: {
        const std::int8_t* row = w.int8_row(r);
        for (Eigen::Index c = 0; c < w.cols; ++c) {
          out[c] = dequantize_value(row[c], {w.scales_row(r)[c / w.group_size], 0.0f});
        }
        break;
      }
      case Format::int4: {
        const std::uint8_t* row = w.int4_row(r);
        const int bias = w.asymmetric ? 0 : 8;
        for (Eigen::Index block = 0; block < w.cols; block += int4_block) {
          const Eigen::Index g = block / w.group_size;
          const GroupParams params{w.scales_row(r)[g], w.asymmetric ? w.offsets_row(r)[g] : 0.0f};
          const std::uint8_t* bytes = row + block / 2;
          for (Eigen::Index j = 0; j < half_block; ++j) {
            out[block + j] = dequantize_value((bytes[j] & 0xF) - bias, params);
            out[block + half_block + j] = dequantize_value((bytes[j] >> 4) - bias, params);
          }
        }
        break;
      }
    }
  }
}

// y[r] = Σ_c ŵ[r][c] · x̂_c for r in [begin, end), integer weights and int8
// activations: the integer dot product of each group is exact in int32,
// y_r = Σ_g s_x[g] · (scale · Σ code·q + offset · Σ q).
inline void gemv_rows_scalar_int8_activations(const WeightView& w, const QuantizedActivations& x, float* y,
                                              Eigen::Index begin, Eigen::Index end) {
  const Eigen::Index half_block = int4_block / 2;
  const std::int8_t* q = x.codes.data();
  for (Eigen::Index r = begin; r < end; ++r) {
    float sum = 0;
    for (Eigen::Index g = 0; g < w.groups(); ++g) {
      std::int32_t dot = 0;
      for (Eigen::Index block = g * w.group_size; block < (g + 1) * w.group_size; block += int4_block) {
        if (w.format == Format::int8) {
          for (Eigen::Index c = block; c < block + int4_block; ++c) dot += w.int8_row(r)[c] * q[c];
          continue;
        }
        const std::uint8_t* bytes = w.int4_row(r) + block / 2;
        const int bias = w.asymmetric ? 0 : 8;
        for (Eigen::Index j = 0; j < half_block; ++j) {
          dot += ((bytes[j] & 0xF) - bias) * q[block + j];
          dot += ((bytes[j] >> 4) - bias) * q[block + half_block + j];
        }
      }
      const float offset = w.format == Format::int4 && w.asymmetric ? w.offsets_row(r)[g] : 0.0f;
      const auto group = static_cast<std::size_t>(g);
      sum += x.scales[group] * (w.scales_row(r)[g] * static_cast<float>(dot) + offset * static_cast<float>(x.sums[group]));
    }
    y[r] = sum;
  }
}

}  // namespace dilemma::quant::detail
