#pragma once
// A weight matrix [rows × cols] = [out_features × in_features] (the checkpoint's
// layout) stored in one of the formats of format.hpp. Integer formats split
// every row into groups of `group_size` consecutive columns; each group has its
// own affine map from integer codes to weights,
//     ŵ = scale · code + offset,
// with offset = 0 for the symmetric formats (int8, symmetric int4) and a free
// float for asymmetric int4. docs/quantization-scheme.md is the byte-level
// specification; this header is its implementation.
//
// Storage, row-major, little-endian:
//   f32   4 bytes per weight.
//   f16   IEEE binary16 bits, 2 bytes per weight.
//   int8  one signed byte per weight, the code q ∈ [-128, 127].
//   int4  two codes per byte, cols/2 bytes per row. A row is cut into blocks
//         of 32 columns (16 bytes); byte j of block b holds column 32b + j in
//         its low nibble and column 32b + 16 + j in its high nibble. This order
//         lets a SIMD kernel get 16 consecutive codes from 16 bytes with one
//         mask and one shift. A nibble holds u = q + 8 for symmetric int4
//         (q ∈ [-8, 7]) and the code u ∈ [0, 15] itself for asymmetric int4.
//   scales, offsets: float32 [rows × cols/group_size], row-major.
// That is the checkpoint's layout, which data(), scales() and offsets() return.
// In memory an integer matrix keeps one record per row instead, rows back to
// back: the row's scales, then (asymmetric int4) its offsets, then its codes
// as above. A GEMV then reads one stream from DRAM, not a stream of codes and
// another of scales (docs/performance.md, "Scales beside their codes").
//
// Round-to-nearest (quantize()) uses the symmetric ranges [-127, 127] and
// [-7, 7], so that the largest magnitude of a group is exact with either sign;
// the storage accepts every code its bits can hold, which calibration methods
// that clip may use.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/detail/cache_line_vector.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::quant {

namespace detail {
struct WeightView;
}  // namespace detail

// Integer group sizes must be multiples of the int4 block, so that no block
// straddles two groups and every row is a whole number of blocks.
inline constexpr std::int64_t int4_block = 32;

// The affine map of one group: ŵ = scale · code + offset.
struct GroupParams {
  float scale = 0;
  float offset = 0;
};

// Codes an integer format can store; RTN uses the symmetric subset
// [-max, max] of the symmetric formats.
struct CodeRange {
  int min = 0;
  int max = 0;
};

inline bool is_integer_format(Format format) { return format == Format::int8 || format == Format::int4; }

inline bool has_offsets(Format format, const QuantScheme& scheme) {
  return format == Format::int4 && scheme.int4_asymmetric;
}

inline CodeRange code_range(Format format, const QuantScheme& scheme) {
  switch (format) {
    case Format::int8: return {-128, 127};
    case Format::int4: return scheme.int4_asymmetric ? CodeRange{0, 15} : CodeRange{-8, 7};
    case Format::f32:
    case Format::f16: break;
  }
  dilemma::detail::fail("code_range(): {} is not an integer format", format_name(format));
}

namespace detail {

inline void check_integer_format(Format format, std::string_view function) {
  if (!is_integer_format(format)) {
    dilemma::detail::fail("{}: {} is not an integer format", function, format_name(format));
  }
}

inline void check_scheme(const QuantScheme& scheme, std::string_view name) {
  if (scheme.group_size <= 0 || scheme.group_size % int4_block != 0) {
    dilemma::detail::fail("{}: group size {} is not a positive multiple of {}", name, scheme.group_size, int4_block);
  }
}

inline void check_shape(Eigen::Index rows, Eigen::Index cols, Format format, const QuantScheme& scheme,
                        std::string_view name) {
  if (rows <= 0 || cols <= 0) {
    dilemma::detail::fail("{}: shape [{} × {}] has no elements", name, rows, cols);
  }
  if (static_cast<std::uint64_t>(rows) >
      std::numeric_limits<std::uint64_t>::max() / 4 / static_cast<std::uint64_t>(cols)) {
    dilemma::detail::fail("{}: shape [{} × {}] is too large", name, rows, cols);
  }
  if (!is_integer_format(format)) return;
  check_scheme(scheme, name);
  if (cols % scheme.group_size != 0) {
    dilemma::detail::fail("{}: group size {} does not divide the {} columns of its [{} × {}] weight", name,
                          scheme.group_size, cols, rows, cols);
  }
}

inline void check_params(GroupParams params, std::string_view name, Eigen::Index row, Eigen::Index group) {
  if (!std::isfinite(params.scale) || params.scale < 0) {
    dilemma::detail::fail("{}: scale of row {} group {} is {}, expected a finite number ≥ 0", name, row, group,
                          params.scale);
  }
  if (!std::isfinite(params.offset)) {
    dilemma::detail::fail("{}: offset of row {} group {} is {}, expected a finite number", name, row, group,
                          params.offset);
  }
}

inline std::uint16_t f32_to_f16_bits(float value) { return Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(value)); }

