#pragma once
// Products of a quantized weight W [rows × cols] with float activations:
//   gemv: y = W·x            (decode: one token, every weight read once)
//   gemm: Y = X·Wᵀ           (prefill: X is [tokens × cols], Y [tokens × rows])
// Both split the output rows across a ThreadPool and run the kernels the
// KernelContext names (kernel_isa.hpp), which all compute the same products up
// to float rounding.
//
// gemv widens weights in registers and streams W once. gemm dequantizes a
// panel of W's rows into an L2-sized float buffer once for all tokens, then
// multiplies it with Eigen's cache-blocked GEMM: a prefill is compute-bound,
// and the panel makes the dequantization cost O(rows·cols), independent of
// the number of tokens. With KernelContext::activations = int8, integer
// weights meet int8-rounded activations instead (activations.hpp), each token
// rounded on its own, and gemm multiplies them in integers too: on AVX-512
// VNNI with a kernel of its own (panel_gemm_vnni.hpp), elsewhere with the
// GEMV kernels, every token over a chunk of rows that stays in cache. With
// activations = bf16 they meet bfloat16-rounded activations: gemv runs an int4
// kernel of its own on AVX-512 BF16 and the float kernels elsewhere, and gemm
// multiplies the rounded activations as float ones.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"
#include "dilemma/parallel/thread_pool.hpp"
#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/detail/int4_step_codes.hpp"
#include "dilemma/quant/detail/int4_step_lanes.hpp"
#include "dilemma/quant/detail/kernels_avx2.hpp"
#include "dilemma/quant/detail/kernels_avx512.hpp"
#include "dilemma/quant/detail/kernels_scalar.hpp"
#include "dilemma/quant/detail/panel_gemm_vnni.hpp"
#include "dilemma/quant/detail/weight_view.hpp"
#include "dilemma/quant/kernel_isa.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::quant {

// How a product runs: on which threads (the pool's, or only the calling
// thread's when null), with which kernels, and whether integer weights meet
// float activations or bfloat16- or int8-rounded ones (activations.hpp; float
// weights always meet float activations).
struct KernelContext {
  parallel::ThreadPool* pool = nullptr;
  KernelIsa isa = default_kernel_isa();
  ActivationPrecision activations = ActivationPrecision::f32;
};

