#pragma once
// AVX2 + FMA + F16C kernels, compiled through target attributes so that the
// header builds without -mavx2 and runs only where the CPU has the extensions
// (see kernel_isa.hpp). Weights are widened to float in registers and never
// written to memory in the matrix–vector product.
//
// Rows are processed one at a time, so that the weights are one linear stream
// (kernels_avx512.hpp says why, above its gemv_float), except int4's four
// where its columns are not whole 128-column steps: that decoding limits it
// more than the stream. Integer kernels accumulate
// Σ code·x per group and apply the group's scale once per group, not once per
// weight; int4 works on unsigned nibbles u (ŵ = scale·u + offset, offset =
// −8·scale when symmetric), so the offset contributes offset·Σx with the
// precomputed group sums of x.

#include "dilemma/quant/kernel_isa.hpp"

#if DILEMMA_QUANT_X86_KERNELS

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

#include <Eigen/Core>

#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/detail/int4_step_lanes.hpp"
#include "dilemma/quant/detail/row_prefetch.hpp"
#include "dilemma/quant/detail/weight_view.hpp"

#define DILEMMA_QUANT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace dilemma::quant::detail::avx2 {

DILEMMA_QUANT_TARGET_AVX2 inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

DILEMMA_QUANT_TARGET_AVX2 inline __m256 load_f16x8(const std::uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

DILEMMA_QUANT_TARGET_AVX2 inline __m256 load_int8x8(const std::int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// The 32 nibbles of one int4 block (16 bytes) as four vectors of 8 floats, in column order.
struct Int4Block {
  __m256 w[4];
};

DILEMMA_QUANT_TARGET_AVX2 inline Int4Block load_int4_block(const std::uint8_t* p) {
  const __m128i nibble_mask = _mm_set1_epi8(0x0F);
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i low = _mm_and_si128(packed, nibble_mask);                      // columns 0..15
  const __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), nibble_mask);  // columns 16..31
  return {{_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(low)),
           _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(low, 8))),
           _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(high)),
           _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(high, 8)))}};
}

// One row at a time, as in kernels_avx512.hpp (the comment above its gemv_float),
// with four independent accumulators.

template <Format F>
DILEMMA_QUANT_TARGET_AVX2 inline __m256 load_float_weights(const WeightView& w, Eigen::Index r, Eigen::Index c) {
  if constexpr (F == Format::f32) {
    return _mm256_loadu_ps(w.f32_row(r) + c);
  } else {
    return load_f16x8(w.f16_row(r) + c);
  }
}

template <Format F>
DILEMMA_QUANT_TARGET_AVX2 inline void gemv_float(const WeightView& w, const float* x, float* y, Eigen::Index r,
                                                 RowPrefetch prefetch) {
  constexpr Eigen::Index weight_bytes = F == Format::f32 ? 4 : 2;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  Eigen::Index c = 0;
  for (; c + 32 <= w.cols; c += 32) {
    for (Eigen::Index line = 0; line < 32 * weight_bytes; line += 64) {
      prefetch_rows<1>(prefetch, r, c * weight_bytes + line);
    }
    for (int k = 0; k < 4; ++k) {
      acc[k] = _mm256_fmadd_ps(load_float_weights<F>(w, r, c + 8 * k), _mm256_loadu_ps(x + c + 8 * k), acc[k]);
    }
  }
  for (; c + 8 <= w.cols; c += 8) {
    acc[0] = _mm256_fmadd_ps(load_float_weights<F>(w, r, c), _mm256_loadu_ps(x + c), acc[0]);
  }
  float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; c < w.cols; ++c) sum += (F == Format::f32 ? w.f32_row(r)[c] : f16_bits_to_f32(w.f16_row(r)[c])) * x[c];
  y[r] = sum;
}

// Groups are multiples of 32 columns: four 8-column chunks per step, summed
// once per group.
DILEMMA_QUANT_TARGET_AVX2 inline void gemv_int8(const WeightView& w, const float* x, float* y, Eigen::Index r,
                                                RowPrefetch prefetch) {
  const std::int8_t* const row = w.int8_row(r);
  __m256 total = _mm256_setzero_ps();
  for (Eigen::Index g = 0; g < w.groups(); ++g) {
    __m256 dot[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; c += 32) {
      if (c % 64 == 0) prefetch_rows<1>(prefetch, r, c);
      for (int k = 0; k < 4; ++k) {
        dot[k] = _mm256_fmadd_ps(load_int8x8(row + c + 8 * k), _mm256_loadu_ps(x + c + 8 * k), dot[k]);
      }
    }
    const __m256 sum = _mm256_add_ps(_mm256_add_ps(dot[0], dot[1]), _mm256_add_ps(dot[2], dot[3]));
    total = _mm256_fmadd_ps(sum, _mm256_set1_ps(w.scales_row(r)[g]), total);
  }
  y[r] = horizontal_sum(total);
}

