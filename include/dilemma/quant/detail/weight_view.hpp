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

struct WeightView {
  Format format = Format::f32;
  bool asymmetric = false;
  Eigen::Index rows = 0;
  Eigen::Index cols = 0;
  Eigen::Index group_size = 0;  // integer formats only
  const void* data = nullptr;
  const float* scales = nullptr;
  const float* offsets = nullptr;  // asymmetric int4 only

  static WeightView of(const QuantizedMatrix& w) {
    const bool integer = is_integer_format(w.format());
    return {w.format(),
            has_offsets(w.format(), w.scheme()),
            w.rows(),
            w.cols(),
            integer ? w.scheme().group_size : 0,
            w.data().data(),
            w.scales().data(),
            w.offsets().data()};
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

  // How many rows ahead the SIMD kernels prefetch. They work on blocks of
  // rows, reading each row a few bytes at a time: a dozen interleaved short
  // streams that the hardware prefetcher follows too late (int8 and int4
  // GEMV read DRAM at about half the bandwidth without help). Prefetching the
  // rows about 16 KiB ahead, one cache line per row as the block advances,
  // restores streaming speed; 8 rows at least, the largest block.
  Eigen::Index prefetch_rows_ahead() const {
    constexpr Eigen::Index distance_bytes = 16 * 1024;
    const Eigen::Index rows_ahead = (distance_bytes + row_bytes() - 1) / row_bytes();
    return std::max<Eigen::Index>(8, (rows_ahead + 7) / 8 * 8);
  }

  // Pointers into the storage of row r; the storage really holds these types,
  // data() only exposes it as bytes.
  const float* f32_row(Eigen::Index r) const { return static_cast<const float*>(data) + r * cols; }
  const std::uint16_t* f16_row(Eigen::Index r) const { return static_cast<const std::uint16_t*>(data) + r * cols; }
  const std::int8_t* int8_row(Eigen::Index r) const { return static_cast<const std::int8_t*>(data) + r * cols; }
  const std::uint8_t* int4_row(Eigen::Index r) const { return static_cast<const std::uint8_t*>(data) + r * cols / 2; }
  const float* scales_row(Eigen::Index r) const { return scales + r * groups(); }
  const float* offsets_row(Eigen::Index r) const { return offsets + r * groups(); }

  // The offset of int4 group g of row r in the unsigned-nibble form
  // ŵ = scale · u + offset: symmetric int4 stores u = q + 8, so its offset is −8·scale.
  float int4_offset(Eigen::Index r, Eigen::Index g) const {
    return asymmetric ? offsets_row(r)[g] : -8.0f * scales_row(r)[g];
  }
};

// Where a block of rows starting at r0 keeps its int4 bytes, scales and
// (asymmetric only) offsets, for the SIMD kernels: one base pointer and a
// stride per array rather than a pointer per row, because the WeightView
// accessors divide by the group size and eight row pointers leave GCC too few
// registers for the loop.
struct Int4RowBlock {
  const std::uint8_t* packed;
  const float* scales;
  const float* offsets;  // null when symmetric

  Int4RowBlock(const WeightView& w, Eigen::Index r0)
      : packed(w.int4_row(r0)), scales(w.scales_row(r0)), offsets(w.asymmetric ? w.offsets_row(r0) : nullptr) {}

  // Group g's offset in the block's first row, as WeightView::int4_offset gives it.
  float offset(Eigen::Index g) const { return offsets != nullptr ? offsets[g] : -8.0f * scales[g]; }

  // The block `rows` rows further on.
  void advance(Eigen::Index rows, Eigen::Index row_bytes, Eigen::Index groups) {
    packed += rows * row_bytes;
    scales += rows * groups;
    if (offsets != nullptr) offsets += rows * groups;
  }
};

}  // namespace dilemma::quant::detail
