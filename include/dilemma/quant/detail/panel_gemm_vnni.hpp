#pragma once
// Prefill with int8 activations on AVX-512 VNNI: Y = X̂·Ŵᵀ for several tokens
// at once, integer weights only.
//
// The GEMV kernels (kernels_avx512.hpp) stream each row along its columns and
// add their lanes up at the end: right for one token, when the weights come
// from memory. Over many tokens the weights sit in cache and the work is
// arithmetic, so here the 16 lanes of a register are 16 rows. A panel of 16
// rows is repacked once per product so that each 64-byte vector holds four
// consecutive columns of every row as unsigned bytes; one vpdpbusd then adds
// four columns of all 16 rows against four codes of one token, broadcast.
// Each weight vector loaded serves `panel_tokens` tokens, the scaling costs
// four instructions per group, token and 16 rows (against G/4 vpdpbusd), and
// the accumulators are the outputs: no horizontal sums.
//
// Unsigned weights u and the group's offset o' (QuantScheme, format.hpp):
//   int8              ŵ = s·(u − 128), u = w xor 0x80   o' = −128·s
//   int4, symmetric   ŵ = s·(u − 8)                     o' = −8·s
//   int4, asymmetric  ŵ = s·u + o                       o' = o
// so that over a group Σ ŵ·x̂ = s·s_x·Σ u·q + o'·s_x·Σq, with Σ u·q exact in
// int32 (as in the GEMV kernels) and s_x·Σq carried by the activations.
//
// The float rounding differs from the GEMV kernels' (a row's groups are added
// one after another here, lane-wise there), so a prefill agrees with decoding
// its tokens one at a time to float rounding, not bit for bit; gemm() in
// matmul.hpp uses this kernel from panel_gemm_min_tokens tokens on.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <Eigen/Core>

#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/detail/weight_view.hpp"
#include "dilemma/quant/kernel_isa.hpp"

#if DILEMMA_QUANT_X86_KERNELS
#include <immintrin.h>

#include "dilemma/quant/detail/kernels_avx2.hpp"    // int4_block_bytes
#include "dilemma/quant/detail/kernels_avx512.hpp"  // tail_mask
#endif