// Rows rows at a time, sharing each load of x: unlike the other formats,
// int4 measured faster with four rows than with one (its decoding, not the
// memory stream, limits it: docs/performance.md, "One row at a time").
template <int Rows>
DILEMMA_QUANT_TARGET_AVX2 inline void gemv_int4(const WeightView& w, const float* x, const float* group_sums, float* y,
                                                Eigen::Index r0, RowPrefetch prefetch) {
  __m256 total[Rows];
  float offset_terms[Rows] = {};
  for (int i = 0; i < Rows; ++i) total[i] = _mm256_setzero_ps();
  for (Eigen::Index g = 0; g < w.groups(); ++g) {
    __m256 dot[Rows];
    for (int i = 0; i < Rows; ++i) dot[i] = _mm256_setzero_ps();
    for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; c += int4_block) {
      if (c % 128 == 0) prefetch_rows<Rows>(prefetch, r0, c / 2);
      const __m256 x0 = _mm256_loadu_ps(x + c);
      const __m256 x1 = _mm256_loadu_ps(x + c + 8);
      const __m256 x2 = _mm256_loadu_ps(x + c + 16);
      const __m256 x3 = _mm256_loadu_ps(x + c + 24);
      for (int i = 0; i < Rows; ++i) {
        const Int4Block block = load_int4_block(w.int4_row(r0 + i) + c / 2);
        dot[i] = _mm256_fmadd_ps(block.w[0], x0, dot[i]);
        dot[i] = _mm256_fmadd_ps(block.w[1], x1, dot[i]);
        dot[i] = _mm256_fmadd_ps(block.w[2], x2, dot[i]);
        dot[i] = _mm256_fmadd_ps(block.w[3], x3, dot[i]);
      }
    }
    for (int i = 0; i < Rows; ++i) {
      total[i] = _mm256_fmadd_ps(dot[i], _mm256_set1_ps(w.scales_row(r0 + i)[g]), total[i]);
      offset_terms[i] += w.int4_offset(r0 + i, g) * group_sums[g];
    }
  }
  for (int i = 0; i < Rows; ++i) y[r0 + i] = horizontal_sum(total[i]) + offset_terms[i];
}

// ---- int4 weights, float activations, in AVX-512's 128-column steps ----
//
// The lanes of int4_step_lanes.hpp, 32 bytes (8 int32 lanes, 64 columns, half
// a step) at a time: nibble k of every lane, masked in place, converts exactly
// to u·16^k and meets x·16^−k, so an FMA adds u·x (kernels_avx512.hpp says
// more). AVX2 converts only signed int32, so nibble 7 (bits 28–31) is shifted
// down one nibble first: it converts to u·16^6, its product is u·x/16, and
// that is added times 16, exactly. Lane l of half H holds columns of int4
// block 2H + l/4: with groups of 64 a half is one group, with 32 two.

// Σ u·x over one half step, in 8 lanes; `x`: the half's lanes of vector 0.
DILEMMA_QUANT_TARGET_AVX2 inline __m256 int4_lane_half(const std::uint8_t* bytes, const float* x,
                                                       const __m256i (&masks)[7]) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes));
  // u·16^k of nibble k (k < 7) in every lane
  const auto nibble = [&](int k) DILEMMA_QUANT_TARGET_AVX2 {
    return _mm256_cvtepi32_ps(_mm256_and_si256(w, masks[k]));
  };
  // Two chains, so that the FMAs' latency overlaps.
  __m256 even = _mm256_mul_ps(nibble(0), _mm256_loadu_ps(x));
  __m256 odd = _mm256_mul_ps(nibble(1), _mm256_loadu_ps(x + 16));
  for (int k = 2; k < 7; k += 2) {
    even = _mm256_fmadd_ps(nibble(k), _mm256_loadu_ps(x + 16 * k), even);
    if (k + 1 < 7) odd = _mm256_fmadd_ps(nibble(k + 1), _mm256_loadu_ps(x + 16 * (k + 1)), odd);
  }
  const __m256 top = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(w, 4), masks[6]));
  return _mm256_fmadd_ps(_mm256_mul_ps(top, _mm256_loadu_ps(x + 16 * 7)), _mm256_set1_ps(16.0f),
                         _mm256_add_ps(even, odd));
}

