#pragma once
// The machine's sustained memory read bandwidth: the ceiling of a decode step,
// which streams every weight matrix once to produce one token. Measured as a
// sum over a buffer far larger than the last-level cache (so every pass comes
// from DRAM), vectorized with the same SIMD width the model's kernels use, in
// each of the read patterns of read_patterns.hpp; a repetition counts the
// faster.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <latch>
#include <numeric>
#include <span>
#include <thread>
#include <vector>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "read_patterns.hpp"
#include "summary.hpp"

namespace dilemma::bench {

struct ReadBandwidth {
  unsigned threads = 1;
  Summary gigabytes_per_second;  // 1 GB = 1e9 bytes
};

struct BandwidthReport {
  std::size_t buffer_bytes = 0;
  ReadBandwidth single_thread;
  ReadBandwidth all_threads;
};

namespace detail {

// A volatile store keeps the compiler from discarding sums nothing else reads.
inline volatile float read_sink = 0;

// Seconds for `threads` threads to read disjoint, equal slices of `buffer`
// once in `pattern`. The clock starts when every thread is created and
// waiting, so thread start-up is not counted as memory time.
inline double timed_parallel_read(std::span<const float> buffer, unsigned threads, ReadPattern pattern) {
  std::vector<float> partial_sums(threads);
  std::latch ready(threads);
  std::latch start(1);
  std::vector<std::jthread> readers;
  const std::size_t slice = buffer.size() / threads;
  try {
    for (unsigned t = 0; t < threads; ++t) {
      const std::size_t first = t * slice;
      const auto part = buffer.subspan(first, t + 1 == threads ? buffer.size() - first : slice);
      readers.emplace_back([&partial_sums, &ready, &start, part, t, pattern] {
        ready.count_down();
        start.wait();
        partial_sums[t] = read_sum(part, pattern);
      });
    }
  } catch (...) {
    // Release the readers already started so that their destructors can join.
    start.count_down();
    throw;
  }
  ready.wait();
  const auto begin = std::chrono::steady_clock::now();
  start.count_down();
  readers.clear();  // joins every reader
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - begin;
  read_sink = std::accumulate(partial_sums.begin(), partial_sums.end(), 0.0f);
  return elapsed.count();
}

inline ReadBandwidth measure(std::span<const float> buffer, unsigned threads, int warmup, int repetitions) {
  const double bytes = static_cast<double>(buffer.size_bytes());
  for (int i = 0; i < warmup; ++i) timed_parallel_read(buffer, threads, ReadPattern::linear);
  std::vector<double> rates;
  for (int i = 0; i < repetitions; ++i) {
    double fastest = 0;
    for (ReadPattern pattern : all_read_patterns) {
      fastest = std::max(fastest, bytes / timed_parallel_read(buffer, threads, pattern) / 1e9);
    }
    rates.push_back(fastest);
  }
  return {threads, summarize(std::move(rates))};
}

}  // namespace detail

// Read bandwidth with one thread (what single-threaded Eigen GEMV can use) and
// with `all_threads` threads (what the machine can deliver).
inline BandwidthReport measure_read_bandwidth(std::size_t buffer_bytes, unsigned all_threads, int warmup,
                                              int repetitions) {
  if (buffer_bytes < sizeof(float) * all_threads) {
    dilemma::detail::fail("bandwidth buffer of {} bytes is too small to split across {} threads", buffer_bytes,
                          all_threads);
  }
  // Filling the buffer faults every page in before the first timed pass.
  const std::vector<float> buffer(buffer_bytes / sizeof(float), 1.0f);
  return {buffer.size() * sizeof(float), detail::measure(buffer, 1, warmup, repetitions),
          detail::measure(buffer, all_threads, warmup, repetitions)};
}

}  // namespace dilemma::bench
