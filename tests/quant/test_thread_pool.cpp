// The thread pool runs every index exactly once, passes exceptions back to the
// caller, and never deadlocks when a loop is started from inside another.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <utility>
#include <vector>

#include "dilemma/parallel/thread_pool.hpp"

using namespace dilemma;

TEST_CASE("every index runs exactly once, in chunks no longer than asked") {
  for (unsigned threads : {1u, 2u, 3u, 4u}) {
    parallel::ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (std::size_t count : {0u, 1u, 7u, 64u, 1000u}) {
      for (std::size_t chunk : {0u, 1u, 3u, 16u, 5000u}) {
        std::vector<std::atomic<int>> hits(count);
        std::atomic<bool> chunk_too_long{false};
        pool.parallel_for(count, chunk, [&](std::size_t begin, std::size_t end) {
          if (end - begin > std::max<std::size_t>(chunk, 1)) chunk_too_long = true;
          for (std::size_t i = begin; i < end; ++i) ++hits[i];
        });
        CHECK_FALSE(chunk_too_long.load());
        for (std::size_t i = 0; i < count; ++i) CHECK(hits[i].load() == 1);
      }
    }
  }
}

TEST_CASE("without a pool, for_each_chunk runs the same chunks in order on the calling thread") {
  CHECK(parallel::thread_count(nullptr) == 1);
  for (std::size_t chunk : {0u, 1u, 3u, 5000u}) {
    std::vector<std::pair<std::size_t, std::size_t>> chunks;
    parallel::for_each_chunk(nullptr, 7, chunk, [&](std::size_t begin, std::size_t end) {
      chunks.emplace_back(begin, end);
    });
    std::vector<std::pair<std::size_t, std::size_t>> expected;
    const std::size_t step = std::max<std::size_t>(chunk, 1);
    for (std::size_t begin = 0; begin < 7; begin += step) {
      expected.emplace_back(begin, std::min<std::size_t>(7, begin + step));
    }
    CHECK(chunks == expected);
  }
  parallel::ThreadPool pool(2);
  CHECK(parallel::thread_count(&pool) == 2);
  std::vector<std::atomic<int>> hits(100);
  parallel::for_each_chunk(&pool, hits.size(), 10, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) ++hits[i];
  });
  for (const auto& hit : hits) CHECK(hit.load() == 1);
}

TEST_CASE("thousands of short loops in a row complete (the workers' wake-up path)") {
  parallel::ThreadPool pool(2);
  std::atomic<long> total{0};
  for (int job = 0; job < 5000; ++job) {
    pool.parallel_for(8, 1, [&](std::size_t begin, std::size_t end) { total += static_cast<long>(end - begin); });
  }
  CHECK(total.load() == 5000 * 8);
}

TEST_CASE("an exception in a chunk reaches the caller and the pool stays usable") {
  parallel::ThreadPool pool(2);
  CHECK_THROWS_WITH_AS(pool.parallel_for(100, 1,
                                         [](std::size_t begin, std::size_t) {
                                           if (begin == 42) throw std::runtime_error("chunk 42 failed");
                                         }),
                       "chunk 42 failed", std::runtime_error);
  std::atomic<int> runs{0};
  pool.parallel_for(10, 1, [&](std::size_t, std::size_t) { ++runs; });
  CHECK(runs.load() == 10);
}

TEST_CASE("a loop started inside a loop runs on its own thread instead of deadlocking") {
  parallel::ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.parallel_for(4, 1, [&](std::size_t, std::size_t) {
    pool.parallel_for(5, 1, [&](std::size_t begin, std::size_t end) { inner += static_cast<int>(end - begin); });
  });
  CHECK(inner.load() == 20);
}

TEST_CASE("a pool needs at least one thread") {
  CHECK_THROWS_WITH_AS(parallel::ThreadPool(0), "ThreadPool: the thread count must be at least 1", Error);
}