inline float f16_bits_to_f32(std::uint16_t bits) {
  return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
}

// Byte offset and shift of column `col` within an int4 row.
inline std::pair<Eigen::Index, int> int4_position(Eigen::Index col) {
  const Eigen::Index block = col / int4_block;
  const Eigen::Index within = col % int4_block;
  const Eigen::Index half = int4_block / 2;
  return {block * half + within % half, within < half ? 0 : 4};
}

}  // namespace detail

// Round-to-nearest parameters of one group: symmetric formats map the group's
// largest magnitude to ±127 (int8) or ±7 (int4); asymmetric int4 maps its
// minimum to code 0 and its maximum to code 15. A group of zeros (or, for
// asymmetric int4, of equal values) gets scale 0 and is reproduced exactly.
inline GroupParams rtn_group_params(Format format, const QuantScheme& scheme, std::span<const float> group) {
  detail::check_integer_format(format, "rtn_group_params()");
  if (has_offsets(format, scheme)) {
    const auto [min, max] = std::ranges::minmax(group);
    return {(max - min) / 15.0f, min};
  }
  float magnitude = 0;
  for (float w : group) magnitude = std::max(magnitude, std::abs(w));
  return {magnitude / static_cast<float>(code_range(format, scheme).max), 0.0f};
}

// The code of `weight` under `params`: round((w − offset) / scale), half away
// from zero, clamped to code_range(). Calibration methods call this with
// scales of their own choosing.
inline int quantize_value(Format format, const QuantScheme& scheme, float weight, GroupParams params) {
  const CodeRange range = code_range(format, scheme);
  if (!std::isfinite(weight)) dilemma::detail::fail("quantize_value(): weight {} is not finite", weight);
  if (!std::isfinite(params.scale) || params.scale < 0 || !std::isfinite(params.offset)) {
    dilemma::detail::fail("quantize_value(): invalid group parameters (scale {}, offset {})", params.scale,
                          params.offset);
  }
  // Every weight of a scale-0 group equals its offset, which code 0 reproduces.
  if (params.scale == 0) return 0;
  const float code = std::round((weight - params.offset) / params.scale);
  // Compared as floats: a code far outside the range may not fit in an int.
  if (!(code >= static_cast<float>(range.min))) return range.min;
  if (!(code <= static_cast<float>(range.max))) return range.max;
  return static_cast<int>(code);
}

inline float dequantize_value(int code, GroupParams params) {
  return params.scale * static_cast<float>(code) + params.offset;
}

class QuantizedMatrix {
 public:
  // An empty f32 matrix, to be assigned.
  QuantizedMatrix() = default;

  // Round-to-nearest quantization of `weight`, group by group. `name` (the
  // tensor's name) starts every error message.
  static QuantizedMatrix quantize(const model::Matrix& weight, Format format, const QuantScheme& scheme = {},
                                  std::string_view name = "weight") {
    QuantizedMatrix q(format, scheme, weight.rows(), weight.cols(), name);
    for (Eigen::Index r = 0; r < weight.rows(); ++r) {
      for (Eigen::Index c = 0; c < weight.cols(); ++c) {
        if (!std::isfinite(weight(r, c))) {
          dilemma::detail::fail("{}: element [{}, {}] is {}, not a finite number", name, r, c, weight(r, c));
        }
      }
    }
    switch (format) {
      case Format::f32: q.f32_.assign(weight.data(), weight.data() + weight.size()); break;
      case Format::f16: q.quantize_f16(weight, name); break;
      case Format::int8:
      case Format::int4: q.quantize_rtn(weight, name); break;
    }
    return q;
  }