// One row at a time, a single stream. GroupCols: 32, 64, or 0 for a multiple of 128.
template <Eigen::Index GroupCols>
DILEMMA_QUANT_TARGET_AVX2 inline void gemv_int4_lane_rows(const WeightView& w, const Int4StepLanes& x,
                                                          const float* group_sums, float* y, Eigen::Index begin,
                                                          Eigen::Index end) {
  __m256i masks[7];
  for (int k = 0; k < 7; ++k) masks[k] = _mm256_set1_epi32(0xF << (4 * k));
  const RowPrefetch prefetch(w);
  const Eigen::Index halves = 2 * x.steps, groups = w.groups();
  const Eigen::Index halves_per_group = GroupCols == 0 ? w.group_size / 64 : 1;
  Int4RowBlock block(w, begin);
  for (Eigen::Index r = begin; r < end; ++r, block.advance(1, w.stride)) {
    const std::uint8_t* row = block.packed;
    const float* scales = block.scales;
    __m256 total = _mm256_setzero_ps(), dot = _mm256_setzero_ps();
    for (Eigen::Index h = 0; h < halves; ++h) {
      if (h % 2 == 0) prefetch_rows<1>(prefetch, r, 32 * h);
      const __m256 half = int4_lane_half(row + 32 * h, x.lanes.data() + int4_step * (h / 2) + 8 * (h % 2), masks);
      if constexpr (GroupCols == 32) {
        const __m256 scale = _mm256_setr_m128(_mm_set1_ps(scales[2 * h]), _mm_set1_ps(scales[2 * h + 1]));
        total = _mm256_fmadd_ps(half, scale, total);
      } else if constexpr (GroupCols == 64) {
        total = _mm256_fmadd_ps(half, _mm256_set1_ps(scales[h]), total);
      } else {
        dot = _mm256_add_ps(dot, half);
        if ((h + 1) % halves_per_group == 0) {
          total = _mm256_fmadd_ps(dot, _mm256_set1_ps(scales[h / halves_per_group]), total);
          dot = _mm256_setzero_ps();
        }
      }
    }
    float offset_term = 0.0f;
    for (Eigen::Index g = 0; g < groups; ++g) {
      offset_term = std::fma(block.offset(g), group_sums[g], offset_term);
    }
    y[r] = horizontal_sum(total) + offset_term;
  }
}

// y[r] for r in [begin, end) of an int4 weight, on activations laid out by
// lay_out_int4_step_lanes; `group_sums`: Σ x over each group.
DILEMMA_QUANT_TARGET_AVX2 inline void gemv_rows_int4_lanes(const WeightView& w, const Int4StepLanes& x,
                                                          const float* group_sums, float* y, Eigen::Index begin,
                                                          Eigen::Index end) {
  switch (w.group_size) {  // int4_steps_fit: 32, 64 or a multiple of a step
    case 32: gemv_int4_lane_rows<32>(w, x, group_sums, y, begin, end); return;
    case 64: gemv_int4_lane_rows<64>(w, x, group_sums, y, begin, end); return;
    default: gemv_int4_lane_rows<0>(w, x, group_sums, y, begin, end); return;
  }
}

// y[r] for r in [begin, end); `group_sums` is Σ x over each group (integer formats).
DILEMMA_QUANT_TARGET_AVX2 inline void gemv_rows(const WeightView& w, const float* x, const float* group_sums, float* y,
                                                Eigen::Index begin, Eigen::Index end) {
  const RowPrefetch prefetch(w);
  Eigen::Index r = begin;
  if (w.format == Format::int4) {
    for (; r + 4 <= end; r += 4) gemv_int4<4>(w, x, group_sums, y, r, prefetch);
  }
  for (; r < end; ++r) {
    switch (w.format) {
      case Format::f32: gemv_float<Format::f32>(w, x, y, r, prefetch); break;
      case Format::f16: gemv_float<Format::f16>(w, x, y, r, prefetch); break;
      case Format::int8: gemv_int8(w, x, y, r, prefetch); break;
      case Format::int4: gemv_int4<1>(w, x, group_sums, y, r, prefetch); break;
    }
  }
}

