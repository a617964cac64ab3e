#pragma once
// AVX-512 (F, BW, VL) kernels; the layout of kernels_avx2.hpp with twice the
// width, masked loads for the column tails of float formats, and a different
// int4 decoder: a 16-entry table of one group's dequantized values,
// scale·u + offset for u = 0..15, sits in one register, and vpermps looks up
// 16 weights at once. The lookup replaces the nibble mask and the int→float
// conversion and gives the exact ŵ, so the scale and offset need no separate
// per-group pass.

#include "dilemma/quant/kernel_isa.hpp"

#if DILEMMA_QUANT_X86_KERNELS

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/detail/int4_step_codes.hpp"
#include "dilemma/quant/detail/int4_step_lanes.hpp"
#include "dilemma/quant/detail/kernels_avx2.hpp"
#include "dilemma/quant/detail/row_prefetch.hpp"
#include "dilemma/quant/detail/weight_view.hpp"

#define DILEMMA_QUANT_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
// Only the int8-activation kernels use VNNI, which not every AVX-512 CPU has.
#define DILEMMA_QUANT_TARGET_AVX512_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

// GCC 12's own AVX-512 intrinsics trip -W(maybe-)uninitialized where they
// are inlined (GCC bug 105593, fixed in GCC 13); the warning is about the
// compiler's header, not about this code.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define DILEMMA_QUANT_GCC_BUG_105593 1
#endif

namespace dilemma::quant::detail::avx512 {

// The first `count` (≤ 16) lanes.
DILEMMA_QUANT_TARGET_AVX512 inline __mmask16 tail_mask(Eigen::Index count) {
  return static_cast<__mmask16>((1u << count) - 1u);
}

template <Format F>
DILEMMA_QUANT_TARGET_AVX512 inline __m512 load_float_weights(const WeightView& w, Eigen::Index r, Eigen::Index c) {
  if constexpr (F == Format::f32) {
    return _mm512_loadu_ps(w.f32_row(r) + c);
  } else {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.f16_row(r) + c)));
  }
}

template <Format F>
DILEMMA_QUANT_TARGET_AVX512 inline __m512 load_float_weights(const WeightView& w, Eigen::Index r, Eigen::Index c,
                                                             __mmask16 mask) {
  if constexpr (F == Format::f32) {
    return _mm512_maskz_loadu_ps(mask, w.f32_row(r) + c);
  } else {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, w.f16_row(r) + c));
  }
}

DILEMMA_QUANT_TARGET_AVX512 inline __m512 load_int8x16(const std::int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// scale·u + offset for u = 0..15.
DILEMMA_QUANT_TARGET_AVX512 inline __m512 int4_table(float scale, float offset) {
  const __m512 codes = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_fmadd_ps(codes, _mm512_set1_ps(scale), _mm512_set1_ps(offset));
}

// The 32 weights of one int4 block, columns 0..15 and 16..31. vpermps reads
// only the low 4 bits of each index, so the low nibbles need no mask.
struct Int4Block {
  __m512 low;
  __m512 high;
};

DILEMMA_QUANT_TARGET_AVX512 inline Int4Block decode_int4_block(const std::uint8_t* p, __m512 table) {
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm512_permutexvar_ps(bytes, table), _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table)};
}

// The horizontal sums of consecutive rows' lane vectors (plus a scalar per
// row), written to y 16 rows at a time: one transposing reduction of 16
// registers takes about 45 operations where 16 separate reductions take about 130,
// which matters for short rows (lm_head's 512 int4 columns are four steps of
// about nine operations each).
class RowSums {
 public:
  explicit RowSums(float* y) : y_(y) {}

  DILEMMA_QUANT_TARGET_AVX512 void add(__m512 lanes, float extra = 0.0f) {
    pending_[count_] = lanes;
    extra_[count_] = extra;
    if (++count_ == 16) flush();
  }

