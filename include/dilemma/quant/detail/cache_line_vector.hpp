#pragma once
// A std::vector whose data starts on a cache line, for the buffers the SIMD
// kernels read with full-width loads on every step (the weights, activation
// codes and lanes). std::vector's storage is only 16-byte aligned, so every
// 64-byte load from it straddled two lines; on the project's Zen 5 host
// aligning the activations made the int4 × int8 GEMV of fc2 about 1.2 times
// faster from DRAM, and aligning the weights too added up to 8 points of the
// bandwidth (docs/performance.md, "A Zen 5 host"). Not
// Eigen::aligned_allocator: its alignment is EIGEN_MAX_ALIGN_BYTES, which
// follows the compiler flags of the including program (16 bytes without
// -mavx512f), while the kernels pick AVX-512 at run time.

#include <cstddef>
#include <new>
#include <vector>

namespace dilemma::quant::detail {

inline constexpr std::size_t cache_line_bytes = 64;

template <typename T>
struct CacheLineAllocator {
  using value_type = T;

  CacheLineAllocator() = default;
  // Implicit, as std::allocator's: containers rebind allocators by conversion.
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>& /*other*/) {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{cache_line_bytes}));
  }
  void deallocate(T* p, std::size_t /*n*/) { ::operator delete(p, std::align_val_t{cache_line_bytes}); }

  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) = default;
};

template <typename T>
using CacheLineVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace dilemma::quant::detail
