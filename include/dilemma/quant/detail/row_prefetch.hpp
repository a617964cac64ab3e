#pragma once
// How the SIMD kernels prefetch the weight rows ahead of those they read:
// shared by kernels_avx2.hpp and kernels_avx512.hpp, and like them compiled
// only with GCC or Clang (__builtin_prefetch, always_inline).

#include <Eigen/Core>

#include "dilemma/quant/detail/weight_view.hpp"

namespace dilemma::quant::detail {

// Where a SIMD kernel prefetches: the rows `ahead` past those it reads
// (WeightView::prefetch_rows_ahead). A value the kernels keep in registers:
// read through the view, GCC reloaded the format for the row size after every
// store to the AVX-512 kernels' row sums (an int, as far as it knew, might be
// the enum).
struct RowPrefetch {
  const char* data;
  Eigen::Index stride, rows, ahead;
  // Bytes of each row's record before its weights: an integer row's scales
  // and offsets (quantized_matrix.hpp), which the kernels read alongside.
  Eigen::Index parameter_bytes;

  explicit RowPrefetch(const WeightView& w)
      : data(static_cast<const char*>(w.data)),
        stride(w.stride),
        rows(w.rows),
        ahead(w.prefetch_rows_ahead()),
        parameter_bytes(w.stride - w.row_bytes()) {}
};

// Prefetches the cache line at byte `offset` of rows r0 + ahead … r0 + ahead
// + Rows − 1 when they all exist; the last blocks of a matrix go without. Into
// L2 (prefetcht1), not L1: a prefetch into L1 holds one of L1's few miss
// buffers until its line arrives from DRAM, and with the kernel's own loads
// queued behind them the int4 GEMV read DRAM at 12-14 GB/s against 18-20 into
// L2 (docs/performance.md, "Prefetching into L2"). Always inlined: GCC finds a
// function whose only effect is a prefetch free of side effects and deletes
// its calls.
template <int Rows>
__attribute__((always_inline)) inline void prefetch_rows(const RowPrefetch& p, Eigen::Index r0, Eigen::Index offset) {
  if (r0 + p.ahead + Rows > p.rows) return;
  const char* first = p.data + (r0 + p.ahead) * p.stride + offset;
  for (int i = 0; i < Rows; ++i) __builtin_prefetch(first + i * p.stride, 0, 2);
  // With a row's first line of weights, the lines of its parameters before them.
  if (offset == 0) {
    for (Eigen::Index before = 64; before <= p.parameter_bytes + 63; before += 64) {
      for (int i = 0; i < Rows; ++i) __builtin_prefetch(first + i * p.stride - before, 0, 2);
    }
  }
}

}  // namespace dilemma::quant::detail