  // Writes the rows added since the last flush.
  DILEMMA_QUANT_TARGET_AVX512 void flush() {
    if (count_ == 0) return;
    for (int i = count_; i < 16; ++i) {
      pending_[i] = _mm512_setzero_ps();
      extra_[i] = 0.0f;
    }
    // Pairs of rows, then fours, eights and sixteen: lane i of the last sum is row i's total.
    __m512 pairs[8], fours[4], eights[2];
    for (int i = 0; i < 8; ++i) {
      const __m512 a = pending_[2 * i], b = pending_[2 * i + 1];
      pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    for (int i = 0; i < 4; ++i) {
      const __m512d a = _mm512_castps_pd(pairs[2 * i]), b = _mm512_castps_pd(pairs[2 * i + 1]);
      fours[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    for (int i = 0; i < 2; ++i) {
      eights[i] = _mm512_add_ps(_mm512_shuffle_f32x4(fours[2 * i], fours[2 * i + 1], 0b10'00'10'00),
                                _mm512_shuffle_f32x4(fours[2 * i], fours[2 * i + 1], 0b11'01'11'01));
    }
    const __m512 sums = _mm512_add_ps(_mm512_shuffle_f32x4(eights[0], eights[1], 0b10'00'10'00),
                                      _mm512_shuffle_f32x4(eights[0], eights[1], 0b11'01'11'01));
    _mm512_mask_storeu_ps(y_, tail_mask(count_), _mm512_add_ps(sums, _mm512_loadu_ps(extra_)));
    y_ += count_;
    count_ = 0;
  }

 private:
  float* y_;
  int count_ = 0;
  __m512 pending_[16];
  float extra_[16];
};

// One row at a time, so that the weights are read as one linear stream: the
// hardware prefetcher follows it at full speed, where the same bytes read as
// two or more interleaved streams of short rows came at half the bandwidth on
// this project's Zen 4 host (docs/performance.md, "One row at a time"). x
// stays in L1, so reloading it for every row costs loads, not memory traffic.
// Each kernel keeps four independent accumulators: a single FMA chain would
// wait on the FMA latency at every step.

template <Format F>
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_float(const WeightView& w, const float* x, float* y, Eigen::Index r,
                                                   RowPrefetch prefetch) {
  constexpr Eigen::Index weight_bytes = F == Format::f32 ? 4 : 2;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  Eigen::Index c = 0;
  for (; c + 64 <= w.cols; c += 64) {
    for (Eigen::Index line = 0; line < 64 * weight_bytes; line += 64) {
      prefetch_rows<1>(prefetch, r, c * weight_bytes + line);
    }
    for (int k = 0; k < 4; ++k) {
      acc[k] = _mm512_fmadd_ps(load_float_weights<F>(w, r, c + 16 * k), _mm512_loadu_ps(x + c + 16 * k), acc[k]);
    }
  }
  for (; c + 16 <= w.cols; c += 16) {
    acc[0] = _mm512_fmadd_ps(load_float_weights<F>(w, r, c), _mm512_loadu_ps(x + c), acc[0]);
  }
  if (c < w.cols) {
    const __mmask16 mask = tail_mask(w.cols - c);
    acc[1] = _mm512_fmadd_ps(load_float_weights<F>(w, r, c, mask), _mm512_maskz_loadu_ps(mask, x + c), acc[1]);
  }
  y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

// Groups are multiples of 32 columns; 64 at a time where the group size
// allows, into four accumulators summed once per group.
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_int8(const WeightView& w, const float* x, float* y, Eigen::Index r,
                                                  RowPrefetch prefetch) {
  const std::int8_t* const row = w.int8_row(r);
  const float* const scales = w.scales_row(r);
  const bool by_64 = w.group_size % 64 == 0;
  __m512 total = _mm512_setzero_ps();
  for (Eigen::Index g = 0; g < w.groups(); ++g) {
    __m512 dot0 = _mm512_setzero_ps(), dot1 = _mm512_setzero_ps();
    __m512 dot2 = _mm512_setzero_ps(), dot3 = _mm512_setzero_ps();
    const Eigen::Index end = (g + 1) * w.group_size;
    for (Eigen::Index c = g * w.group_size; c < end; c += by_64 ? 64 : 32) {
      if (c % 64 == 0) prefetch_rows<1>(prefetch, r, c);
      dot0 = _mm512_fmadd_ps(load_int8x16(row + c), _mm512_loadu_ps(x + c), dot0);
      dot1 = _mm512_fmadd_ps(load_int8x16(row + c + 16), _mm512_loadu_ps(x + c + 16), dot1);
      if (by_64) {
        dot2 = _mm512_fmadd_ps(load_int8x16(row + c + 32), _mm512_loadu_ps(x + c + 32), dot2);
        dot3 = _mm512_fmadd_ps(load_int8x16(row + c + 48), _mm512_loadu_ps(x + c + 48), dot3);
      }
    }
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(dot0, dot1), _mm512_add_ps(dot2, dot3));
    total = _mm512_fmadd_ps(sum, _mm512_set1_ps(scales[g]), total);
  }
  y[r] = _mm512_reduce_add_ps(total);
}

// Several rows that share each load of x: `Rows` interleaved streams, which
// read DRAM more slowly than one (above), but where x is long (fc2's 4096
// columns: 16 KiB of floats) or the decoding is the bottleneck (int4), the
// loads of x they save weigh more (measured, docs/performance.md).

template <Format F, int Rows>
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_float_block(const WeightView& w, const float* x, float* y, Eigen::Index r0,
                                                         RowPrefetch prefetch) {
  constexpr Eigen::Index weight_bytes = F == Format::f32 ? 4 : 2;
  __m512 acc[Rows];
  for (int i = 0; i < Rows; ++i) acc[i] = _mm512_setzero_ps();
  Eigen::Index c = 0;
  for (; c + 16 <= w.cols; c += 16) {
    if (c * weight_bytes % 64 == 0) prefetch_rows<Rows>(prefetch, r0, c * weight_bytes);
    const __m512 xv = _mm512_loadu_ps(x + c);
    for (int i = 0; i < Rows; ++i) acc[i] = _mm512_fmadd_ps(load_float_weights<F>(w, r0 + i, c), xv, acc[i]);
  }
  if (c < w.cols) {
    const __mmask16 mask = tail_mask(w.cols - c);
    const __m512 xv = _mm512_maskz_loadu_ps(mask, x + c);
    for (int i = 0; i < Rows; ++i) acc[i] = _mm512_fmadd_ps(load_float_weights<F>(w, r0 + i, c, mask), xv, acc[i]);
  }
  for (int i = 0; i < Rows; ++i) y[r0 + i] = _mm512_reduce_add_ps(acc[i]);
}

template <int Rows>
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_int8_block(const WeightView& w, const float* x, float* y, Eigen::Index r0,
                                                        RowPrefetch prefetch) {
  __m512 total[Rows];
  for (int i = 0; i < Rows; ++i) total[i] = _mm512_setzero_ps();
  for (Eigen::Index g = 0; g < w.groups(); ++g) {
    __m512 dot[Rows];
    for (int i = 0; i < Rows; ++i) dot[i] = _mm512_setzero_ps();
    for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; c += 16) {
      if (c % 64 == 0) prefetch_rows<Rows>(prefetch, r0, c);
      const __m512 xv = _mm512_loadu_ps(x + c);
      for (int i = 0; i < Rows; ++i) dot[i] = _mm512_fmadd_ps(load_int8x16(w.int8_row(r0 + i) + c), xv, dot[i]);
    }
    for (int i = 0; i < Rows; ++i) {
      total[i] = _mm512_fmadd_ps(dot[i], _mm512_set1_ps(w.scales_row(r0 + i)[g]), total[i]);
    }
  }
  for (int i = 0; i < Rows; ++i) y[r0 + i] = _mm512_reduce_add_ps(total[i]);
}

template <int Rows>
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_int4_block(const WeightView& w, const float* x, float* y, Eigen::Index r0,
                                                        RowPrefetch prefetch) {
  // Two accumulators per row (low and high half of each block) keep enough
  // independent FMA chains in flight.
  __m512 low_sum[Rows];
  __m512 high_sum[Rows];
  for (int i = 0; i < Rows; ++i) low_sum[i] = high_sum[i] = _mm512_setzero_ps();
  for (Eigen::Index g = 0; g < w.groups(); ++g) {
    __m512 table[Rows];
    for (int i = 0; i < Rows; ++i) table[i] = int4_table(w.scales_row(r0 + i)[g], w.int4_offset(r0 + i, g));
    for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; c += int4_block) {
      if (c % 128 == 0) prefetch_rows<Rows>(prefetch, r0, c / 2);
      const __m512 x_low = _mm512_loadu_ps(x + c);
      const __m512 x_high = _mm512_loadu_ps(x + c + 16);
      for (int i = 0; i < Rows; ++i) {
        const Int4Block block = decode_int4_block(w.int4_row(r0 + i) + c / 2, table[i]);
        low_sum[i] = _mm512_fmadd_ps(block.low, x_low, low_sum[i]);
        high_sum[i] = _mm512_fmadd_ps(block.high, x_high, high_sum[i]);
      }
    }
  }
  for (int i = 0; i < Rows; ++i) y[r0 + i] = _mm512_reduce_add_ps(_mm512_add_ps(low_sum[i], high_sum[i]));
}

template <int Rows>
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_block(const WeightView& w, const float* x, float* y, Eigen::Index r0,
                                                   RowPrefetch prefetch) {
  switch (w.format) {
    case Format::f32: gemv_float_block<Format::f32, Rows>(w, x, y, r0, prefetch); return;
    case Format::f16: gemv_float_block<Format::f16, Rows>(w, x, y, r0, prefetch); return;
    case Format::int8: gemv_int8_block<Rows>(w, x, y, r0, prefetch); return;
    case Format::int4: gemv_int4_block<Rows>(w, x, y, r0, prefetch); return;
  }
}

// ---- int4 rows in steps of 128 columns ----
//
// Decoding int4 blocks into column order (decode_int4_block) costs several
// shuffles per 32 weights. The step kernels below, for float and for int8
// activations, leave the weights as stored instead: 64 bytes of a row (four
// blocks, 128 columns) are one load and one register of 16 int32 lanes, lane l
// holding bytes 4l … 4l + 3, and the activations are laid out once per product
// in the order of those lanes (int4_step_lanes.hpp, int4_step_codes.hpp). Lane
// l covers columns of block l/4 only, so with groups of 32 or 64 columns
// (GroupsPerStep = 128/G = 4 or 2) it belongs to group 32·(l/4)/G of its step.

// 64 bytes of a row, held in a register: otherwise GCC 12 folds the
// load into both of its users and, short of address registers, bounces it
// through the stack (measured 10-15% slower on cache-resident weights).
DILEMMA_QUANT_TARGET_AVX512 __attribute__((always_inline)) inline __m512i load_step_bytes(const std::uint8_t* p) {
  __m512i bytes = _mm512_loadu_si512(p);
  asm("" : "+v"(bytes));
  return bytes;
}

// The group, within a chunk of steps, of each lane at step K of the chunk:
// K·GroupsPerStep + 32·(l/4)/G. A constant once the chunk's steps are
// unrolled, rather than a vector carried and incremented from step to step.
template <int K, int GroupsPerStep>
DILEMMA_QUANT_TARGET_AVX512 __attribute__((always_inline)) inline __m512i step_lane_groups() {
  static_assert(GroupsPerStep == 2 || GroupsPerStep == 4);
  constexpr int g = GroupsPerStep * K;
  if constexpr (GroupsPerStep == 4) {
    return _mm512_setr_epi32(g, g, g, g, g + 1, g + 1, g + 1, g + 1, g + 2, g + 2, g + 2, g + 2, g + 3, g + 3, g + 3,
                             g + 3);
  } else {
    return _mm512_setr_epi32(g, g, g, g, g, g, g, g, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1);
  }
}

// run.template operator()<StepsPerChunk>() with the longest chunk of steps
// that holds at most one register of group values (16 groups) and divides a
// row's `steps`, so that every chunk is whole and its steps unroll with
// constant lane groups and no test between them. Both cost: on lm_head's
// int8-activation GEMV, a chunk of run-time length with a lane-group vector
// carried between steps ran 15-30% slower (docs/performance.md, "int4 in
// 128-column steps").
template <int GroupsPerStep, typename Run>
inline decltype(auto) with_whole_chunks(Eigen::Index steps, Run&& run) {
  constexpr int longest = int4_step_group_chunk / GroupsPerStep;  // 8 or 4
  if (steps % longest == 0) return run.template operator()<longest>();
  if constexpr (longest > 4) {
    if (steps % 4 == 0) return run.template operator()<4>();
  }
  if (steps % 2 == 0) return run.template operator()<2>();
  return run.template operator()<1>();
}

// ---- int4 weights, float or bfloat16 activations, 128 columns per step ----
//
// Float activations: nibble k of every lane, masked in place (one vpandd), is
// the integer u·16^k, which vcvtudq2ps converts exactly (four significant
// bits); the activation under it was stored as x·16^−k, so one FMA adds u·x
// with a single rounding. Eight mask-convert-FMA triples cover a step, and no
// shuffle decodes a weight: gemv_int4_block above spends three shuffles per
// 32 weights.
//
// bfloat16 activations (int4_step_lanes.hpp): nibble k of every 16-bit word,
// shifted to the word's low bits and given the exponent of 1.0 (one shift and
// one vpternlogd), is the bfloat16 1 + u/128; with 128·x̃ stored under it, a
// vdpbf16ps adds 128·x̃ + u·x̃ for 32 weights, four per step where the float
// step takes eight conversions and eight FMAs (docs/performance.md,
// "bfloat16 activations").
//
// The scale and the offset apply per group as s·Σu·x + offset·Σx (offset =
// −8·s for symmetric int4), the bfloat16 step's 128·Σx̃ taken off with the
// offset's. One row at a time: a single stream from DRAM. Columns must be
// whole steps.

// What one row's chunk of steps reads, for the Nibbles below.
template <typename Nibbles>
struct Int4LaneChunk {
  const Nibbles& nibbles;
  const std::uint8_t* bytes;                // the row's 64 bytes at the chunk's first step
  const typename Nibbles::Lane* lanes;      // the activations' 128 at that step
  RowPrefetch prefetch;
  Eigen::Index r, first_step;
};

// Float activations: Σ over a step's 128 columns of u·x, in 16 lanes (lane l:
// block l/4's columns). The nibble masks stay in registers: GCC otherwise
// builds them again in every step.
struct FloatNibbles {
  using Lane = float;
  using Lanes = Int4StepLanes;
  static constexpr float bias = 0.0f;  // what the step adds per unit of Σx besides Σu·x
  __m512i masks[8];                    // nibble k of every lane: 0xF << 4k

  DILEMMA_QUANT_TARGET_AVX512 FloatNibbles() {
    for (int k = 0; k < 8; ++k) {
      masks[k] = _mm512_set1_epi32(0xF << (4 * k));
      asm("" : "+v"(masks[k]));
    }
  }

  DILEMMA_QUANT_TARGET_AVX512 __attribute__((always_inline)) __m512 step(__m512i bytes, const float* x) const {
    // u·16^k of nibble k in every lane
    const auto nibble = [&](int k) DILEMMA_QUANT_TARGET_AVX512 {
      return _mm512_cvtepu32_ps(_mm512_and_si512(bytes, masks[k]));
    };
    // Two chains of four, so that the FMAs' latency overlaps. Written out: as a
    // loop, GCC 12 kept the loop and read the nibble masks from the stack, and a
    // scratch copy of that step streamed DRAM at less than half the speed on
    // the Zen 5 host (docs/performance.md, "A Zen 5 host").
    __m512 even = _mm512_mul_ps(nibble(0), _mm512_loadu_ps(x));
    __m512 odd = _mm512_mul_ps(nibble(1), _mm512_loadu_ps(x + 16));
    even = _mm512_fmadd_ps(nibble(2), _mm512_loadu_ps(x + 32), even);
    odd = _mm512_fmadd_ps(nibble(3), _mm512_loadu_ps(x + 48), odd);
    even = _mm512_fmadd_ps(nibble(4), _mm512_loadu_ps(x + 64), even);
    odd = _mm512_fmadd_ps(nibble(5), _mm512_loadu_ps(x + 80), odd);
    even = _mm512_fmadd_ps(nibble(6), _mm512_loadu_ps(x + 96), even);
    odd = _mm512_fmadd_ps(nibble(7), _mm512_loadu_ps(x + 112), odd);
    return _mm512_add_ps(even, odd);
  }
};

// acc + a·b of each pair of bfloat16 (vdpbf16ps), b read from memory. Inline
// assembly rather than the intrinsic: the intrinsic needs the avx512bf16
// target on every function it is inlined into, and the row loops below are
// shared with the float step, whose functions must run on CPUs without BF16
// (a target attribute cannot depend on a template argument). Callers check
// cpu_has_avx512_bf16().
DILEMMA_QUANT_TARGET_AVX512 __attribute__((always_inline)) inline __m512 dot_bf16_pairs(__m512 acc, __m512i a,
                                                                                      const std::uint16_t* b) {
  asm("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "m"(*reinterpret_cast<const __m512i*>(b)));
  return acc;
}

// bfloat16 activations: Σ over a step's 128 columns of (128 + u)·x̃, in 16
// lanes, as the float step's.
struct Bf16Nibbles {
  using Lane = std::uint16_t;
  using Lanes = Int4Bf16StepLanes;
  static constexpr float bias = 128.0f;
  __m512i low_nibble;  // 0x000F in every word
  __m512i one;         // the bfloat16 1.0, 0x3F80, in every word

  DILEMMA_QUANT_TARGET_AVX512 Bf16Nibbles()
      : low_nibble(_mm512_set1_epi16(0x000F)), one(_mm512_set1_epi16(0x3F80)) {
    asm("" : "+v"(low_nibble), "+v"(one));
  }

  DILEMMA_QUANT_TARGET_AVX512 __attribute__((always_inline)) __m512 step(__m512i bytes,
                                                                         const std::uint16_t* x) const {
    // (v & 0x000F) | 0x3F80 in every word: the bfloat16 1 + u/128 of its low nibble
    const auto nibble = [&](__m512i v) DILEMMA_QUANT_TARGET_AVX512 {
      return _mm512_ternarylogic_epi32(v, low_nibble, one, 0xEA);
    };
    const __m512 zero = _mm512_setzero_ps();
    __m512 even = dot_bf16_pairs(zero, nibble(bytes), x);
    __m512 odd = dot_bf16_pairs(zero, nibble(_mm512_srli_epi16(bytes, 4)), x + 32);
    even = dot_bf16_pairs(even, nibble(_mm512_srli_epi16(bytes, 8)), x + 64);
    odd = dot_bf16_pairs(odd, _mm512_or_si512(_mm512_srli_epi16(bytes, 12), one), x + 96);
    return _mm512_add_ps(even, odd);
  }
};

// The float layout of activations x for `steps` steps (int4_step_lanes.hpp;
// steps from int4_float_steps), the same floats as lay_out_int4_step_lanes
// there. Vector k of a step holds, block after block, elements k/2, 4 + k/2,
// 8 + k/2 and 12 + k/2 of the block's first (k even) or second half (k odd),
// times 16^−k: per half of the four blocks, a transpose of 4 × 4 floats in
// two-source permutations. The plain loop took 0.5 µs of a 1024-column
// product and 1.8 µs of a 4096-column one on the Zen 5 host.
DILEMMA_QUANT_TARGET_AVX512 inline Int4StepLanes lay_out_int4_step_lanes(const float* x, Eigen::Index steps) {
  Int4StepLanes out{steps, CacheLineVector<float>(static_cast<std::size_t>(int4_step * steps))};
  // From halves a and b (element 4m + j): element j of a's four groups of four, then of b's, for j = 0 and 1.
  const __m512i columns_01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i columns_23 = _mm512_add_epi32(columns_01, _mm512_set1_epi32(2));  // … for j = 2 and 3
  for (Eigen::Index s = 0; s < steps; ++s) {
    const float* step_x = x + int4_step * s;
    float* lanes = out.lanes.data() + int4_step * s;
    for (int half = 0; half < 2; ++half) {
      const auto block_half = [&](int block) DILEMMA_QUANT_TARGET_AVX512 {
        return _mm512_loadu_ps(step_x + 32 * block + 16 * half);
      };
      const __m512 first_01 = _mm512_permutex2var_ps(block_half(0), columns_01, block_half(1));
      const __m512 last_01 = _mm512_permutex2var_ps(block_half(2), columns_01, block_half(3));
      const __m512 first_23 = _mm512_permutex2var_ps(block_half(0), columns_23, block_half(1));
      const __m512 last_23 = _mm512_permutex2var_ps(block_half(2), columns_23, block_half(3));
      // Vector k = 2j + half, scaled by 16^−k.
      const auto store = [&](int j, __m512 vector) DILEMMA_QUANT_TARGET_AVX512 {
        const int k = 2 * j + half;
        _mm512_store_ps(lanes + 16 * k, _mm512_mul_ps(vector, _mm512_set1_ps(step_lane_map.scale[16 * k])));
      };
      store(0, _mm512_shuffle_f32x4(first_01, last_01, 0x44));
      store(1, _mm512_shuffle_f32x4(first_01, last_01, 0xEE));
      store(2, _mm512_shuffle_f32x4(first_23, last_23, 0x44));
      store(3, _mm512_shuffle_f32x4(first_23, last_23, 0xEE));
    }
  }
  return out;
}

// The bfloat16 layout of activations x for `steps` steps (int4_step_lanes.hpp;
// steps from int4_bf16_steps). x̃ rounds as round_to_bf16 does, which the
// range check of int4_bf16_steps leaves free of NaN and ±inf. A step's
// vector k holds, block after block, the even (k = 0, 1) or odd (k = 2, 3)
// columns of the block's first (k = 0, 2) or second half (k = 1, 3): the
// float whose upper 16 bits are the bfloat16 goes through one two-source
// word permutation per pair of halves and one 256-bit shuffle per vector.
// A table-driven loop like the float layout's took 0.4 ns per column here: 3 %
// of a 1024 × 1024 product's time from L2 on the Zen 5 host.
DILEMMA_QUANT_TARGET_AVX512 inline Int4Bf16StepLanes lay_out_int4_bf16_step_lanes(const float* x,
                                                                                Eigen::Index steps) {
  Int4Bf16StepLanes out{steps, std::vector<float>(static_cast<std::size_t>(int4_step * steps)),
                        CacheLineVector<std::uint16_t>(static_cast<std::size_t>(int4_step * steps))};
  // Upper words of dwords 0, 2, … 14 of a, then of b, then of dwords 1, 3, … 15 of a and of b.
  alignas(64) static constexpr std::array<std::uint16_t, 32> halves_to_parities = [] {
    std::array<std::uint16_t, 32> words{};
    for (std::uint16_t m = 0; m < 8; ++m) {
      words[m] = static_cast<std::uint16_t>(4 * m + 1);
      words[8 + m] = static_cast<std::uint16_t>(32 + 4 * m + 1);
      words[16 + m] = static_cast<std::uint16_t>(4 * m + 3);
      words[24 + m] = static_cast<std::uint16_t>(32 + 4 * m + 3);
    }
    return words;
  }();
  const __m512i pick = _mm512_load_si512(halves_to_parities.data());
  const __m512i rounding_bias = _mm512_set1_epi32(0x7FFF), lowest_kept = _mm512_set1_epi32(1);
  const __m512i kept = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  const __m512 scale = _mm512_set1_ps(128.0f);
  for (Eigen::Index s = 0; s < steps; ++s) {
    __m512i halves[8];  // 128·x̃ of columns 16i … 16i + 15 of the step
    for (int i = 0; i < 8; ++i) {
      const Eigen::Index column = int4_step * s + 16 * i;
      const __m512i bits = _mm512_castps_si512(_mm512_loadu_ps(x + column));
      const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), lowest_kept);
      const __m512 rounded =
          _mm512_castsi512_ps(_mm512_and_si512(_mm512_add_epi32(bits, _mm512_add_epi32(rounding_bias, odd)), kept));
      _mm512_storeu_ps(out.rounded.data() + column, rounded);
      halves[i] = _mm512_castps_si512(_mm512_mul_ps(rounded, scale));
    }
    // First halves (0, 2, 4, 6) give vectors 0 and 2, second halves vectors 1 and 3.
    const __m512i first_01 = _mm512_permutex2var_epi16(halves[0], pick, halves[2]);
    const __m512i first_23 = _mm512_permutex2var_epi16(halves[4], pick, halves[6]);
    const __m512i second_01 = _mm512_permutex2var_epi16(halves[1], pick, halves[3]);
    const __m512i second_23 = _mm512_permutex2var_epi16(halves[5], pick, halves[7]);
    std::uint16_t* lanes = out.lanes.data() + int4_step * s;
    _mm512_store_si512(lanes, _mm512_shuffle_i64x2(first_01, first_23, 0x44));
    _mm512_store_si512(lanes + 32, _mm512_shuffle_i64x2(second_01, second_23, 0x44));
    _mm512_store_si512(lanes + 64, _mm512_shuffle_i64x2(first_01, first_23, 0xEE));
    _mm512_store_si512(lanes + 96, _mm512_shuffle_i64x2(second_01, second_23, 0xEE));
  }
  return out;
}

template <int K, typename Nibbles>
DILEMMA_QUANT_TARGET_AVX512 __attribute__((always_inline)) inline __m512 int4_lane_step(
    const Int4LaneChunk<Nibbles>& chunk) {
  prefetch_rows<1>(chunk.prefetch, chunk.r, 64 * (chunk.first_step + K));
  return chunk.nibbles.step(load_step_bytes(chunk.bytes + 64 * K), chunk.lanes + int4_step * K);
}

// Steps K … Steps − 1 of a chunk, unrolled, each scaled by its lanes' groups.
template <int K, int Steps, int GroupsPerStep, typename Nibbles>
DILEMMA_QUANT_TARGET_AVX512 __attribute__((always_inline)) inline void int4_lane_chunk_steps(
    const Int4LaneChunk<Nibbles>& chunk, __m512 group_scale, __m512& total) {
  if constexpr (K < Steps) {
    total = _mm512_fmadd_ps(int4_lane_step<K>(chunk),
                            _mm512_permutexvar_ps(step_lane_groups<K, GroupsPerStep>(), group_scale), total);
    int4_lane_chunk_steps<K + 1, Steps, GroupsPerStep>(chunk, group_scale, total);
  }
}

// Groups of 32 or 64 columns: per chunk of StepsPerChunk steps, the chunk's
// group scales in one register, and vpermps hands each step's lanes theirs.
template <typename Nibbles, bool Asymmetric, int GroupsPerStep, int StepsPerChunk>
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_int4_lanes_small_groups(const WeightView& w,
                                                                     const typename Nibbles::Lanes& x,
                                                                     const float* group_sums, RowSums& sums,
                                                                     Eigen::Index begin, Eigen::Index end) {
  constexpr Eigen::Index groups_per_chunk = GroupsPerStep * StepsPerChunk;
  static_assert(groups_per_chunk <= int4_step_group_chunk);
  const __mmask16 in_chunk = tail_mask(groups_per_chunk);
  const Nibbles nibbles;
  Int4LaneChunk<Nibbles> chunk{nibbles, nullptr, nullptr, RowPrefetch(w), begin, 0};
  for (Int4RowBlock block(w, begin); chunk.r < end; ++chunk.r, block.advance(1, w.stride)) {
    __m512 total = _mm512_setzero_ps(), offset_total = _mm512_setzero_ps();
    for (Eigen::Index s = 0; s < x.steps; s += StepsPerChunk) {
      const Eigen::Index first_group = s * GroupsPerStep;
      const __m512 group_scale = _mm512_maskz_loadu_ps(in_chunk, block.scales + first_group);
      __m512 offset = group_scale;
      if constexpr (Asymmetric) {
        offset = _mm512_maskz_loadu_ps(in_chunk, block.offsets + first_group);
        if constexpr (Nibbles::bias != 0.0f) {
          offset = _mm512_fnmadd_ps(group_scale, _mm512_set1_ps(Nibbles::bias), offset);
        }
      }
      offset_total = _mm512_fmadd_ps(offset, _mm512_maskz_loadu_ps(in_chunk, group_sums + first_group), offset_total);
      chunk.bytes = block.packed + 64 * s;
      chunk.lanes = x.lanes.data() + int4_step * s;
      chunk.first_step = s;
      int4_lane_chunk_steps<0, StepsPerChunk, GroupsPerStep>(chunk, group_scale, total);
    }
    // The symmetric offsets' −8 (and the bias) was left out of the sum above, which took the scales.
    sums.add(_mm512_fmadd_ps(offset_total, _mm512_set1_ps(Asymmetric ? 1.0f : -8.0f - Nibbles::bias), total));
  }
}

// Groups of a multiple of 128 columns: the steps of a group add up before its scale.
template <typename Nibbles, bool Asymmetric>
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_int4_lanes_large_groups(const WeightView& w,
                                                                     const typename Nibbles::Lanes& x,
                                                                     const float* group_sums, RowSums& sums,
                                                                     Eigen::Index begin, Eigen::Index end) {
  const Eigen::Index steps_per_group = w.group_size / int4_step, groups = w.groups();
  const Nibbles nibbles;
  Int4LaneChunk<Nibbles> chunk{nibbles, nullptr, nullptr, RowPrefetch(w), begin, 0};
  for (Int4RowBlock block(w, begin); chunk.r < end; ++chunk.r, block.advance(1, w.stride)) {
    __m512 total = _mm512_setzero_ps();
    float offset_total = 0.0f;
    for (Eigen::Index g = 0, s = 0; g < groups; ++g) {
      __m512 dot = _mm512_setzero_ps();
      for (const Eigen::Index group_end = s + steps_per_group; s < group_end; ++s) {
        chunk.bytes = block.packed + 64 * s;
        chunk.lanes = x.lanes.data() + int4_step * s;
        chunk.first_step = s;
        dot = _mm512_add_ps(dot, int4_lane_step<0>(chunk));
      }
      const float scale = block.scales[g];
      total = _mm512_fmadd_ps(dot, _mm512_set1_ps(scale), total);
      const float offset = Asymmetric ? block.offsets[g] - Nibbles::bias * scale : (-8.0f - Nibbles::bias) * scale;
      offset_total = std::fma(offset, group_sums[g], offset_total);
    }
    sums.add(total, offset_total);
  }
}

// y[r] for r in [begin, end) of an int4 weight, on activations laid out by
// lay_out_int4_step_lanes (Int4StepLanes) or lay_out_int4_bf16_step_lanes
// (Int4Bf16StepLanes, on CPUs with AVX-512 BF16 only); `group_sums`: Σ x
// (Σ x̃) over each group.
template <typename Lanes>
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_rows_int4_lanes(const WeightView& w, const Lanes& x,
                                                            const float* group_sums, float* y, Eigen::Index begin,
                                                            Eigen::Index end) {
  using Nibbles = std::conditional_t<std::is_same_v<Lanes, Int4StepLanes>, FloatNibbles, Bf16Nibbles>;
  static_assert(std::is_same_v<typename Nibbles::Lanes, Lanes>);
  RowSums sums(y + begin);
  auto rows = [&]<bool Asymmetric>() {
    if (w.group_size >= int4_step) {
      gemv_int4_lanes_large_groups<Nibbles, Asymmetric>(w, x, group_sums, sums, begin, end);
      return;
    }
    auto chunks = [&]<int GroupsPerStep>() {
      with_whole_chunks<GroupsPerStep>(x.steps, [&]<int StepsPerChunk>() {
        gemv_int4_lanes_small_groups<Nibbles, Asymmetric, GroupsPerStep, StepsPerChunk>(w, x, group_sums, sums,
                                                                                         begin, end);
      });
    };
    if (w.group_size == 32) {
      chunks.template operator()<4>();
    } else {
      chunks.template operator()<2>();
    }
  };
  if (w.asymmetric) {
    rows.template operator()<true>();
  } else {
    rows.template operator()<false>();
  }
  sums.flush();
}

// y[r] for r in [begin, end).
DILEMMA_QUANT_TARGET_AVX512 inline void gemv_rows(const WeightView& w, const float* x, float* y, Eigen::Index begin,
                                                  Eigen::Index end) {
  const RowPrefetch prefetch(w);
  Eigen::Index r = begin;
  if (w.format == Format::int4 || w.cols >= 2048) {
    for (; r + 8 <= end; r += 8) gemv_block<8>(w, x, y, r, prefetch);
    for (; r + 4 <= end; r += 4) gemv_block<4>(w, x, y, r, prefetch);
    for (; r < end; ++r) gemv_block<1>(w, x, y, r, prefetch);
    return;
  }
  for (; r < end; ++r) {
    if (w.format == Format::f32) {
      gemv_float<Format::f32>(w, x, y, r, prefetch);
    } else if (w.format == Format::f16) {
      gemv_float<Format::f16>(w, x, y, r, prefetch);
    } else {
      gemv_int8(w, x, y, r, prefetch);
    }
  }
}

// Rows [begin, end) of Ŵ into `out`, row-major [(end − begin) × cols].
DILEMMA_QUANT_TARGET_AVX512 inline void dequantize_rows(const WeightView& w, Eigen::Index begin, Eigen::Index end,
                                                        float* out) {
  for (Eigen::Index r = begin; r < end; ++r, out += w.cols) {
    switch (w.format) {
      case Format::f32: std::copy_n(w.f32_row(r), w.cols, out); break;
      case Format::f16: {
        Eigen::Index c = 0;
        for (; c + 16 <= w.cols; c += 16) _mm512_storeu_ps(out + c, load_float_weights<Format::f16>(w, r, c));
        if (c < w.cols) {
          const __mmask16 mask = tail_mask(w.cols - c);
          _mm512_mask_storeu_ps(out + c, mask, load_float_weights<Format::f16>(w, r, c, mask));
        }
        break;
      }
      case Format::int8: {
        for (Eigen::Index c = 0; c < w.cols; c += 16) {
          const __m512 scale = _mm512_set1_ps(w.scales_row(r)[c / w.group_size]);
          _mm512_storeu_ps(out + c, _mm512_mul_ps(load_int8x16(w.int8_row(r) + c), scale));
        }
        break;
      }
      case Format::int4: {
        for (Eigen::Index g = 0; g < w.groups(); ++g) {
          const __m512 table = int4_table(w.scales_row(r)[g], w.int4_offset(r, g));
          for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; c += int4_block) {
            const Int4Block block = decode_int4_block(w.int4_row(r) + c / 2, table);
            _mm512_storeu_ps(out + c, block.low);
            _mm512_storeu_ps(out + c + 16, block.high);
          }
        }
        break;
      }
    }
  }
}

// ---- rounding activations to int8 (activations.hpp) ----
//
// quant::quantize_activations' operations in 16 lanes, so that the codes,
// scales and sums are the reference's bit for bit (tested): the same division
// by the scale, and rounding half away from zero as truncation plus a step
// away from zero where the part truncated, x/s − trunc(x/s) (exact in
// float), is at least one half. All groups' scales come first and then all
// codes: within a group the codes wait on the scale and the scale on a
// horizontal maximum, and the two passes let consecutive groups' chains
// overlap (a one-pass version was about 1.3 times as slow). On the Zen 5
// host, 4096 activations in groups of 64 took 1.3 µs against the reference's
// 2.4 µs (docs/performance.md, "Rounding activations to int8 in SIMD").

// The int32 codes of x: x / scale rounded half away from zero, within ±127.
DILEMMA_QUANT_TARGET_AVX512 inline __m512i round_activation_codes(__m512 x, __m512 scale) {
  const __m512 ratio = _mm512_div_ps(x, scale);
  const __m512 truncated = _mm512_roundscale_ps(ratio, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 away =
      _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(ratio, truncated)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  // ±1 with the sign of the ratio.
  const __m512 unit = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(ratio), _mm512_set1_epi32(INT32_MIN)),
                      _mm512_castps_si512(_mm512_set1_ps(1.0f))));
  const __m512 rounded = _mm512_mask_add_ps(truncated, away, truncated, unit);
  return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(rounded, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f)));
}

DILEMMA_QUANT_TARGET_AVX512 inline QuantizedActivations quantize_activations(std::span<const float> x,
                                                                              Eigen::Index group_size) {
  QuantizedActivations q = unfilled_activations(x, group_size);
  const auto groups = static_cast<Eigen::Index>(q.scales.size());
  const __m512 largest = _mm512_set1_ps(std::numeric_limits<float>::max());
  for (Eigen::Index g = 0; g < groups; ++g) {
    const float* group = x.data() + g * group_size;
    __m512 magnitude = _mm512_setzero_ps();
    __mmask16 finite = 0xFFFF;
    for (Eigen::Index i = 0; i < group_size; i += 16) {
      const __m512 value = _mm512_abs_ps(_mm512_maskz_loadu_ps(tail_mask(std::min<Eigen::Index>(16, group_size - i)),
                                                               group + i));
      finite &= _mm512_cmp_ps_mask(value, largest, _CMP_LE_OQ);  // false for ±inf and NaN
      magnitude = _mm512_max_ps(magnitude, value);
    }
    const auto first = static_cast<std::size_t>(g * group_size);
    if (finite != 0xFFFF) fail_non_finite_activation(x, first, static_cast<std::size_t>(group_size));
    q.scales[static_cast<std::size_t>(g)] = _mm512_reduce_max_ps(magnitude) / 127.0f;
  }
  for (Eigen::Index g = 0; g < groups; ++g) {
    const float scale = q.scales[static_cast<std::size_t>(g)];
    if (scale == 0) continue;  // codes and sum stay 0
    const float* group = x.data() + g * group_size;
    std::int8_t* codes = q.codes.data() + g * group_size;
    __m512i sum = _mm512_setzero_si512();
    for (Eigen::Index i = 0; i < group_size; i += 16) {
      const __mmask16 lanes = tail_mask(std::min<Eigen::Index>(16, group_size - i));
      const __m512i code = round_activation_codes(_mm512_maskz_loadu_ps(lanes, group + i), _mm512_set1_ps(scale));
      sum = _mm512_add_epi32(sum, code);
      _mm512_mask_cvtsepi32_storeu_epi8(codes + i, lanes, code);
    }
    q.sums[static_cast<std::size_t>(g)] = _mm512_reduce_add_epi32(sum);
  }
  return q;
}

// ---- int8 activations (activations.hpp), AVX-512 VNNI ----
//
// vpdpbusd multiplies unsigned bytes with signed bytes and adds groups of four
// products into int32 lanes in one instruction. int4 codes are unsigned
// nibbles already. 256-bit registers: one int4 block (32 weights) is one
// register, so any group size that is a multiple of 32 needs no reordering.
// One row at a time, as gemv_float above.

// Row r's Σ_c ŵ[r][c] · x̂_c over groups first_group … groups − 1 only.
DILEMMA_QUANT_TARGET_AVX512_VNNI inline float int4_int8_activations_dot(const WeightView& w,
                                                                        const QuantizedActivations& x, Eigen::Index r,
                                                                        RowPrefetch prefetch,
                                                                        Eigen::Index first_group = 0) {
  const std::uint8_t* const row = w.int4_row(r);
  __m256 total = _mm256_setzero_ps();
  float offset_term = 0.0f;
  for (Eigen::Index g = first_group; g < w.groups(); ++g) {
    const auto group = static_cast<std::size_t>(g);
    __m256i dot = _mm256_setzero_si256();
    for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; c += int4_block) {
      if (c % 128 == 0) prefetch_rows<1>(prefetch, r, c / 2);
      const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.codes.data() + c));
      dot = _mm256_dpbusd_epi32(dot, avx2::int4_block_bytes(row + c / 2), codes);
    }
    total = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(w.scales_row(r)[g] * x.scales[group]), total);
    offset_term = std::fma(w.int4_offset(r, g) * x.scales[group], static_cast<float>(x.sums[group]), offset_term);
  }
  return avx2::horizontal_sum(total) + offset_term;
}