namespace dilemma::quant::detail {

inline constexpr Eigen::Index panel_rows = 16;
inline constexpr int panel_tokens = 8;
// With fewer tokens the GEMV kernels are as fast or faster (bench_kernels -T 7
// and -T 8 on OPT-350m's shapes took about the same time): the repacking of
// the panels costs the same for any number of tokens.
inline constexpr Eigen::Index panel_gemm_min_tokens = 8;

// Up to 16 rows of an integer weight, repacked: for every four columns, one
// 64-byte vector with row i's four unsigned bytes at 4i (zero for the rows
// past `rows`); per group, the 16 rows' scales and offsets o'.
struct WeightPanel {
  Eigen::Index rows = 0;
  std::vector<std::uint8_t> bytes;  // cols / 4 vectors of 64 bytes
  std::vector<float> scales;        // [group][16]
  std::vector<float> offsets;       // [group][16]
};

// The int8 codes of up to panel_tokens tokens, interleaved for the kernel:
// for every four columns, each token's four codes in turn (zero for the
// tokens past `count`); per group, each token's activation scale s_x and
// s_x·Σq.
struct TokenBlock {
  int count = 0;
  std::vector<std::int8_t> codes;  // cols / 4 × panel_tokens × 4
  std::vector<float> scales;       // [group][panel_tokens]
  std::vector<float> scaled_sums;  // [group][panel_tokens]
};

inline std::vector<TokenBlock> interleave_tokens(const std::vector<QuantizedActivations>& tokens) {
  std::vector<TokenBlock> blocks;
  for (std::size_t first = 0; first < tokens.size(); first += panel_tokens) {
    TokenBlock& block = blocks.emplace_back();
    block.count = static_cast<int>(std::min<std::size_t>(panel_tokens, tokens.size() - first));
    const std::size_t cols = tokens[first].codes.size(), groups = tokens[first].scales.size();
    block.codes.assign(cols * panel_tokens, 0);
    block.scales.assign(groups * panel_tokens, 0.0f);
    block.scaled_sums.assign(groups * panel_tokens, 0.0f);
    for (std::size_t t = 0; t < static_cast<std::size_t>(block.count); ++t) {
      const QuantizedActivations& token = tokens[first + t];
      for (std::size_t k = 0; k < cols / 4; ++k) {
        std::memcpy(&block.codes[4 * (panel_tokens * k + t)], &token.codes[4 * k], 4);
      }
      for (std::size_t g = 0; g < groups; ++g) {
        block.scales[panel_tokens * g + t] = token.scales[g];
        block.scaled_sums[panel_tokens * g + t] = token.scales[g] * static_cast<float>(token.sums[g]);
      }
    }
  }
  return blocks;
}

#if DILEMMA_QUANT_X86_KERNELS
// GCC 12's own AVX-512 intrinsics trip -W(maybe-)uninitialized where they
// are inlined (GCC bug 105593, fixed in GCC 13), as in kernels_avx512.hpp.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define DILEMMA_QUANT_PANEL_GCC_BUG_105593 1
#endif

namespace avx512 {

// 64 columns (or the last 32, `half`) of row r as unsigned bytes u in
// column order: 16 dwords of four columns each.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512i unsigned_columns(const WeightView& w,
                                                                                   Eigen::Index r, Eigen::Index c,
                                                                                   bool half) {
  if (w.format == Format::int8) {
    const __m512i top_bits = _mm512_set1_epi8(static_cast<char>(0x80));
    const __mmask64 columns = half ? 0xFFFF'FFFFull : ~0ull;
    return _mm512_xor_si512(_mm512_maskz_loadu_epi8(columns, w.int8_row(r) + c), top_bits);
  }
  // Two int4 blocks of 32 columns, each spread over 32 bytes in column order.
  const std::uint8_t* row = w.int4_row(r) + c / 2;
  const __m512i first = _mm512_zextsi256_si512(avx2::int4_block_bytes(row));
  return half ? first : _mm512_inserti64x4(first, avx2::int4_block_bytes(row + int4_block / 2), 1);
}

// Rows r0 … r0 + rows − 1 (rows ≤ 16) into `panel`. Every 64 columns, the
// rows' 16 dwords are transposed (16 × 16 dwords, four rounds of shuffles)
// so that dword i of vector k is row i's dword k.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void pack_panel(const WeightView& w, Eigen::Index r0,
                                                                            Eigen::Index rows, WeightPanel& panel) {
  const auto cols = static_cast<std::size_t>(w.cols);
  const auto groups = static_cast<std::size_t>(w.groups());
  panel.rows = rows;
  panel.bytes.resize(cols * panel_rows);
  panel.scales.assign(groups * panel_rows, 0.0f);
  panel.offsets.assign(groups * panel_rows, 0.0f);
  for (Eigen::Index c = 0; c < w.cols; c += 64) {
    const bool half = w.cols - c < 64;  // the columns are a multiple of 32
    __m512i r[panel_rows], t[panel_rows];
    for (Eigen::Index i = 0; i < panel_rows; ++i) {
      r[i] = i < rows ? unsigned_columns(w, r0 + i, c, half) : _mm512_setzero_si512();
    }
    // Within each 128-bit lane, pairs, then quads of rows: t[4m + q] lane L
    // holds column dword 4L + q of rows 4m … 4m + 3.
    for (int m = 0; m < panel_rows; m += 2) {
      t[m] = _mm512_unpacklo_epi32(r[m], r[m + 1]);
      t[m + 1] = _mm512_unpackhi_epi32(r[m], r[m + 1]);
    }
    for (int m = 0; m < panel_rows; m += 4) {
      r[m] = _mm512_unpacklo_epi64(t[m], t[m + 2]);
      r[m + 1] = _mm512_unpackhi_epi64(t[m], t[m + 2]);
      r[m + 2] = _mm512_unpacklo_epi64(t[m + 1], t[m + 3]);
      r[m + 3] = _mm512_unpackhi_epi64(t[m + 1], t[m + 3]);
    }
    // Then the four quads' lanes side by side: dword 4L + q of all 16 rows.
    std::uint8_t* out = panel.bytes.data() + 16 * c;
    const int dwords = half ? 8 : 16;
    for (int q = 0; q < 4; ++q) {
      const __m512i low_pairs = _mm512_shuffle_i32x4(r[q], r[4 + q], 0x44);
      const __m512i high_pairs = _mm512_shuffle_i32x4(r[q], r[4 + q], 0xEE);
      const __m512i low_pairs2 = _mm512_shuffle_i32x4(r[8 + q], r[12 + q], 0x44);
      const __m512i high_pairs2 = _mm512_shuffle_i32x4(r[8 + q], r[12 + q], 0xEE);
      const __m512i column[4] = {
          _mm512_shuffle_i32x4(low_pairs, low_pairs2, 0x88), _mm512_shuffle_i32x4(low_pairs, low_pairs2, 0xDD),
          _mm512_shuffle_i32x4(high_pairs, high_pairs2, 0x88), _mm512_shuffle_i32x4(high_pairs, high_pairs2, 0xDD)};
      for (int lane = 0; lane < 4; ++lane) {
        const int dword = 4 * lane + q;
        if (dword < dwords) _mm512_storeu_si512(out + 64 * dword, column[lane]);
      }
    }
  }
  for (Eigen::Index i = 0; i < rows; ++i) {
    const auto lane = static_cast<std::size_t>(i);
    for (std::size_t g = 0; g < groups; ++g) {
      const float scale = w.scales_row(r0 + i)[g];
      panel.scales[panel_rows * g + lane] = scale;
      panel.offsets[panel_rows * g + lane] =
          w.format == Format::int8 ? -128.0f * scale : w.int4_offset(r0 + i, static_cast<Eigen::Index>(g));
    }
  }
}

