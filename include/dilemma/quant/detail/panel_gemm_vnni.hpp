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
#endif

namespace dilemma::quant::detail {

inline constexpr Eigen::Index panel_rows = 16;
inline constexpr int panel_tokens = 8;
// Below this many tokens the repacking costs more than it saves.
inline constexpr Eigen::Index panel_gemm_min_tokens = 4;

// Up to 16 rows of an integer weight, repacked: for every four columns, one
// 64-byte vector with row i's four unsigned bytes at 4i (zero for the rows
// past `rows`); per group, the 16 rows' scales and offsets o'.
struct WeightPanel {
  Eigen::Index rows = 0;
  std::vector<std::uint8_t> bytes;  // cols / 4 vectors of 64 bytes
  std::vector<float> scales;        // [group][16]
  std::vector<float> offsets;       // [group][16]
};

// Row r's weights as unsigned bytes u in column order (the table above).
inline void unsigned_row(const WeightView& w, Eigen::Index r, std::uint8_t* u) {
  if (w.format == Format::int8) {
    const std::int8_t* row = w.int8_row(r);
    for (Eigen::Index c = 0; c < w.cols; ++c) u[c] = static_cast<std::uint8_t>(row[c]) ^ 0x80u;
    return;
  }
  // An int4 block of 32 columns is 16 bytes: byte b holds column b in its
  // low nibble and column 16 + b in its high one.
  const std::uint8_t* row = w.int4_row(r);
  for (Eigen::Index block = 0; block < w.cols; block += 32) {
    for (Eigen::Index b = 0; b < 16; ++b) {
      const std::uint8_t byte = row[block / 2 + b];
      u[block + b] = byte & 0x0Fu;
      u[block + 16 + b] = byte >> 4;
    }
  }
}

inline void pack_panel(const WeightView& w, Eigen::Index r0, Eigen::Index rows, WeightPanel& panel) {
  const auto cols = static_cast<std::size_t>(w.cols);
  const auto groups = static_cast<std::size_t>(w.groups());
  panel.rows = rows;
  panel.bytes.assign(cols * panel_rows, 0);
  panel.scales.assign(groups * panel_rows, 0.0f);
  panel.offsets.assign(groups * panel_rows, 0.0f);
  thread_local std::vector<std::uint8_t> row_bytes;
  row_bytes.resize(cols);
  for (Eigen::Index i = 0; i < rows; ++i) {
    const auto lane = static_cast<std::size_t>(i);
    unsigned_row(w, r0 + i, row_bytes.data());
    for (std::size_t k = 0; k < cols / 4; ++k) std::memcpy(&panel.bytes[64 * k + 4 * lane], &row_bytes[4 * k], 4);
    for (std::size_t g = 0; g < groups; ++g) {
      const auto group = static_cast<Eigen::Index>(g);
      const float scale = w.scales_row(r0 + i)[g];
      panel.scales[panel_rows * g + lane] = scale;
      panel.offsets[panel_rows * g + lane] = w.format == Format::int8 ? -128.0f * scale : w.int4_offset(r0 + i, group);
    }
  }
}

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
  const auto rows_mask = static_cast<__mmask16>((1u << panel.rows) - 1u);
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