// ---- int8 weights, int8 activations, one unsigned operand by a bias ----
//
// vpdpbusd wants one operand unsigned. The AVX2 kernel makes the weights
// unsigned with vpabsb and moves their signs to the codes with vpsignb: two
// more instructions per 32 weights. Flipping each weight byte's top bit instead
// (w ^ 0x80 = w + 128 as an unsigned byte) costs one, with the load folded in,
// and Σ (w + 128)·q = Σ w·q + 128·Σq is corrected by the group's code sum,
// which the activations carry: the dot products stay exact in int32 (at most
// 255·127·65536 < 2^31 in magnitude, the largest group of activations). Bits
// is 512 (64 weights per instruction; G a multiple of 64) or 256 (32; any G,
// a multiple of 32).

template <int Bits>
struct ByteVector;

template <>
struct ByteVector<512> {
  static constexpr Eigen::Index bytes = 64;
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512i load(const void* p) { return _mm512_loadu_si512(p); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512i top_bits() { return _mm512_set1_epi8(static_cast<char>(0x80)); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512i flip(__m512i a, __m512i b) { return _mm512_xor_si512(a, b); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512i first_lane(std::int32_t v) { return _mm512_maskz_set1_epi32(1, v); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512i dot(__m512i acc, __m512i u, __m512i s) {
    return _mm512_dpbusd_epi32(acc, u, s);
  }
  // total + float(dot)·scale, lane by lane
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512 scale_add(__m512i dot, float scale, __m512 total) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(scale), total);
  }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512 zero_floats() { return _mm512_setzero_ps(); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512 widen(__m512 v) { return v; }
};

template <>
struct ByteVector<256> {
  static constexpr Eigen::Index bytes = 32;
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m256i load(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
  }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m256i top_bits() { return _mm256_set1_epi8(static_cast<char>(0x80)); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m256i flip(__m256i a, __m256i b) { return _mm256_xor_si256(a, b); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m256i first_lane(std::int32_t v) { return _mm256_maskz_set1_epi32(1, v); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m256i dot(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(acc, u, s);
  }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m256 scale_add(__m256i dot, float scale, __m256 total) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(scale), total);
  }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m256 zero_floats() { return _mm256_setzero_ps(); }
  DILEMMA_QUANT_TARGET_AVX512_VNNI static __m512 widen(__m256 v) { return _mm512_zextps256_ps512(v); }
};

// Blocks of Rows rows into `sums`, as gemv_int4_steps_small_groups below.
template <int Bits, int Rows>
DILEMMA_QUANT_TARGET_AVX512_VNNI inline Eigen::Index gemv_int8_weights_biased(const WeightView& w,
                                                                              const QuantizedActivations& x,
                                                                              RowSums& sums, Eigen::Index begin,
                                                                              Eigen::Index end, RowPrefetch prefetch) {
  using V = ByteVector<Bits>;
  const auto top_bits = V::top_bits();
  const Eigen::Index stride = w.stride, parameter_stride = w.parameter_stride(), groups = w.groups();
  Eigen::Index r0 = begin;
  for (; r0 + Rows <= end; r0 += Rows) {
    const std::int8_t* const weights = w.int8_row(r0);
    const float* const scales = w.scales_row(r0);
    decltype(V::zero_floats()) total[Rows];
    for (int i = 0; i < Rows; ++i) total[i] = V::zero_floats();
    for (Eigen::Index g = 0; g < groups; ++g) {
      const auto group = static_cast<std::size_t>(g);
      // Each dot product starts from −128·Σq, the bias's share, so that it sums Σ w·q exactly in int32.
      const auto start = V::first_lane(-128 * x.sums[group]);
      decltype(V::first_lane(0)) dot[Rows];
      for (int i = 0; i < Rows; ++i) dot[i] = start;
      for (Eigen::Index c = g * w.group_size; c < (g + 1) * w.group_size; c += V::bytes) {
        if (c % 64 == 0) prefetch_rows<Rows>(prefetch, r0, c);
        const auto codes = V::load(x.codes.data() + c);
        for (int i = 0; i < Rows; ++i) {
          dot[i] = V::dot(dot[i], V::flip(V::load(weights + i * stride + c), top_bits), codes);
        }
      }
      for (int i = 0; i < Rows; ++i) {
        total[i] = V::scale_add(dot[i], scales[i * parameter_stride + g] * x.scales[group], total[i]);
      }
    }
    for (int i = 0; i < Rows; ++i) sums.add(V::widen(total[i]));
  }
  return r0;
}

// ---- int4 weights, int8 activations, 128 columns per step ----
//
// The steps of "int4 rows in steps of 128 columns" above: a step's low nibbles
// are one mask and its high nibbles a shift and a mask, and two vpdpbusd
// multiply them with activation codes laid out once per product in the same
// order (int4_step_codes.hpp). int32 lane l then sums block l/4's columns.
//
// On this project's Zen 4 host a 512-bit operation issues at one per cycle
// (masks at two), so a step costs about as many cycles as it has operations.
// Whatever depends on the group and not on the step stays out of the step
// loop: the weight scale times the activation scale is formed once per group,
// and the offsets (−8·s_w for symmetric int4, whose codes are u = q + 8) are
// summed once per row as Σ_g offset_g · s_g·Σq_g, instead of an int32 bias and
// a product of scales in every step (docs/performance.md, "Prefetching into L2").

// dot + the lane-wise products of one row's 64 bytes with a step's codes.
DILEMMA_QUANT_TARGET_AVX512_VNNI inline __m512i int4_step_dot(__m512i dot, __m512i bytes, __m512i low_codes,
                                                              __m512i high_codes,
                                                              __m512i nibble = _mm512_set1_epi8(0x0F)) {
  dot = _mm512_dpbusd_epi32(dot, _mm512_and_si512(bytes, nibble), low_codes);
  return _mm512_dpbusd_epi32(dot, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), nibble), high_codes);
}

// What the steps of one chunk of groups (below) read, for a block of Rows rows.
template <int Rows>
struct Int4ChunkSteps {
  const std::uint8_t* bytes;  // the first row's 64 bytes at the chunk's first step
  const std::int8_t* low_codes;
  const std::int8_t* high_codes;
  Eigen::Index stride;  // bytes from one row to the next
  __m512i nibble;             // 0x0F in every byte
  __m512 group_scale[Rows];  // per row, the chunk's 16 group scales times the activation scales
  RowPrefetch prefetch;
  Eigen::Index r0, first_step;
};

// Steps K … Steps − 1 of a chunk, unrolled (step_lane_groups).
template <int K, int Steps, int Rows, int GroupsPerStep>
DILEMMA_QUANT_TARGET_AVX512_VNNI __attribute__((always_inline)) inline void int4_chunk_steps(
    const Int4ChunkSteps<Rows>& chunk, __m512 (&total)[Rows]) {
  if constexpr (K < Steps) {
    const __m512i lane_group = step_lane_groups<K, GroupsPerStep>();
    prefetch_rows<Rows>(chunk.prefetch, chunk.r0, 64 * (chunk.first_step + K));
    const __m512i low_codes = _mm512_loadu_si512(chunk.low_codes + 64 * K);
    const __m512i high_codes = _mm512_loadu_si512(chunk.high_codes + 64 * K);
    for (int i = 0; i < Rows; ++i) {
      const __m512i dot = int4_step_dot(_mm512_setzero_si512(),
                                        load_step_bytes(chunk.bytes + 64 * K + i * chunk.stride), low_codes,
                                        high_codes, chunk.nibble);
      total[i] =
          _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(lane_group, chunk.group_scale[i]), total[i]);
    }
    int4_chunk_steps<K + 1, Steps, Rows, GroupsPerStep>(chunk, total);
  }
}

// Rows of one chunk of at most four steps (lm_head's 512 columns: four steps,
// eight groups of 64): the codes, their scales and their sums are the same for
// every row, so they stay in registers and a row costs its steps and a few
// operations more. The general kernel below reloads them per chunk, which for
// such rows took about as many instructions around the steps as in them. At
// eight steps (1024 columns) the sixteen code registers made it slower than
// the general kernel, which reads the codes as memory operands.
template <bool Asymmetric, int GroupsPerStep, int Steps>
DILEMMA_QUANT_TARGET_AVX512_VNNI inline Eigen::Index gemv_int4_steps_one_chunk(const WeightView& w,
                                                                               const Int4StepCodes& codes,
                                                                               RowSums& sums, Eigen::Index begin,
                                                                               Eigen::Index end, RowPrefetch prefetch) {
  static_assert(GroupsPerStep * Steps <= int4_step_group_chunk);
  const __mmask16 in_row = tail_mask(GroupsPerStep * Steps);
  __m512i low_codes[Steps];
  __m512i high_codes[Steps];
  for (int k = 0; k < Steps; ++k) {
    low_codes[k] = _mm512_loadu_si512(codes.low.data() + 64 * k);
    high_codes[k] = _mm512_loadu_si512(codes.high.data() + 64 * k);
  }
  const __m512 code_scale = _mm512_maskz_loadu_ps(in_row, codes.scale.data());
  // The symmetric offsets' −8 (as in the kernel below) folded into the code sums.
  const __m512 scaled_sum =
      _mm512_mul_ps(_mm512_maskz_loadu_ps(in_row, codes.scaled_sum.data()), _mm512_set1_ps(Asymmetric ? 1.0f : -8.0f));
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  Int4RowBlock block(w, begin);
  for (Eigen::Index r = begin; r < end; ++r, block.advance(1, w.stride)) {
    const __m512 weight_scale = _mm512_maskz_loadu_ps(in_row, block.scales);
    const __m512 group_scale = _mm512_mul_ps(weight_scale, code_scale);
    const __m512 offset = Asymmetric ? _mm512_maskz_loadu_ps(in_row, block.offsets) : weight_scale;
    __m512 total = _mm512_mul_ps(offset, scaled_sum);
    [&]<int... K>(std::integer_sequence<int, K...>) DILEMMA_QUANT_TARGET_AVX512_VNNI {
      ((prefetch_rows<1>(prefetch, r, 64 * K),
        total = _mm512_fmadd_ps(_mm512_cvtepi32_ps(int4_step_dot(_mm512_setzero_si512(),
                                                                 load_step_bytes(block.packed + 64 * K),
                                                                 low_codes[K], high_codes[K], nibble)),
                                _mm512_permutexvar_ps(step_lane_groups<K, GroupsPerStep>(), group_scale), total)),
       ...);
    }(std::make_integer_sequence<int, Steps>{});
    sums.add(total);
  }
  return end;
}

// Groups of 32 or 64 columns: the group scales are formed a chunk of
// StepsPerChunk steps (with_whole_chunks) at a time, and vpermps hands each
// step's lanes theirs. The steps here, the groups after the last whole step by
// int4_int8_activations_dot. Asymmetric is a template parameter because a
// run-time test inside the row loop made GCC keep the accumulators in memory.
// This and the kernels below take the blocks of Rows rows from `begin` on
// while a whole block fits before `end`, and return the first row not done:
// the loop over blocks inside the kernel keeps its constants in registers.
template <int Rows, bool Asymmetric, int GroupsPerStep, int StepsPerChunk>
DILEMMA_QUANT_TARGET_AVX512_VNNI inline Eigen::Index gemv_int4_steps_small_groups(
    const WeightView& w, const QuantizedActivations& x, const Int4StepCodes& codes, RowSums& sums, Eigen::Index begin,
    Eigen::Index end, RowPrefetch prefetch) {
  constexpr Eigen::Index groups_per_chunk = GroupsPerStep * StepsPerChunk;
  static_assert(groups_per_chunk <= int4_step_group_chunk);
  if constexpr (Rows == 1 && StepsPerChunk <= 4) {
    if (codes.steps == StepsPerChunk && w.groups() == groups_per_chunk) {
      return gemv_int4_steps_one_chunk<Asymmetric, GroupsPerStep, StepsPerChunk>(w, codes, sums, begin, end, prefetch);
    }
  }
  const __mmask16 in_chunk = tail_mask(groups_per_chunk);
  const __m512 offset_factor = _mm512_set1_ps(Asymmetric ? 1.0f : -8.0f);  // see the end of a block
  const Eigen::Index stride = w.stride, parameter_stride = w.parameter_stride(), groups = w.groups();
  const Eigen::Index tail_group = codes.steps * GroupsPerStep;
  Int4ChunkSteps<Rows> chunk{.bytes = nullptr,
                             .low_codes = nullptr,
                             .high_codes = nullptr,
                             .stride = stride,
                             .nibble = _mm512_set1_epi8(0x0F),
                             .group_scale = {},
                             .prefetch = prefetch,
                             .r0 = begin,
                             .first_step = 0};
  // In a register: GCC otherwise builds the constant again in every step.
  asm("" : "+v"(chunk.nibble));
  Int4RowBlock block(w, begin);
  for (; chunk.r0 + Rows <= end; chunk.r0 += Rows, block.advance(Rows, stride)) {
    const auto [packed, scales, offsets] = block;
    __m512 total[Rows];
    __m512 offset_total[Rows];
    for (int i = 0; i < Rows; ++i) total[i] = offset_total[i] = _mm512_setzero_ps();
    for (Eigen::Index s = 0; s < codes.steps; s += StepsPerChunk) {
      const Eigen::Index first_group = s * GroupsPerStep;
      const auto first = static_cast<std::size_t>(first_group);
      const __m512 code_scale = _mm512_maskz_loadu_ps(in_chunk, codes.scale.data() + first);
      const __m512 scaled_sum = _mm512_maskz_loadu_ps(in_chunk, codes.scaled_sum.data() + first);
      for (int i = 0; i < Rows; ++i) {
        const __m512 weight_scale = _mm512_maskz_loadu_ps(in_chunk, scales + i * parameter_stride + first_group);
        chunk.group_scale[i] = _mm512_mul_ps(weight_scale, code_scale);
        const __m512 offset =
            Asymmetric ? _mm512_maskz_loadu_ps(in_chunk, offsets + i * parameter_stride + first_group) : weight_scale;
        offset_total[i] = _mm512_fmadd_ps(offset, scaled_sum, offset_total[i]);
      }
      chunk.bytes = packed + 64 * s;
      chunk.low_codes = codes.low.data() + 64 * s;
      chunk.high_codes = codes.high.data() + 64 * s;
      chunk.first_step = s;
      int4_chunk_steps<0, StepsPerChunk, Rows, GroupsPerStep>(chunk, total);
    }
    // The symmetric offsets' −8 was left out of the sum above, which took the scales.
    for (int i = 0; i < Rows; ++i) {
      const float tail =
          tail_group < groups ? int4_int8_activations_dot(w, x, chunk.r0 + i, prefetch, tail_group) : 0.0f;
      sums.add(_mm512_fmadd_ps(offset_total[i], offset_factor, total[i]), tail);
    }
  }
  return chunk.r0;
}

// The kernel above with the chunk length with_whole_chunks picks.
template <int Rows, bool Asymmetric, int GroupsPerStep>
DILEMMA_QUANT_TARGET_AVX512_VNNI inline Eigen::Index gemv_int4_steps_small_groups(
    const WeightView& w, const QuantizedActivations& x, const Int4StepCodes& codes, RowSums& sums, Eigen::Index begin,
    Eigen::Index end, RowPrefetch prefetch) {
  return with_whole_chunks<GroupsPerStep>(codes.steps, [&]<int StepsPerChunk>() {
    return gemv_int4_steps_small_groups<Rows, Asymmetric, GroupsPerStep, StepsPerChunk>(w, x, codes, sums, begin, end,
                                                                                        prefetch);
  });
}

// Groups of a multiple of 128 columns: every step lies inside one group, so
// the int32 dot products run on over the group's steps and are scaled once
// per group.
template <int Rows, bool Asymmetric>
DILEMMA_QUANT_TARGET_AVX512_VNNI inline Eigen::Index gemv_int4_steps_large_groups(const WeightView& w,
                                                                                  const Int4StepCodes& codes,
                                                                                  RowSums& sums, Eigen::Index begin,
                                                                                  Eigen::Index end,
                                                                                  RowPrefetch prefetch) {
  const Eigen::Index steps_per_group = w.group_size / int4_step;
  const Eigen::Index stride = w.stride, parameter_stride = w.parameter_stride(), groups = w.groups();
  Eigen::Index r0 = begin;
  for (; r0 + Rows <= end; r0 += Rows) {
    const auto [packed, scales, offsets] = Int4RowBlock(w, r0);
    __m512 total[Rows];
    float offset_total[Rows];
    for (int i = 0; i < Rows; ++i) {
      total[i] = _mm512_setzero_ps();
      offset_total[i] = 0.0f;
    }
    Eigen::Index s = 0;
    for (Eigen::Index group = 0; group < groups; ++group) {
      __m512i dot[Rows];
      for (int i = 0; i < Rows; ++i) dot[i] = _mm512_setzero_si512();
      for (const Eigen::Index group_end = s + steps_per_group; s < group_end; ++s) {
        prefetch_rows<Rows>(prefetch, r0, 64 * s);
        const auto step = static_cast<std::size_t>(s);
        const __m512i low_codes = _mm512_loadu_si512(codes.low.data() + 64 * step);
        const __m512i high_codes = _mm512_loadu_si512(codes.high.data() + 64 * step);
        for (int i = 0; i < Rows; ++i) {
          dot[i] = int4_step_dot(dot[i], load_step_bytes(packed + 64 * s + i * stride), low_codes, high_codes);
        }
      }
      const auto g = static_cast<std::size_t>(group);
      for (int i = 0; i < Rows; ++i) {
        const float weight_scale = scales[i * parameter_stride + group];
        total[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i]), _mm512_set1_ps(weight_scale * codes.scale[g]), total[i]);
        const float offset = Asymmetric ? offsets[i * parameter_stride + group] : -8.0f * weight_scale;
        offset_total[i] = std::fma(offset, codes.scaled_sum[g], offset_total[i]);
      }
    }
    for (int i = 0; i < Rows; ++i) sums.add(total[i], offset_total[i]);
  }
  return r0;
}

