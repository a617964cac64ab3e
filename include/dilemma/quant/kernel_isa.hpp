#pragma once
// Which instruction set the quantized kernels run with. The library is
// header-only and its users choose their own compiler flags, so the SIMD
// kernels are compiled with per-function target attributes and chosen at run
// time from what the CPU reports, not from -mavx2 / -march.
//
// Two overrides force the portable scalar kernels:
//   * compile time: define DILEMMA_FORCE_SCALAR, and no SIMD kernel is compiled;
//   * run time: the environment variable DILEMMA_KERNELS=scalar (or avx2,
//     avx512, auto) sets the kernels a KernelContext uses by default.

#include <array>
#include <cstdlib>
#include <string_view>
#include <vector>

#include <fmt/ranges.h>

#include "dilemma/error.hpp"

#if !defined(DILEMMA_FORCE_SCALAR) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
#define DILEMMA_QUANT_X86_KERNELS 1
#else
#define DILEMMA_QUANT_X86_KERNELS 0
#endif

#if DILEMMA_QUANT_X86_KERNELS
#include <cpuid.h>
#endif

namespace dilemma::quant {

#if DILEMMA_QUANT_X86_KERNELS
namespace detail {

// Clang's __builtin_cpu_supports does not know "f16c"; CPUID leaf 1 does.
inline bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

// VNNI (vpdpbusd) serves only the int8-activation kernels of the avx512 set,
// which fall back to the AVX2 ones without it.
inline bool cpu_has_avx512_vnni() {
  static const bool available = __builtin_cpu_supports("avx512vnni");
  return available;
}

// BF16 (vdpbf16ps) serves only the int4 kernel of bfloat16 activations, which
// falls back to the float kernels without it.
inline bool cpu_has_avx512_bf16() {
  static const bool available = __builtin_cpu_supports("avx512bf16");
  return available;
}

}  // namespace detail
#endif

// scalar: portable C++, the reference every SIMD kernel is tested against.
// avx2: AVX2 + FMA + F16C. avx512: AVX-512 F/BW/VL (+ the avx2 set).
enum class KernelIsa { scalar, avx2, avx512 };

inline constexpr std::array<KernelIsa, 3> all_kernel_isas = {KernelIsa::scalar, KernelIsa::avx2, KernelIsa::avx512};

inline constexpr std::string_view kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::scalar: return "scalar";
    case KernelIsa::avx2: return "avx2";
    case KernelIsa::avx512: return "avx512";
  }
  return "scalar";
}

// Whether this build contains the kernels for `isa` and this CPU (and its OS,
// which must save the wider registers) can run them.
inline bool kernel_isa_available(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::scalar: return true;
#if DILEMMA_QUANT_X86_KERNELS
    case KernelIsa::avx2: {
      static const bool available =
          __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && detail::cpu_has_f16c();
      return available;
    }
    case KernelIsa::avx512: {
      static const bool available = kernel_isa_available(KernelIsa::avx2) && __builtin_cpu_supports("avx512f") &&
                                    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
      return available;
    }
#else
    case KernelIsa::avx2:
    case KernelIsa::avx512: return false;
#endif
  }
  return false;
}

inline std::vector<KernelIsa> available_kernel_isas() {
  std::vector<KernelIsa> available;
  for (KernelIsa isa : all_kernel_isas) {
    if (kernel_isa_available(isa)) available.push_back(isa);
  }
  return available;
}

inline KernelIsa best_kernel_isa() { return available_kernel_isas().back(); }

// The kernels a setting of DILEMMA_KERNELS selects: "auto" or "" for the best
// available, otherwise the named set, which must be available.
inline KernelIsa kernel_isa_from_setting(std::string_view setting) {
  if (setting.empty() || setting == "auto") return best_kernel_isa();
  for (KernelIsa isa : all_kernel_isas) {
    if (kernel_isa_name(isa) != setting) continue;
    if (!kernel_isa_available(isa)) {
      std::vector<std::string_view> names;
      for (KernelIsa available : available_kernel_isas()) names.push_back(kernel_isa_name(available));
      dilemma::detail::fail("DILEMMA_KERNELS={}: not available on this {} (available: {})", setting,
                            DILEMMA_QUANT_X86_KERNELS ? "CPU" : "build", fmt::join(names, ", "));
    }
    return isa;
  }
  dilemma::detail::fail("DILEMMA_KERNELS={}: unknown kernel set (expected auto, scalar, avx2 or avx512)", setting);
}

// The kernels used when a KernelContext does not name any: DILEMMA_KERNELS if
// set, otherwise the best available. Read once per process.
inline KernelIsa default_kernel_isa() {
  static const KernelIsa isa = [] {
    const char* setting = std::getenv("DILEMMA_KERNELS");
    return kernel_isa_from_setting(setting == nullptr ? std::string_view{} : std::string_view{setting});
  }();
  return isa;
}

}  // namespace dilemma::quant
