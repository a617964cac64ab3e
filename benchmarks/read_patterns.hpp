#pragma once
// How the bandwidth probes read memory. A probe's figure is the faster of
// these patterns, so that it stays the ceiling of every kernel: on the Zen 4
// development host the GEMV kernels, which prefetch into L2 in software,
// read DRAM up to 20 % faster than a plain linear sum, which relies on the
// hardware prefetcher alone (docs/performance.md, "Prefetching into L2").

#include <array>
#include <cstddef>
#include <span>

#include <Eigen/Core>

namespace dilemma::bench {

enum class ReadPattern {
  linear,                 // one vectorized sum from the first float to the last
  prefetched_row_blocks,  // fc2's f32 GEMV without its arithmetic (below)
};

inline constexpr std::array all_read_patterns = {ReadPattern::linear, ReadPattern::prefetched_row_blocks};

// What a probe's figure is, for the reports.
inline constexpr const char* probe_reader =
    "per repetition, the faster of a linear sum and 8-row blocks of 16 KiB rows with L2 prefetch "
    "(benchmarks/read_patterns.hpp)";

namespace detail {

// Blocks of 8 rows of 16 KiB, 64 bytes of each row in turn, each line of a
// block prefetched into L2 (prefetcht1) while the block 8 rows before it is
// read: the access pattern of the AVX-512 f32 kernel on fc2's 4096-column rows.
inline float prefetched_row_blocks_sum(std::span<const float> values) {
  using Line = Eigen::Array<float, 16, 1>;  // 64 bytes
  constexpr std::size_t rows = 8, row_floats = 4096, block = rows * row_floats;
  Line sum = Line::Zero();
  std::size_t first = 0;
  for (; first + block <= values.size(); first += block) {
    const float* rows_begin = values.data() + first;
    const bool next_block_exists = first + 2 * block <= values.size();
    for (std::size_t c = 0; c < row_floats; c += Line::SizeAtCompileTime) {
      for (std::size_t r = 0; r < rows; ++r) {
        if (next_block_exists) __builtin_prefetch(rows_begin + block + r * row_floats + c, 0, 2);
        sum += Eigen::Map<const Line>(rows_begin + r * row_floats + c);
      }
    }
  }
  const auto rest = static_cast<Eigen::Index>(values.size() - first);
  return sum.sum() + Eigen::Map<const Eigen::VectorXf>(values.data() + first, rest).sum();
}

}  // namespace detail

// Σ values, read once in `pattern`.
inline float read_sum(std::span<const float> values, ReadPattern pattern) {
  if (pattern == ReadPattern::prefetched_row_blocks) return detail::prefetched_row_blocks_sum(values);
  return Eigen::Map<const Eigen::VectorXf>(values.data(), static_cast<Eigen::Index>(values.size())).sum();
}

}  // namespace dilemma::bench
