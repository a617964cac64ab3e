#pragma once
// What a kernel needs to know about a QuantizedMatrix, as raw pointers: the
// kernels run on row ranges of it from several threads at once and must not
// pay for bounds checks or spans in their inner loops.

#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::quant::detail {

// How an integer-activation GEMV walks the rows (only the AVX-512 int4 step
// kernel has both): one at a time, a single linear stream from DRAM, for a
// decode step; or several sharing each load of the activation codes, for a
// matrix read again for every token of a prefill and so found in cache.
enum class RowOrder { one_at_a_time, sharing_x };

// Rows lie `stride` bytes apart, and so do the rows' scales and offsets:
// an integer matrix keeps each row's codes, scales and offsets in one record
// (quantized_matrix.hpp).
struct WeightView {
  Format format = Format::f32;
  bool asymmetric = false;
  Eigen::Index rows = 0;
  Eigen::Index cols = 0;
  Eigen::Index group_size = 0;  // integer formats only
  Eigen::Index stride = 0;      // bytes from one row to the next
  const void* data = nullptr;   // row 0's weights
  const float* scales = nullptr;   // row 0's scales, integer formats only
  const float* offsets = nullptr;  // row 0's offsets, asymmetric int4 only

  static WeightView of(const QuantizedMatrix& w) {
    WeightView view{.format = w.format(),
                    .asymmetric = has_offsets(w.format(), w.scheme()),
                    .rows = w.rows(),
                    .cols = w.cols()};
    switch (w.format()) {
      case Format::f32:
        view.stride = w.cols() * 4;
        view.data = w.f32_.data();
        break;
      case Format::f16:
        view.stride = w.cols() * 2;
        view.data = w.f16_.data();
        break;
      case Format::int8:
      case Format::int4:
        view.group_size = w.scheme().group_size;
        view.stride = w.record_floats() * 4;
        view.data = w.code_row(0);
        view.scales = w.parameters(0, 0);
        if (view.asymmetric) view.offsets = w.parameters(0, 1);
        break;
    }
    return view;
  }

  Eigen::Index groups() const { return cols / group_size; }

  // Bytes of one stored row (cols is even for int4: a multiple of the group size).
  Eigen::Index row_bytes() const {
    switch (format) {
      case Format::f32: return cols * 4;
      case Format::f16: return cols * 2;
      case Format::int8: return cols;
      case Format::int4: return cols / 2;
    }
    return 0;
  }

  // Floats from one row's scales (or offsets) to the next row's.
  Eigen::Index parameter_stride() const { return stride / static_cast<Eigen::Index>(sizeof(float)); }

  // How many rows ahead the SIMD kernels prefetch. They work on blocks of
  // rows, reading each row a few bytes at a time: a dozen interleaved short
  // streams that the hardware prefetcher follows too late (int8 and int4
  // GEMV read DRAM at about half the bandwidth without help). Prefetching the
  // rows about 16 KiB ahead, one cache line per row as the block advances,
  // restores streaming speed; 8 rows at least, the largest block.
  Eigen::Index prefetch_rows_ahead() const {
    constexpr Eigen::Index distance_bytes = 16 * 1024;
    const Eigen::Index rows_ahead = (distance_bytes + stride - 1) / stride;
    return std::max<Eigen::Index>(8, (rows_ahead + 7) / 8 * 8);
  }

  // Pointers into the storage of row r.
  const float* f32_row(Eigen::Index r) const { return static_cast<const float*>(data) + r * cols; }
  const std::uint16_t* f16_row(Eigen::Index r) const { return static_cast<const std::uint16_t*>(data) + r * cols; }
  const std::int8_t* int8_row(Eigen::Index r) const { return static_cast<const std::int8_t*>(data) + r * stride; }
  const std::uint8_t* int4_row(Eigen::Index r) const { return static_cast<const std::uint8_t*>(data) + r * stride; }
  const float* scales_row(Eigen::Index r) const { return scales + r * parameter_stride(); }
  const float* offsets_row(Eigen::Index r) const { return offsets + r * parameter_stride(); }

  // The offset of int4 group g of row r in the unsigned-nibble form
  // ŵ = scale · u + offset: symmetric int4 stores u = q + 8, so its offset is −8·scale.
  float int4_offset(Eigen::Index r, Eigen::Index g) const {
    return asymmetric ? offsets_row(r)[g] : -8.0f * scales_row(r)[g];
  }
};

// Where a block of rows starting at r0 keeps its int4 bytes, scales and
// (asymmetric only) offsets, for the SIMD kernels: one base pointer per array
// and the rows' stride rather than a pointer per row, because eight row
// pointers leave GCC too few registers for the loop.
struct Int4RowBlock {
  const std::uint8_t* packed;
  const float* scales;
  const float* offsets;  // null when symmetric

  Int4RowBlock(const WeightView& w, Eigen::Index r0)
      : packed(w.int4_row(r0)), scales(w.scales_row(r0)), offsets(w.asymmetric ? w.offsets_row(r0) : nullptr) {}

  // Group g's offset in the block's first row, as WeightView::int4_offset gives it.
  float offset(Eigen::Index g) const { return offsets != nullptr ? offsets[g] : -8.0f * scales[g]; }

  // The block `rows` rows further on, rows `stride` bytes apart (WeightView::stride).
  void advance(Eigen::Index rows, Eigen::Index stride) {
    packed += rows * stride;
    scales += rows * stride / static_cast<Eigen::Index>(sizeof(float));
    if (offsets != nullptr) offsets += rows * stride / static_cast<Eigen::Index>(sizeof(float));
  }
};

}  // namespace dilemma::quant::detail