  // An integer matrix from codes chosen elsewhere (e.g. by error-feedback
  // calibration): `codes` row-major [rows × cols] within code_range(),
  // `scales` (and, for asymmetric int4, `offsets`) [rows × cols/group_size].
  static QuantizedMatrix from_codes(Format format, const QuantScheme& scheme, Eigen::Index rows, Eigen::Index cols,
                                    std::span<const std::int8_t> codes, std::span<const float> scales,
                                    std::span<const float> offsets = {}, std::string_view name = "weight") {
    detail::check_integer_format(format, name);
    QuantizedMatrix q(format, scheme, rows, cols, name);
    if (codes.size() != q.element_count()) {
      dilemma::detail::fail("{}: {} codes, expected {} for [{} × {}]", name, codes.size(), q.element_count(), rows,
                            cols);
    }
    q.set_group_params(scales, offsets, name);
    const CodeRange range = code_range(format, scheme);
    for (std::size_t i = 0; i < codes.size(); ++i) {
      if (codes[i] < range.min || codes[i] > range.max) {
        dilemma::detail::fail("{}: code {} at [{}, {}] is outside [{}, {}] for {}", name, codes[i],
                              static_cast<Eigen::Index>(i) / cols, static_cast<Eigen::Index>(i) % cols, range.min,
                              range.max, format_name(format));
      }
    }
    for (Eigen::Index r = 0; r < rows; ++r) {
      for (Eigen::Index c = 0; c < cols; ++c) q.set_code(r, c, codes[static_cast<std::size_t>(r * cols + c)]);
    }
    return q;
  }

  // A matrix from its stored form (data() / scales() / offsets() of a matrix
  // with the same format, scheme and shape, e.g. read back from a file), fully
  // validated: sizes, finite and non-negative scales, finite offsets and, for
  // float formats, finite weights.
  static QuantizedMatrix from_data(Format format, const QuantScheme& scheme, Eigen::Index rows, Eigen::Index cols,
                                   std::span<const std::byte> data, std::span<const float> scales = {},
                                   std::span<const float> offsets = {}, std::string_view name = "weight") {
    QuantizedMatrix q(format, scheme, rows, cols, name);
    const std::size_t expected = q.data_bytes();
    if (data.size() != expected) {
      dilemma::detail::fail("{}: {} data has {} bytes, expected {} for [{} × {}]", name, format_name(format),
                            data.size(), expected, rows, cols);
    }
    q.set_group_params(scales, offsets, name);
    switch (format) {
      case Format::f32:
        q.f32_.resize(q.element_count());
        std::memcpy(q.f32_.data(), data.data(), data.size());
        break;
      case Format::f16:
        q.f16_.resize(q.element_count());
        std::memcpy(q.f16_.data(), data.data(), data.size());
        break;
      case Format::int8:
      case Format::int4: {
        const auto row_bytes = static_cast<std::size_t>(q.code_row_bytes());
        for (Eigen::Index r = 0; r < rows; ++r) {
          std::memcpy(q.code_row(r), data.data() + static_cast<std::size_t>(r) * row_bytes, row_bytes);
        }
        break;
      }
    }
    if (!is_integer_format(format)) {
      std::vector<float> row(static_cast<std::size_t>(cols));
      for (Eigen::Index r = 0; r < rows; ++r) {
        q.dequantize_row(r, row);
        for (Eigen::Index c = 0; c < cols; ++c) {
          const float value = row[static_cast<std::size_t>(c)];
          if (!std::isfinite(value)) {
            dilemma::detail::fail("{}: element [{}, {}] is {}, not a finite number", name, r, c, value);
          }
        }
      }
    }
    return q;
  }

  Format format() const { return format_; }
  const QuantScheme& scheme() const { return scheme_; }
  Eigen::Index rows() const { return rows_; }
  Eigen::Index cols() const { return cols_; }
  // Groups per row; 0 for float formats, which have none.
  Eigen::Index groups_per_row() const { return is_integer_format(format_) ? cols_ / scheme_.group_size : 0; }

