// Choosing kernels: runtime detection and the DILEMMA_KERNELS override.

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "dilemma/quant/kernel_isa.hpp"

using namespace dilemma;
using quant::KernelIsa;

TEST_CASE("the scalar kernels are always available and the best set is the widest available") {
  const auto available = quant::available_kernel_isas();
  REQUIRE_FALSE(available.empty());
  CHECK(available.front() == KernelIsa::scalar);
  CHECK(quant::best_kernel_isa() == available.back());
  if (quant::kernel_isa_available(KernelIsa::avx512)) CHECK(quant::kernel_isa_available(KernelIsa::avx2));
#if defined(DILEMMA_FORCE_SCALAR)
  CHECK(available.size() == 1);
#endif
}

TEST_CASE("DILEMMA_KERNELS names a kernel set, auto or nothing picks the best") {
  CHECK(quant::kernel_isa_from_setting("scalar") == KernelIsa::scalar);
  CHECK(quant::kernel_isa_from_setting("auto") == quant::best_kernel_isa());
  CHECK(quant::kernel_isa_from_setting("") == quant::best_kernel_isa());
  for (KernelIsa isa : quant::available_kernel_isas()) {
    CHECK(quant::kernel_isa_from_setting(quant::kernel_isa_name(isa)) == isa);
  }
  CHECK_THROWS_WITH_AS(quant::kernel_isa_from_setting("sse"),
                       "DILEMMA_KERNELS=sse: unknown kernel set (expected auto, scalar, avx2 or avx512)", Error);
  if (!quant::kernel_isa_available(KernelIsa::avx512)) {
    CHECK_THROWS_WITH_AS(quant::kernel_isa_from_setting("avx512"),
                         doctest::Contains("DILEMMA_KERNELS=avx512: not available"), Error);
  }
}

TEST_CASE("the default kernels follow DILEMMA_KERNELS when the suite runs with it") {
  const char* setting = std::getenv("DILEMMA_KERNELS");
  const KernelIsa expected = quant::kernel_isa_from_setting(setting == nullptr ? "" : setting);
  CHECK(quant::default_kernel_isa() == expected);
  MESSAGE("kernels in use: ", std::string(quant::kernel_isa_name(quant::default_kernel_isa())));
}
