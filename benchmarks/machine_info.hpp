#pragma once
// The facts a benchmark result is meaningless without: which CPU, how many
// hardware threads, how busy the machine was, and how the program was built.

#include <unistd.h>
#include <sys/utsname.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <Eigen/Core>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_build_info.hpp"

namespace dilemma::bench {

namespace detail {

inline std::string trimmed(std::string_view text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  return std::string(text.substr(first, text.find_last_not_of(" \t") - first + 1));
}

// The value of the first "<key> : <value>" line of /proc/cpuinfo.
inline std::optional<std::string> cpuinfo_field(std::string_view key) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    const std::string_view text = line;
    const auto colon = text.find(':');
    if (colon != std::string_view::npos && trimmed(text.substr(0, colon)) == key) {
      return trimmed(text.substr(colon + 1));
    }
  }
  return std::nullopt;
}

inline nlohmann::json optional_json(const std::optional<std::string>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

inline nlohmann::json positive_sysconf(int name) {
  const long value = sysconf(name);
  return value > 0 ? nlohmann::json(value) : nlohmann::json(nullptr);
}

}  // namespace detail

// The 1-, 5- and 15-minute load averages, or null where /proc/loadavg is absent:
// other processes' load is the main source of noise on a shared machine.
inline nlohmann::json load_average() {
  std::ifstream in("/proc/loadavg");
  std::array<double, 3> load{};
  if (!(in >> load[0] >> load[1] >> load[2])) return nullptr;
  return load;
}

inline unsigned hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

inline nlohmann::json machine_info() {
  utsname system{};
  const bool have_uname = uname(&system) == 0;
  return {
      {"cpu_model", detail::optional_json(detail::cpuinfo_field("model name"))},
      {"cpu_family", detail::optional_json(detail::cpuinfo_field("cpu family"))},
      {"cpu_model_number", detail::optional_json(detail::cpuinfo_field("model"))},
      {"hardware_threads", hardware_threads()},
      // As the OS reports it; under a hypervisor this may be the whole socket's L3.
      {"l3_cache_bytes", detail::positive_sysconf(_SC_LEVEL3_CACHE_SIZE)},
      {"memory_bytes",
       static_cast<std::uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE))},
      {"kernel", have_uname ? nlohmann::json(fmt::format("{} {} {}", system.sysname, system.release, system.machine))
                            : nlohmann::json(nullptr)},
  };
}

inline nlohmann::json build_info() {
  return {
      {"compiler", build::compiler},
      {"build_type", build::build_type},
      {"flags", build::cxx_flags},
      {"eigen_version", fmt::format("{}.{}.{}", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION)},
      {"eigen_simd", Eigen::SimdInstructionSetsInUse()},
      {"eigen_threads", Eigen::nbThreads()},
  };
}

}  // namespace dilemma::bench