  // Exact storage: weights, scales and offsets.
  std::size_t bytes() const { return data_bytes() + group_count() * parameters_per_group() * sizeof(float); }

  // The stored weights in the checkpoint's layout (the header comment), a copy.
  std::vector<std::byte> data() const {
    std::vector<std::byte> out(data_bytes());
    switch (format_) {
      case Format::f32: std::memcpy(out.data(), f32_.data(), out.size()); break;
      case Format::f16: std::memcpy(out.data(), f16_.data(), out.size()); break;
      case Format::int8:
      case Format::int4: {
        const auto row_bytes = static_cast<std::size_t>(code_row_bytes());
        for (Eigen::Index r = 0; r < rows_; ++r) {
          std::memcpy(out.data() + static_cast<std::size_t>(r) * row_bytes, code_row(r), row_bytes);
        }
        break;
      }
    }
    return out;
  }

  // Everything the matrix holds in memory (weights, scales, offsets), in its
  // in-memory layout: e.g. to read it through the caches.
  std::span<const std::byte> storage() const {
    switch (format_) {
      case Format::f32: return std::as_bytes(std::span(f32_));
      case Format::f16: return std::as_bytes(std::span(f16_));
      case Format::int8:
      case Format::int4: return std::as_bytes(std::span(records_));
    }
    return {};
  }

  // Scales and offsets [rows × groups_per_row()], row-major, copies (one
  // group's: group_params()); empty for float formats (and offsets for
  // symmetric formats).
  std::vector<float> scales() const { return gather_parameters(0); }
  std::vector<float> offsets() const {
    return has_offsets(format_, scheme_) ? gather_parameters(1) : std::vector<float>{};
  }

  GroupParams group_params(Eigen::Index row, Eigen::Index group) const {
    if (row < 0 || row >= rows_ || group < 0 || group >= groups_per_row()) {
      dilemma::detail::fail("group_params(): no group {} of row {} ([{} × {}] {} weight, {} groups per row)", group,
                            row, rows_, cols_, format_name(format_), groups_per_row());
    }
    return stored_params(row, group);
  }

  // The integer code of one weight (q, or u for asymmetric int4).
  int code(Eigen::Index row, Eigen::Index col) const {
    detail::check_integer_format(format_, "QuantizedMatrix::code()");
    if (row < 0 || row >= rows_ || col < 0 || col >= cols_) {
      dilemma::detail::fail("code(): no element [{}, {}] in a [{} × {}] matrix", row, col, rows_, cols_);
    }
    return stored_code(row, col);
  }

  // All codes, row-major [rows × cols], as from_codes() takes them.
  std::vector<std::int8_t> codes() const {
    detail::check_integer_format(format_, "QuantizedMatrix::codes()");
    std::vector<std::int8_t> all(element_count());
    for (Eigen::Index r = 0; r < rows_; ++r) {
      for (Eigen::Index c = 0; c < cols_; ++c) {
        all[static_cast<std::size_t>(r * cols_ + c)] = static_cast<std::int8_t>(stored_code(r, c));
      }
    }
    return all;
  }

  // Row `row` of Ŵ into `out` (cols() floats), e.g. one token's embedding.
  void dequantize_row(Eigen::Index row, std::span<float> out) const {
    if (row < 0 || row >= rows_ || out.size() != static_cast<std::size_t>(cols_)) {
      dilemma::detail::fail("dequantize_row(): row {} into {} floats of a [{} × {}] weight", row, out.size(), rows_,
                            cols_);
    }
    const auto first = static_cast<std::size_t>(row * cols_);
    switch (format_) {
      case Format::f32: std::copy_n(f32_.begin() + static_cast<std::ptrdiff_t>(first), cols_, out.begin()); return;
      case Format::f16:
        for (Eigen::Index c = 0; c < cols_; ++c) {
          out[static_cast<std::size_t>(c)] = detail::f16_bits_to_f32(f16_[first + static_cast<std::size_t>(c)]);
        }
        return;
      case Format::int8:
      case Format::int4:
        for (Eigen::Index c = 0; c < cols_; ++c) {
          out[static_cast<std::size_t>(c)] =
              dequantize_value(stored_code(row, c), stored_params(row, c / scheme_.group_size));
        }
        return;
    }
  }