// Rows [begin, end) of Ŵ into `out`, row-major [(end − begin) × cols].
DILEMMA_QUANT_TARGET_AVX2 inline void dequantize_rows(const WeightView& w, Eigen::Index begin, Eigen::Index end,
                                                      float* out) {
  for (Eigen::Index r = begin; r < end; ++r, out += w.cols) {
    switch (w.format) {
      case Format::f32: std::copy_n(w.f32_row(r), w.cols, out); break;
      case Format::f16: {
        const std::uint16_t* row = w.f16_row(r);
        Eigen::Index c = 0;
        for (; c + 8 <= w.cols; c += 8) _mm256_storeu_ps(out + c, load_f16x8(row + c));
        for (; c < w.cols; ++c) out[c] = f16_bits_to_f32(row[c]);
        break;
      }
      case Format::int8: {
        for (Eigen::Index c = 0; c < w.cols; c += 8) {
          const __m256 scale = _mm256_set1_ps(w.scales_row(r)[c / w.group_size]);
          _mm256_storeu_ps(out + c, _mm256_mul_ps(load_int8x8(w.int8_row(r) + c), scale));
        }
        break;
      }
      case Format::int4: {
        for (Eigen::Index c = 0; c < w.cols; c += int4_block) {
          const Eigen::Index g = c / w.group_size;
          const __m256 scale = _mm256_set1_ps(w.scales_row(r)[g]);
          const __m256 offset = _mm256_set1_ps(w.int4_offset(r, g));
          const Int4Block block = load_int4_block(w.int4_row(r) + c / 2);
          for (int k = 0; k < 4; ++k) _mm256_storeu_ps(out + c + 8 * k, _mm256_fmadd_ps(block.w[k], scale, offset));
        }
        break;
      }
    }
  }
}

// ---- int8 activations (activations.hpp) ----

// The 32 codes of one int4 block as unsigned bytes, in column order.
DILEMMA_QUANT_TARGET_AVX2 inline __m256i int4_block_bytes(const std::uint8_t* p) {
  const __m128i nibble_mask = _mm_set1_epi8(0x0F);
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), nibble_mask), _mm_and_si128(packed, nibble_mask));
}

// 32 products of unsigned bytes (≤ 15) with int8 codes, summed into 8 int32
// lanes; pairs stay within vpmaddubsw's int16 (2 · 15 · 127).
DILEMMA_QUANT_TARGET_AVX2 inline __m256i dot_unsigned_codes(__m256i weights, __m256i codes) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(weights, codes), _mm256_set1_epi16(1));
}

// 32 products of int8 weights with int8 codes: vpmaddubsw needs an unsigned
// operand, so the weights' signs move to the codes (|w| ≤ 128, |q| ≤ 127: pairs
// stay within int16).
DILEMMA_QUANT_TARGET_AVX2 inline __m256i dot_signed_codes(__m256i weights, __m256i codes) {
  return dot_unsigned_codes(_mm256_abs_epi8(weights), _mm256_sign_epi8(codes, weights));
}

// y[r] for r in [r0, r0 + Rows): int8 weights one row at a time, int4 four
// (as gemv_rows, measured).
template <Format F, int Rows>
DILEMMA_QUANT_TARGET_AVX2 inline void gemv_int8_activations(const WeightView& w, const QuantizedActivations& x,
                                                            float* y, Eigen::Index r0, RowPrefetch prefetch) {
  __m256 total[Rows];
  float offset_terms[Rows] = {};
  for (int i = 0; i < Rows; ++i) total[i] = _mm256_setzero_ps();
  for (Eigen::Index g = 0; g < w.groups(); ++g) {
    const auto group = static_cast<std::size_t>(g);
    __m256i dot[Rows];
    for (int i = 0; i < Rows; ++i) dot[i] = _mm256_setzero_si256();
    for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; c += int4_block) {
      const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.codes.data() + c));
      if constexpr (F == Format::int8) {
        if (c % 64 == 0) prefetch_rows<Rows>(prefetch, r0, c);
        for (int i = 0; i < Rows; ++i) {
          const __m256i weights = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.int8_row(r0 + i) + c));
          dot[i] = _mm256_add_epi32(dot[i], dot_signed_codes(weights, codes));
        }
      } else {
        if (c % 128 == 0) prefetch_rows<Rows>(prefetch, r0, c / 2);
        for (int i = 0; i < Rows; ++i) {
          dot[i] = _mm256_add_epi32(dot[i], dot_unsigned_codes(int4_block_bytes(w.int4_row(r0 + i) + c / 2), codes));
        }
      }
    }
    for (int i = 0; i < Rows; ++i) {
      const __m256 scale = _mm256_set1_ps(w.scales_row(r0 + i)[g] * x.scales[group]);
      total[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[i]), scale, total[i]);
      if constexpr (F == Format::int4) {
        offset_terms[i] += w.int4_offset(r0 + i, g) * x.scales[group] * static_cast<float>(x.sums[group]);
      }
    }
  }
  for (int i = 0; i < Rows; ++i) y[r0 + i] = horizontal_sum(total[i]) + offset_terms[i];
}