namespace detail {

inline void check_isa(KernelIsa isa) {
  if (!kernel_isa_available(isa)) {
    dilemma::detail::fail("quant kernels: {} kernels are not available on this CPU or build (best: {})",
                          kernel_isa_name(isa), kernel_isa_name(best_kernel_isa()));
  }
}

// Σ x over each group: the int4 kernels that work on unsigned nibbles add
// offset · Σx once per group instead of the offset once per weight. Eigen's
// reduction, vectorized: a plain loop is one chain of dependent additions.
inline std::vector<float> group_sums(const WeightView& w, const float* x) {
  std::vector<float> sums(static_cast<std::size_t>(w.groups()));
  for (Eigen::Index g = 0; g < w.groups(); ++g) {
    sums[static_cast<std::size_t>(g)] = Eigen::Map<const Eigen::ArrayXf>(x + g * w.group_size, w.group_size).sum();
  }
  return sums;
}

inline bool needs_group_sums(KernelIsa isa, const WeightView& w) {
  if (w.format != Format::int4) return false;
  return isa == KernelIsa::avx2 || (isa == KernelIsa::scalar && w.asymmetric);
}

// `lanes`: x laid out for the SIMD int4 step kernels, or no steps for the others.
inline void gemv_rows(KernelIsa isa, const WeightView& w, const float* x, const float* sums,
                      [[maybe_unused]] const Int4StepLanes& lanes, float* y, Eigen::Index begin, Eigen::Index end) {
  switch (isa) {
#if DILEMMA_QUANT_X86_KERNELS
    case KernelIsa::avx512:
      if (lanes.steps > 0) {
        avx512::gemv_rows_int4_lanes(w, lanes, sums, y, begin, end);
      } else {
        avx512::gemv_rows(w, x, y, begin, end);
      }
      return;
    case KernelIsa::avx2:
      if (lanes.steps > 0) {
        avx2::gemv_rows_int4_lanes(w, lanes, sums, y, begin, end);
      } else {
        avx2::gemv_rows(w, x, sums, y, begin, end);
      }
      return;
#else
    case KernelIsa::avx512:
    case KernelIsa::avx2: break;
#endif
    case KernelIsa::scalar: gemv_rows_scalar(w, x, sums, y, begin, end); return;
  }
  check_isa(isa);
}

// Whether the int8- or bfloat16-activation product of `w` runs an AVX-512
// int4 step kernel: with VNNI on codes as lay_out_int4_step_codes arranges
// them, or with BF16 on activations as avx512::lay_out_int4_bf16_step_lanes
// arranges them.
inline bool uses_int4_steps([[maybe_unused]] KernelIsa isa, [[maybe_unused]] const WeightView& w,
                            [[maybe_unused]] ActivationPrecision activations) {
#if DILEMMA_QUANT_X86_KERNELS
  const bool instructions = (activations == ActivationPrecision::int8 && cpu_has_avx512_vnni()) ||
                            (activations == ActivationPrecision::bf16 && cpu_has_avx512_bf16());
  return isa == KernelIsa::avx512 && instructions && w.format == Format::int4 && int4_steps_fit(w.group_size);
#else
  return false;
#endif
}

// quantize_activations (activations.hpp) on the kernels of `isa`: the same
// codes, scales and sums, sooner (kernels_avx512.hpp).
inline QuantizedActivations quantize_activations_with(KernelIsa isa, std::span<const float> x,
                                                      Eigen::Index group_size) {
  switch (isa) {
#if DILEMMA_QUANT_X86_KERNELS
    case KernelIsa::avx512: return avx512::quantize_activations(x, group_size);
    case KernelIsa::avx2: return avx2::quantize_activations(x, group_size);
#else
    case KernelIsa::avx512:
    case KernelIsa::avx2: break;
#endif
    case KernelIsa::scalar: return quant::quantize_activations(x, group_size);
  }
  check_isa(isa);
  return quant::quantize_activations(x, group_size);
}

// `steps`: the codes laid out when uses_int4_steps(isa, w, int8), unused otherwise.
inline void gemv_rows_int8_activations(KernelIsa isa, const WeightView& w, const QuantizedActivations& x,
                                       const Int4StepCodes& steps, float* y, Eigen::Index begin, Eigen::Index end,
                                       [[maybe_unused]] RowOrder order) {
#if DILEMMA_QUANT_X86_KERNELS
  if (uses_int4_steps(isa, w, ActivationPrecision::int8)) {
    avx512::gemv_rows_int4_steps(w, x, steps, y, begin, end, order);
    return;
  }
#endif
  switch (isa) {
#if DILEMMA_QUANT_X86_KERNELS
    case KernelIsa::avx512:
      if (cpu_has_avx512_vnni()) {
        avx512::gemv_rows_int8_activations(w, x, y, begin, end, order);
        return;
      }
      [[fallthrough]];
    case KernelIsa::avx2: avx2::gemv_rows_int8_activations(w, x, y, begin, end); return;
#else
    case KernelIsa::avx512:
    case KernelIsa::avx2: break;
#endif
    case KernelIsa::scalar: gemv_rows_scalar_int8_activations(w, x, y, begin, end); return;
  }
  check_isa(isa);
}

inline void dequantize_rows(KernelIsa isa, const WeightView& w, Eigen::Index begin, Eigen::Index end, float* out) {
  switch (isa) {
#if DILEMMA_QUANT_X86_KERNELS
    case KernelIsa::avx512: avx512::dequantize_rows(w, begin, end, out); return;
    case KernelIsa::avx2: avx2::dequantize_rows(w, begin, end, out); return;
#else
    case KernelIsa::avx512:
    case KernelIsa::avx2: break;
#endif
    case KernelIsa::scalar: dequantize_rows_scalar(w, begin, end, out); return;
  }
  check_isa(isa);
}

// parallel::for_each_chunk over rows, which Eigen counts as Eigen::Index.
template <typename Body>
void for_row_chunks(parallel::ThreadPool* pool, Eigen::Index count, Eigen::Index chunk, Body&& body) {
  parallel::for_each_chunk(pool, static_cast<std::size_t>(count), static_cast<std::size_t>(chunk),
                           [&body](std::size_t begin, std::size_t end) {
                             body(static_cast<Eigen::Index>(begin), static_cast<Eigen::Index>(end));
                           });
}

// Rows per GEMV chunk: one contiguous share per thread (a multiple of the
// kernels' 8-row blocks, at least 16 rows), so that every thread reads its
// weights as one stream. Each chunk boundary restarts a stream: the kernels'
// prefetch runs up to 16 KiB past the chunk into rows another thread reads,
// and the first rows of the next chunk come without one. With eight chunks per
// thread, which let a thread slowed down by another process hand its share to
// the others, two threads streamed q/k/v at 34–35 % of the two-thread read
// bandwidth and fc1 at 58–62 %; with one chunk each, at 55 % and 72–76 %
// (docs/performance.md, "One chunk per thread"). A thread that has not woken
// yet still leaves its chunk to the others, as chunks are taken, not assigned.
inline Eigen::Index gemv_chunk_rows(Eigen::Index rows, unsigned threads) {
  const Eigen::Index per_thread = (rows + threads - 1) / static_cast<Eigen::Index>(threads);
  return std::max<Eigen::Index>(16, (per_thread + 7) / 8 * 8);
}

// Rows of `row_bytes` each that fit in `bytes` (at least 16), a multiple of
// the kernels' 16-row blocks: a GEMM's panel or chunk of rows, sized to stay
// in L2 while every token passes over it. A QuantizedMatrix has columns.
inline Eigen::Index rows_within(Eigen::Index bytes, Eigen::Index row_bytes) {
  return std::max<Eigen::Index>(16, bytes / row_bytes / 16 * 16);
}

// Rows per GEMM panel: 64k floats (256 KiB) of dequantized weights.
inline Eigen::Index gemm_panel_rows(Eigen::Index cols) {
  return rows_within(Eigen::Index{1} << 18, cols * Eigen::Index{sizeof(float)});
}

// A per-thread buffer for the dequantized panel, kept across calls so that a
// prefill does not allocate (and fault in) fresh pages for every panel.
inline std::vector<float>& panel_buffer() {
  thread_local std::vector<float> buffer;
  return buffer;
}

// y = W·x for every row, x as it is.
inline void gemv_float_activations(const WeightView& w, const float* x, float* y, const KernelContext& context) {
  const unsigned threads = parallel::thread_count(context.pool);
  // The SIMD int4 kernels take x laid out in their steps' order.
  Int4StepLanes lanes;
#if DILEMMA_QUANT_X86_KERNELS
  if (w.format == Format::int4 && context.isa == KernelIsa::avx512) {
    lanes = avx512::lay_out_int4_step_lanes(x, int4_float_steps(x, w.cols, w.group_size));
  } else if (w.format == Format::int4 && context.isa == KernelIsa::avx2) {
    lanes = lay_out_int4_step_lanes(x, w.cols, w.group_size);
  }
#endif
  const std::vector<float> sums =
      lanes.steps > 0 || needs_group_sums(context.isa, w) ? group_sums(w, x) : std::vector<float>{};
  for_row_chunks(context.pool, w.rows, gemv_chunk_rows(w.rows, threads), [&](Eigen::Index begin, Eigen::Index end) {
    gemv_rows(context.isa, w, x, sums.data(), lanes, y, begin, end);
  });
}

inline void gemv(const QuantizedMatrix& w, std::span<const float> x, std::span<float> y, const KernelContext& context,
                 RowOrder order) {
  if (x.size() != static_cast<std::size_t>(w.cols()) || y.size() != static_cast<std::size_t>(w.rows())) {
    dilemma::detail::fail("gemv(): a [{} × {}] weight needs x of {} and y of {} floats, got {} and {}", w.rows(),
                          w.cols(), w.cols(), w.rows(), x.size(), y.size());
  }
  // std::less orders pointers into unrelated arrays too, where < is unspecified.
  const std::less<const float*> before;
  if (before(x.data(), y.data() + y.size()) && before(y.data(), x.data() + x.size())) {
    dilemma::detail::fail("gemv(): x and y overlap");
  }
  detail::check_isa(context.isa);
  const auto view = detail::WeightView::of(w);
  const unsigned threads = parallel::thread_count(context.pool);
  if (context.activations == ActivationPrecision::int8 && is_integer_format(w.format())) {
    const QuantizedActivations codes = detail::quantize_activations_with(context.isa, x, view.group_size);
    const detail::Int4StepCodes steps = detail::uses_int4_steps(context.isa, view, ActivationPrecision::int8)
                                            ? detail::lay_out_int4_step_codes(codes)
                                            : detail::Int4StepCodes{};
    detail::for_row_chunks(context.pool, w.rows(), detail::gemv_chunk_rows(w.rows(), threads),
                           [&](Eigen::Index begin, Eigen::Index end) {
                             detail::gemv_rows_int8_activations(context.isa, view, codes, steps, y.data(), begin, end,
                                                                order);
                           });
    return;
  }
  if (context.activations == ActivationPrecision::bf16 && is_integer_format(w.format())) {
#if DILEMMA_QUANT_X86_KERNELS
    if (uses_int4_steps(context.isa, view, ActivationPrecision::bf16)) {
      if (const Eigen::Index steps = int4_bf16_steps(x.data(), view.cols, view.group_size); steps > 0) {
        const Int4Bf16StepLanes lanes = avx512::lay_out_int4_bf16_step_lanes(x.data(), steps);
        const std::vector<float> sums = group_sums(view, lanes.rounded.data());
        for_row_chunks(context.pool, w.rows(), gemv_chunk_rows(w.rows(), threads),
                       [&](Eigen::Index begin, Eigen::Index end) {
                         avx512::gemv_rows_int4_lanes(view, lanes, sums.data(), y.data(), begin, end);
                       });
        return;
      }
    }
#endif
    std::vector<float> rounded(x.begin(), x.end());
    round_to_bf16(rounded);
    gemv_float_activations(view, rounded.data(), y.data(), context);
    return;
  }
  gemv_float_activations(view, x.data(), y.data(), context);
}

// Y = X·Wᵀ on int8-rounded activations. Each token's activations are rounded
// on their own, as a decode step rounds them. From panel_gemm_min_tokens
// tokens on, AVX-512 VNNI runs the panel kernel, which agrees with decoding
// the tokens one at a time to float rounding. Otherwise each (row, token)
// product runs the GEMV kernels' own instructions, bit-identical to decoding,
// but a chunk of rows at a time with every token over it, so that the weights
// come from L2 rather than once per token from memory.
inline void gemm_int8_activations(const QuantizedMatrix& w, const model::Matrix& x, model::Matrix& y,
                                  const KernelContext& context) {
  const auto view = WeightView::of(w);
  const auto tokens = static_cast<std::size_t>(x.rows());
  std::vector<QuantizedActivations> codes;
  codes.reserve(tokens);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const std::span<const float> token(x.row(t).data(), static_cast<std::size_t>(x.cols()));
    codes.push_back(quantize_activations_with(context.isa, token, view.group_size));
  }
  const Eigen::Index chunk_rows = rows_within(Eigen::Index{1} << 17, view.row_bytes());  // 128 KiB of weights
#if DILEMMA_QUANT_X86_KERNELS
  if (context.isa == KernelIsa::avx512 && cpu_has_avx512_vnni() && x.rows() >= panel_gemm_min_tokens) {
    const std::vector<TokenBlock> blocks = interleave_tokens(codes);
    for_row_chunks(context.pool, w.rows(), chunk_rows, [&](Eigen::Index begin, Eigen::Index end) {
      avx512::panel_gemm_rows(view, blocks, y.data(), begin, end);
    });
    return;
  }
#endif
  std::vector<Int4StepCodes> steps(tokens);
  if (uses_int4_steps(context.isa, view, ActivationPrecision::int8)) {
    for (std::size_t t = 0; t < tokens; ++t) steps[t] = lay_out_int4_step_codes(codes[t]);
  }
  for_row_chunks(context.pool, w.rows(), chunk_rows, [&](Eigen::Index begin, Eigen::Index end) {
    for (std::size_t t = 0; t < tokens; ++t) {
      gemv_rows_int8_activations(context.isa, view, codes[t], steps[t], y.row(static_cast<Eigen::Index>(t)).data(),
                                 begin, end, RowOrder::sharing_x);
    }
  });
}

}  // namespace detail