  model::Matrix dequantize() const {
    model::Matrix w(rows_, cols_);
    for (Eigen::Index r = 0; r < rows_; ++r) {
      dequantize_row(r, std::span(w.row(r).data(), static_cast<std::size_t>(cols_)));
    }
    return w;
  }

 private:
  QuantizedMatrix(Format format, const QuantScheme& scheme, Eigen::Index rows, Eigen::Index cols, std::string_view name)
      : format_(format), scheme_(scheme), rows_(rows), cols_(cols) {
    detail::check_shape(rows, cols, format, scheme, name);
  }

  friend struct detail::WeightView;

  // ---- the row records of integer formats (the header comment) ----

  // Bytes of one row's codes: a multiple of 16, as cols is of the int4 block.
  Eigen::Index code_row_bytes() const { return format_ == Format::int4 ? cols_ / 2 : cols_; }
  // Floats per group in a record: a scale, and an offset for asymmetric int4.
  std::size_t parameters_per_group() const {
    if (!is_integer_format(format_)) return 0;
    return has_offsets(format_, scheme_) ? 2 : 1;
  }
  // Floats from one row's record to the next.
  Eigen::Index record_floats() const {
    return code_row_bytes() / 4 + groups_per_row() * static_cast<Eigen::Index>(parameters_per_group());
  }
  // Row r's scales, then its offsets, then its codes. The records are floats,
  // which the codes' bytes may alias (unsigned char, as memcpy does).
  std::uint8_t* code_row(Eigen::Index r) {
    return reinterpret_cast<std::uint8_t*>(parameters(r, parameters_per_group()));
  }
  const std::uint8_t* code_row(Eigen::Index r) const {
    return reinterpret_cast<const std::uint8_t*>(parameters(r, parameters_per_group()));
  }
  // Parameter `which` (0: scale, 1: offset) of row r's groups.
  float* parameters(Eigen::Index r, std::size_t which) {
    return records_.data() + r * record_floats() + static_cast<Eigen::Index>(which) * groups_per_row();
  }
  const float* parameters(Eigen::Index r, std::size_t which) const {
    return records_.data() + r * record_floats() + static_cast<Eigen::Index>(which) * groups_per_row();
  }
  void allocate_records() { records_.assign(static_cast<std::size_t>(rows_ * record_floats()), 0.0f); }

  std::vector<float> gather_parameters(std::size_t which) const {
    std::vector<float> out;
    if (!is_integer_format(format_)) return out;
    out.reserve(group_count());
    for (Eigen::Index r = 0; r < rows_; ++r) {
      const float* row = parameters(r, which);
      out.insert(out.end(), row, row + groups_per_row());
    }
    return out;
  }

  GroupParams stored_params(Eigen::Index row, Eigen::Index group) const {
    return {parameters(row, 0)[group], has_offsets(format_, scheme_) ? parameters(row, 1)[group] : 0.0f};
  }

  int stored_code(Eigen::Index row, Eigen::Index col) const {
    if (format_ == Format::int8) return static_cast<std::int8_t>(code_row(row)[col]);
    const auto [byte, shift] = detail::int4_position(col);
    const int nibble = (code_row(row)[byte] >> shift) & 0xF;
    return scheme_.int4_asymmetric ? nibble : nibble - 8;
  }

  std::size_t element_count() const { return static_cast<std::size_t>(rows_) * static_cast<std::size_t>(cols_); }
  std::size_t group_count() const { return static_cast<std::size_t>(rows_ * groups_per_row()); }

  std::size_t data_bytes() const {
    switch (format_) {
      case Format::f32: return element_count() * 4;
      case Format::f16: return element_count() * 2;
      case Format::int8: return element_count();
      case Format::int4: return element_count() / 2;
    }
    return 0;
  }

