#pragma once
// Element types of checkpoint tensors, and their conversion to float32, the
// type the model computes in.

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <Eigen/Core>
#include <fmt/format.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "dilemma/error.hpp"

namespace dilemma::io {

// Checkpoint and .npy data are little-endian, and the readers hand out views of
// the mapped bytes without swapping them.
static_assert(std::endian::native == std::endian::little, "dilemma::io requires a little-endian host");

// The safetensors dtypes a model checkpoint is expected to use.
enum class DType { f32, f16, bf16, f64, i8, u8, i16, i32, i64, boolean };

namespace detail {

struct DTypeInfo {
  DType dtype;
  std::string_view name;  // as spelled in safetensors headers
  std::size_t size;       // bytes per element
  bool floating;
};

// Indexed by the enumerator's value.
inline constexpr std::array<DTypeInfo, 10> dtype_table{{
    {DType::f32, "F32", 4, true},
    {DType::f16, "F16", 2, true},
    {DType::bf16, "BF16", 2, true},
    {DType::f64, "F64", 8, true},
    {DType::i8, "I8", 1, false},
    {DType::u8, "U8", 1, false},
    {DType::i16, "I16", 2, false},
    {DType::i32, "I32", 4, false},
    {DType::i64, "I64", 8, false},
    {DType::boolean, "BOOL", 1, false},
}};

static_assert(
    [] {
      for (std::size_t i = 0; i < dtype_table.size(); ++i) {
        if (static_cast<std::size_t>(dtype_table[i].dtype) != i) return false;
      }
      return true;
    }(),
    "dtype_table must be ordered like DType");

inline constexpr const DTypeInfo& dtype_info(DType dtype) { return dtype_table[static_cast<std::size_t>(dtype)]; }

// "F32, F16, ...", for error messages that list the accepted names.
inline std::string supported_dtype_names() {
  std::string names;
  for (const DTypeInfo& info : dtype_table) {
    if (!names.empty()) names += ", ";
    names += info.name;
  }
  return names;
}

inline float f16_bits_to_f32(std::uint16_t bits) {
  return static_cast<float>(Eigen::half(Eigen::half_impl::raw_uint16_to_half(bits)));
}

inline void f16_to_f32(std::span<const std::byte> src, std::span<float> dst) {
  std::size_t i = 0;
#if defined(__F16C__)
  // Eigen::half converts one value at a time; F16C does eight per instruction,
  // which matters when a whole checkpoint is upcast at load time.
  for (; i + 8 <= dst.size(); i += 8) {
    const __m128i halves = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src.data() + 2 * i));
    _mm256_storeu_ps(dst.data() + i, _mm256_cvtph_ps(halves));
  }
#endif
  for (; i < dst.size(); ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, src.data() + 2 * i, sizeof bits);
    dst[i] = f16_bits_to_f32(bits);
  }
}

inline void bf16_to_f32(std::span<const std::byte> src, std::span<float> dst) {
  // BF16 is the upper half of a float32, so widening is exact.
  for (std::size_t i = 0; i < dst.size(); ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, src.data() + 2 * i, sizeof bits);
    dst[i] = std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
  }
}

inline void f64_to_f32(std::span<const std::byte> src, std::span<float> dst) {
  for (std::size_t i = 0; i < dst.size(); ++i) {
    double value;
    std::memcpy(&value, src.data() + 8 * i, sizeof value);
    dst[i] = static_cast<float>(value);
  }
}

}  // namespace detail

inline std::string_view dtype_name(DType dtype) { return detail::dtype_info(dtype).name; }

inline std::optional<DType> parse_dtype(std::string_view name) {
  for (const detail::DTypeInfo& info : detail::dtype_table) {
    if (info.name == name) return info.dtype;
  }
  return std::nullopt;
}

inline std::size_t dtype_size(DType dtype) { return detail::dtype_info(dtype).size; }

inline bool is_floating(DType dtype) { return detail::dtype_info(dtype).floating; }

// Converts little-endian elements of a floating dtype to float32: exact for F16
// and BF16, rounded to nearest for F64. `src` may be unaligned (tensors sit at
// arbitrary offsets of a mapped file).
inline void convert_to_f32(DType dtype, std::span<const std::byte> src, std::span<float> dst) {
  if (!is_floating(dtype)) {
    dilemma::detail::fail("convert_to_f32: {} is not a floating-point dtype", dtype_name(dtype));
  }
  if (src.size() != dst.size() * dtype_size(dtype)) {
    dilemma::detail::fail(
        "convert_to_f32: {} bytes of {} do not match {} float32 destination elements ({} bytes expected)", src.size(),
        dtype_name(dtype), dst.size(), dst.size() * dtype_size(dtype));
  }
  if (dst.empty()) return;  // also keeps null spans away from memcpy
  if (dtype == DType::f32) {
    std::memcpy(dst.data(), src.data(), src.size());
  } else if (dtype == DType::f16) {
    detail::f16_to_f32(src, dst);
  } else if (dtype == DType::bf16) {
    detail::bf16_to_f32(src, dst);
  } else {
    detail::f64_to_f32(src, dst);
  }
}

}  // namespace dilemma::io