// y_t[r0 + i] for the panel's rows and the block's tokens; y_t is y + t·y_stride.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline void panel_gemm_block(
    const WeightPanel& panel, Eigen::Index group_size, const TokenBlock& block, float* y, Eigen::Index y_stride,
    Eigen::Index r0) {
  const Eigen::Index slices_per_group = group_size / 4;
  const auto groups = static_cast<Eigen::Index>(panel.scales.size()) / panel_rows;
  __m512 total[panel_tokens];
  for (int t = 0; t < panel_tokens; ++t) total[t] = _mm512_setzero_ps();
  const std::uint8_t* weights = panel.bytes.data();
  const std::int8_t* codes = block.codes.data();
  for (Eigen::Index g = 0; g < groups; ++g) {
    __m512i dot[panel_tokens];
    for (int t = 0; t < panel_tokens; ++t) dot[t] = _mm512_setzero_si512();
    for (Eigen::Index k = 0; k < slices_per_group; ++k, weights += 64, codes += 4 * panel_tokens) {
      const __m512i u = _mm512_loadu_si512(weights);
      for (int t = 0; t < panel_tokens; ++t) {
        std::int32_t four_codes;
        std::memcpy(&four_codes, codes + 4 * t, 4);
        dot[t] = _mm512_dpbusd_epi32(dot[t], u, _mm512_set1_epi32(four_codes));
      }
    }
    const auto group = static_cast<std::size_t>(g);
    const __m512 scale = _mm512_loadu_ps(panel.scales.data() + panel_rows * group);
    const __m512 offset = _mm512_loadu_ps(panel.offsets.data() + panel_rows * group);
    const float* code_scales = block.scales.data() + panel_tokens * group;
    const float* scaled_sums = block.scaled_sums.data() + panel_tokens * group;
    for (int t = 0; t < panel_tokens; ++t) {
      total[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(scale, _mm512_set1_ps(code_scales[t])),
                                 total[t]);
      total[t] = _mm512_fmadd_ps(offset, _mm512_set1_ps(scaled_sums[t]), total[t]);
    }
  }
  const __mmask16 rows_mask = tail_mask(panel.rows);
  for (int t = 0; t < block.count; ++t) _mm512_mask_storeu_ps(y + t * y_stride + r0, rows_mask, total[t]);
}

// Rows [begin, end) of Y, row-major [tokens × w.rows], for every token.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline void panel_gemm_rows(
    const WeightView& w, const std::vector<TokenBlock>& blocks, float* y, Eigen::Index begin, Eigen::Index end) {
  thread_local WeightPanel panel;
  for (Eigen::Index r0 = begin; r0 < end; r0 += panel_rows) {
    pack_panel(w, r0, std::min(panel_rows, end - r0), panel);
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      panel_gemm_block(panel, w.group_size, blocks[b], y + static_cast<Eigen::Index>(b) * panel_tokens * w.rows,
                       w.rows, r0);
    }
  }
}

}  // namespace avx512

#if defined(DILEMMA_QUANT_PANEL_GCC_BUG_105593)
#pragma GCC diagnostic pop
#undef DILEMMA_QUANT_PANEL_GCC_BUG_105593
#endif
#endif  // DILEMMA_QUANT_X86_KERNELS

}  // namespace dilemma::quant::detail