  void set_group_params(std::span<const float> scales, std::span<const float> offsets, std::string_view name) {
    if (!is_integer_format(format_)) {
      if (!scales.empty() || !offsets.empty()) {
        dilemma::detail::fail("{}: {} takes no scales or offsets, got {} and {}", name, format_name(format_),
                              scales.size(), offsets.size());
      }
      return;
    }
    const std::size_t expected = group_count();
    if (scales.size() != expected) {
      dilemma::detail::fail("{}: {} scales, expected {} ({} rows × {} groups of {})", name, scales.size(), expected,
                            rows_, groups_per_row(), scheme_.group_size);
    }
    const std::size_t expected_offsets = has_offsets(format_, scheme_) ? expected : 0;
    if (offsets.size() != expected_offsets) {
      dilemma::detail::fail("{}: {} offsets, expected {} for {}{}", name, offsets.size(), expected_offsets,
                            scheme_.int4_asymmetric && format_ == Format::int4 ? "asymmetric " : "symmetric ",
                            format_name(format_));
    }
    for (std::size_t i = 0; i < expected; ++i) {
      const auto row = static_cast<Eigen::Index>(i) / groups_per_row();
      const auto group = static_cast<Eigen::Index>(i) % groups_per_row();
      detail::check_params({scales[i], offsets.empty() ? 0.0f : offsets[i]}, name, row, group);
    }
    allocate_records();
    for (std::size_t i = 0; i < expected; ++i) {
      const auto row = static_cast<Eigen::Index>(i) / groups_per_row();
      const auto group = static_cast<Eigen::Index>(i) % groups_per_row();
      parameters(row, 0)[group] = scales[i];
      if (!offsets.empty()) parameters(row, 1)[group] = offsets[i];
    }
  }

  void set_code(Eigen::Index row, Eigen::Index col, int code) {
    if (format_ == Format::int8) {
      code_row(row)[col] = static_cast<std::uint8_t>(static_cast<std::int8_t>(code));
      return;
    }
    const auto [byte, shift] = detail::int4_position(col);
    const int nibble = scheme_.int4_asymmetric ? code : code + 8;
    std::uint8_t& packed = code_row(row)[byte];
    packed = static_cast<std::uint8_t>((packed & ~(0xF << shift)) | (nibble << shift));
  }

  void quantize_f16(const model::Matrix& weight, std::string_view name) {
    constexpr float f16_max = 65504.0f;
    f16_.resize(element_count());
    for (Eigen::Index r = 0; r < rows_; ++r) {
      for (Eigen::Index c = 0; c < cols_; ++c) {
        const float w = weight(r, c);
        // Values up to half an f16 step beyond the largest f16 still round to it.
        if (std::abs(w) >= 65520.0f) {
          dilemma::detail::fail("{}: element [{}, {}] = {} is outside the f16 range (±{})", name, r, c, w, f16_max);
        }
        f16_[static_cast<std::size_t>(r * cols_ + c)] = detail::f32_to_f16_bits(w);
      }
    }
  }

  void quantize_rtn(const model::Matrix& weight, std::string_view name) {
    const Eigen::Index groups = groups_per_row();
    const Eigen::Index size = scheme_.group_size;
    allocate_records();
    for (Eigen::Index r = 0; r < rows_; ++r) {
      for (Eigen::Index g = 0; g < groups; ++g) {
        const std::span<const float> group(weight.row(r).data() + g * size, static_cast<std::size_t>(size));
        const GroupParams params = rtn_group_params(format_, scheme_, group);
        if (!std::isfinite(params.scale)) {
          dilemma::detail::fail("{}: row {} group {} spans a range too wide for a float32 scale", name, r, g);
        }
        parameters(r, 0)[g] = params.scale;
        if (has_offsets(format_, scheme_)) parameters(r, 1)[g] = params.offset;
        for (Eigen::Index i = 0; i < size; ++i) {
          set_code(r, g * size + i, quantize_value(format_, scheme_, group[static_cast<std::size_t>(i)], params));
        }
      }
    }
  }

  Format format_ = Format::f32;
  QuantScheme scheme_;
  Eigen::Index rows_ = 0;
  Eigen::Index cols_ = 0;
  // Exactly one of these holds the weights: f32_ or f16_ for the float
  // formats, records_ for the integer ones. The kernels stream them 64 bytes
  // per load: on cache lines, as the activations they meet
  // (detail/cache_line_vector.hpp).
  detail::CacheLineVector<float> f32_;
  detail::CacheLineVector<std::uint16_t> f16_;
  detail::CacheLineVector<float> records_;
};

}  // namespace dilemma::quant