// y = W·x, with x of w.cols() floats and y of w.rows() floats.
inline void gemv(const QuantizedMatrix& w, std::span<const float> x, std::span<float> y,
                 const KernelContext& context = {}) {
  detail::gemv(w, x, y, context, detail::RowOrder::one_at_a_time);
}

// Y = X·Wᵀ, with X [tokens × w.cols()]; y is resized to [tokens × w.rows()].
inline void gemm(const QuantizedMatrix& w, const model::Matrix& x, model::Matrix& y,
                 const KernelContext& context = {}) {
  if (x.cols() != w.cols()) {
    dilemma::detail::fail("gemm(): a [{} × {}] weight needs activations with {} columns, got [{} × {}]", w.rows(),
                          w.cols(), w.cols(), x.rows(), x.cols());
  }
  if (&x == &y) dilemma::detail::fail("gemm(): x and y are the same matrix");
  detail::check_isa(context.isa);
  y.resize(x.rows(), w.rows());
  if (x.rows() == 0) return;
  if (x.rows() == 1) {
    detail::gemv(w, std::span(x.row(0).data(), static_cast<std::size_t>(x.cols())),
                 std::span(y.row(0).data(), static_cast<std::size_t>(y.cols())), context,
                 detail::RowOrder::one_at_a_time);
    return;
  }
  if (context.activations == ActivationPrecision::int8 && is_integer_format(w.format())) {
    detail::gemm_int8_activations(w, x, y, context);
    return;
  }
  // bfloat16 activations: the float product of the rounded ones, as a decode step rounds them.
  model::Matrix rounded;
  const bool bf16 = context.activations == ActivationPrecision::bf16 && is_integer_format(w.format());
  if (bf16) {
    rounded = x;
    round_to_bf16(std::span(rounded.data(), static_cast<std::size_t>(rounded.size())));
  }
  const model::Matrix& activations = bf16 ? rounded : x;
  const auto view = detail::WeightView::of(w);
  using ConstPanel = Eigen::Map<const model::Matrix>;
  detail::for_row_chunks(context.pool, w.rows(), detail::gemm_panel_rows(w.cols()),
                         [&](Eigen::Index begin, Eigen::Index end) {
                           const Eigen::Index count = end - begin;
                           const float* panel = nullptr;
                           if (view.format == Format::f32) {
                             panel = view.f32_row(begin);
                           } else {
                             std::vector<float>& buffer = detail::panel_buffer();
                             buffer.resize(static_cast<std::size_t>(count * w.cols()));
                             detail::dequantize_rows(context.isa, view, begin, end, buffer.data());
                             panel = buffer.data();
                           }
                           y.middleCols(begin, count).noalias() =
                               activations * ConstPanel(panel, count, w.cols()).transpose();
                         });
}

inline model::Matrix gemm(const QuantizedMatrix& w, const model::Matrix& x, const KernelContext& context = {}) {
  model::Matrix y;
  gemm(w, x, y, context);
  return y;
}

}  // namespace dilemma::quant