template <int Rows, bool Asymmetric>
DILEMMA_QUANT_TARGET_AVX512_VNNI inline Eigen::Index gemv_int4_steps(const WeightView& w, const QuantizedActivations& x,
                                                                     const Int4StepCodes& codes, RowSums& sums,
                                                                     Eigen::Index begin, Eigen::Index end,
                                                                     RowPrefetch prefetch) {
  switch (w.group_size) {  // int4_steps_fit: 32, 64 or a multiple of a step
    case 32: return gemv_int4_steps_small_groups<Rows, Asymmetric, 4>(w, x, codes, sums, begin, end, prefetch);
    case 64: return gemv_int4_steps_small_groups<Rows, Asymmetric, 2>(w, x, codes, sums, begin, end, prefetch);
    default: break;
  }
  return gemv_int4_steps_large_groups<Rows, Asymmetric>(w, codes, sums, begin, end, prefetch);
}

// y[r] = Σ_c ŵ[r][c] · x̂_c for r in [begin, end), integer weights only.
// `order` as in gemv_rows_int4_steps (int8 weights take four rows at a time
// when sharing the codes' loads).
DILEMMA_QUANT_TARGET_AVX512_VNNI inline void gemv_rows_int8_activations(const WeightView& w,
                                                                        const QuantizedActivations& x, float* y,
                                                                        Eigen::Index begin, Eigen::Index end,
                                                                        RowOrder order) {
  const RowPrefetch prefetch(w);
  Eigen::Index r = begin;
  if (w.format == Format::int4) {
    for (; r < end; ++r) y[r] = int4_int8_activations_dot(w, x, r, prefetch);
    return;
  }
  RowSums sums(y + begin);
  auto rows = [&]<int Bits>() {
    if (order == RowOrder::sharing_x) r = gemv_int8_weights_biased<Bits, 4>(w, x, sums, r, end, prefetch);
    gemv_int8_weights_biased<Bits, 1>(w, x, sums, r, end, prefetch);
  };
  if (w.group_size % 64 == 0) {
    rows.template operator()<512>();
  } else {
    rows.template operator()<256>();
  }
  sums.flush();
}