// quant::quantize_activations in 8 lanes, bit for bit as avx512::quantize_activations
// says (kernels_avx512.hpp), for groups of a multiple of 8 activations.

DILEMMA_QUANT_TARGET_AVX2 inline float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// The int32 codes of x: x / scale rounded half away from zero, within ±127.
DILEMMA_QUANT_TARGET_AVX2 inline __m256i round_activation_codes(__m256 x, __m256 scale) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 ratio = _mm256_div_ps(x, scale);
  const __m256 truncated = _mm256_round_ps(ratio, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 away =
      _mm256_cmp_ps(_mm256_andnot_ps(sign_bit, _mm256_sub_ps(ratio, truncated)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 unit = _mm256_or_ps(_mm256_and_ps(ratio, sign_bit), _mm256_set1_ps(1.0f));  // ±1, the ratio's sign
  const __m256 rounded = _mm256_add_ps(truncated, _mm256_and_ps(away, unit));
  return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(rounded, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f)));
}

DILEMMA_QUANT_TARGET_AVX2 inline QuantizedActivations quantize_activations(std::span<const float> x,
                                                                            Eigen::Index group_size) {
  if (group_size % 8 != 0) return quant::quantize_activations(x, group_size);
  QuantizedActivations q = unfilled_activations(x, group_size);
  const auto size = static_cast<std::size_t>(group_size);
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 largest = _mm256_set1_ps(std::numeric_limits<float>::max());
  for (std::size_t g = 0; g < q.scales.size(); ++g) {
    const float* group = x.data() + g * size;
    __m256 magnitude = _mm256_setzero_ps();
    __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (std::size_t i = 0; i < size; i += 8) {
      const __m256 value = _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(group + i));
      finite = _mm256_and_ps(finite, _mm256_cmp_ps(value, largest, _CMP_LE_OQ));  // false for ±inf and NaN
      magnitude = _mm256_max_ps(magnitude, value);
    }
    if (_mm256_movemask_ps(finite) != 0xFF) fail_non_finite_activation(x, g * size, size);
    q.scales[g] = horizontal_max(magnitude) / 127.0f;
  }
  for (std::size_t g = 0; g < q.scales.size(); ++g) {
    if (q.scales[g] == 0) continue;  // codes and sum stay 0
    const float* group = x.data() + g * size;
    std::int8_t* codes = q.codes.data() + g * size;
    const __m256 scale = _mm256_set1_ps(q.scales[g]);
    __m256i sum = _mm256_setzero_si256();
    for (std::size_t i = 0; i < size; i += 8) {
      const __m256i code = round_activation_codes(_mm256_loadu_ps(group + i), scale);
      sum = _mm256_add_epi32(sum, code);
      // The eight low bytes, two per 128-bit half after the two saturating packs.
      const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(code, code), _mm256_setzero_si256());
      const std::int32_t low = _mm256_extract_epi32(bytes, 0), high = _mm256_extract_epi32(bytes, 4);
      std::memcpy(codes + i, &low, 4);
      std::memcpy(codes + i + 4, &high, 4);
    }
    const __m128i half = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    const __m128i quarter = _mm_add_epi32(half, _mm_unpackhi_epi64(half, half));
    q.sums[g] = _mm_cvtsi128_si32(_mm_add_epi32(quarter, _mm_shuffle_epi32(quarter, 1)));
  }
  return q;
}

// y[r] = Σ_c ŵ[r][c] · x̂_c for r in [begin, end), integer weights only.
DILEMMA_QUANT_TARGET_AVX2 inline void gemv_rows_int8_activations(const WeightView& w, const QuantizedActivations& x,
                                                                 float* y, Eigen::Index begin, Eigen::Index end) {
  const RowPrefetch prefetch(w);
  Eigen::Index r = begin;
  if (w.format == Format::int8) {
    for (; r < end; ++r) gemv_int8_activations<Format::int8, 1>(w, x, y, r, prefetch);
  } else {
    for (; r + 4 <= end; r += 4) gemv_int8_activations<Format::int4, 4>(w, x, y, r, prefetch);
    for (; r < end; ++r) gemv_int8_activations<Format::int4, 1>(w, x, y, r, prefetch);
  }
}

}  // namespace dilemma::quant::detail::avx2

#undef DILEMMA_QUANT_TARGET_AVX2

#endif  // DILEMMA_QUANT_X86_KERNELS