// The same for int4 weights whose group size int4_steps_fit, on codes laid
// out by lay_out_int4_step_codes. `order`: one row at a time, or eight sharing
// the loads of the codes, which is faster once the weights are in cache (a
// prefill's later tokens) but reads DRAM as eight interleaved streams.
DILEMMA_QUANT_TARGET_AVX512_VNNI inline void gemv_rows_int4_steps(const WeightView& w, const QuantizedActivations& x,
                                                                  const Int4StepCodes& codes, float* y,
                                                                  Eigen::Index begin, Eigen::Index end,
                                                                  RowOrder order) {
  const RowPrefetch prefetch(w);
  RowSums sums(y + begin);
  Eigen::Index r = begin;
  auto rows = [&]<bool Asymmetric>() {
    if (order == RowOrder::sharing_x) r = gemv_int4_steps<8, Asymmetric>(w, x, codes, sums, r, end, prefetch);
    gemv_int4_steps<1, Asymmetric>(w, x, codes, sums, r, end, prefetch);
  };
  if (w.asymmetric) {
    rows.template operator()<true>();
  } else {
    rows.template operator()<false>();
  }
  sums.flush();
}

}  // namespace dilemma::quant::detail::avx512

#if defined(DILEMMA_QUANT_GCC_BUG_105593)
#pragma GCC diagnostic pop
#undef DILEMMA_QUANT_GCC_BUG_105593
#endif
#undef DILEMMA_QUANT_TARGET_AVX512
#undef DILEMMA_QUANT_TARGET_AVX512_VNNI

#endif  // DILEMMA_QUANT_X86_KERNELS
