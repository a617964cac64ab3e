#pragma once
// A fixed set of worker threads that split one loop at a time between them and
// the calling thread. The kernels it serves are short (a decode-step GEMV of a
// 1024×1024 int4 matrix takes tens of microseconds), so the two costs that
// matter are waking the workers and waiting for the last one: idle workers
// spin briefly before sleeping on a futex (std::atomic::wait), and work is
// handed out in chunks from a shared counter so that a core slowed down by
// another process takes fewer of them.
//
// Why not a ready-made pool: Eigen's unsupported NonBlockingThreadPool (the one
// we already depend on) and the general-purpose pools (BS::thread_pool,
// Taskflow, rvaser/thread_pool) queue std::function tasks, often with a future
// each, and wake workers through condition variables: per loop that costs
// about as much as a whole decode-step GEMV. None of the last three is
// packaged by all of Debian 12, vcpkg and Conan, and OpenMP would impose a
// compiler flag on every user of a header-only library.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "dilemma/error.hpp"

namespace dilemma::parallel {

namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Long enough to bridge the gap between the matrix products of one decode step
// (layer norms, attention) without sleeping, short enough not to burn a shared
// core for long when no more work comes.
inline constexpr std::chrono::microseconds spin_before_sleep{200};

// Waits until `value` differs from `old`: spins for a while, then sleeps.
template <typename T>
T wait_while_equal(const std::atomic<T>& value, T old) {
  const auto deadline = std::chrono::steady_clock::now() + spin_before_sleep;
  for (unsigned spins = 0;; ++spins) {
    const T current = value.load(std::memory_order_acquire);
    if (current != old) return current;
    // Reading the clock costs more than a pause, so check it only now and then.
    if (spins % 64 == 63 && std::chrono::steady_clock::now() >= deadline) break;
    cpu_relax();
  }
  for (;;) {
    value.wait(old, std::memory_order_acquire);
    const T current = value.load(std::memory_order_acquire);
    if (current != old) return current;
  }
}

}  // namespace detail

// Hardware threads of this machine (at least 1).
inline unsigned hardware_threads() noexcept { return std::max(1u, std::thread::hardware_concurrency()); }

class ThreadPool {
 public:
  // `threads` counts the calling thread, which works in every parallel_for:
  // ThreadPool(1) starts no worker and runs everything inline.
  explicit ThreadPool(unsigned threads = hardware_threads()) {
    if (threads == 0) dilemma::detail::fail("ThreadPool: the thread count must be at least 1");
    workers_.reserve(threads - 1);
    try {
      for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
    } catch (...) {
      stop_workers();
      throw;
    }
  }

  ~ThreadPool() { stop_workers(); }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that take part in a parallel_for, the caller included.
  unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()) + 1; }

  // Calls body(begin, end) on disjoint ranges that cover [0, count), each at
  // most `chunk` long, and returns when all calls have returned. If a call
  // throws, ranges not yet started are skipped and the first exception is
  // rethrown here. A parallel_for issued while the pool is already running one
  // (from inside a body, or from another thread) runs on its calling thread
  // alone instead of waiting for the pool, so nesting cannot deadlock.
  template <typename Body>
  void parallel_for(std::size_t count, std::size_t chunk, Body&& body) {
    if (count == 0) return;
    if (chunk == 0) chunk = 1;
    if (workers_.empty() || count <= chunk || busy_.exchange(true, std::memory_order_acquire)) {
      for (std::size_t begin = 0; begin < count; begin += chunk) body(begin, std::min(count, begin + chunk));
      return;
    }
    using BodyType = std::remove_reference_t<Body>;
    job_.body = const_cast<void*>(static_cast<const void*>(std::addressof(body)));
    job_.invoke = [](void* erased, std::size_t begin, std::size_t end) {
      (*static_cast<BodyType*>(erased))(begin, end);
    };
    job_.count = count;
    job_.chunk = chunk;
    job_.next.store(0, std::memory_order_relaxed);
    job_.failed.store(false, std::memory_order_relaxed);
    job_.error = nullptr;
    // The release publishes the job's fields to the workers that see the new generation.
    const std::uint64_t generation = generation_.fetch_add(1, std::memory_order_release) + 1;
    generation_.notify_all();

    run_chunks();
    // Every chunk is taken. Close the job so that a worker waking up only now
    // stays out, then wait for those still inside: a worker that was asleep or
    // descheduled (another process on its core) costs nothing once the caller
    // has done its share of the work.
    closed_generation_.store(generation);
    for (unsigned inside = workers_inside_.load(); inside != 0;) {
      inside = detail::wait_while_equal(workers_inside_, inside);
    }
    std::exception_ptr error = std::move(job_.error);
    busy_.store(false, std::memory_order_release);
    if (error) std::rethrow_exception(error);
  }

 private:
  struct Job {
    void (*invoke)(void*, std::size_t, std::size_t) = nullptr;
    void* body = nullptr;
    std::size_t count = 0;
    std::size_t chunk = 1;
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    std::exception_ptr error;
  };

  void run_chunks() noexcept {
    while (!job_.failed.load(std::memory_order_relaxed)) {
      const std::size_t begin = job_.next.fetch_add(job_.chunk, std::memory_order_relaxed);
      if (begin >= job_.count) return;
      try {
        job_.invoke(job_.body, begin, std::min(job_.count, begin + job_.chunk));
      } catch (...) {
        const std::lock_guard lock(job_.error_mutex);
        if (!job_.error) job_.error = std::current_exception();
        job_.failed.store(true, std::memory_order_relaxed);
      }
    }
  }

  void work() noexcept {
    std::uint64_t seen = 0;
    for (;;) {
      seen = detail::wait_while_equal(generation_, seen);
      if (stop_.load(std::memory_order_acquire)) return;
      // Enter, then check that job `seen` is still open. With the caller's
      // "close, then count who is inside" (all sequentially consistent),
      // either the caller waits for this worker or this worker sees the job
      // closed, and a worker never touches the fields of a job it did not enter.
      workers_inside_.fetch_add(1);
      if (generation_.load() == seen && closed_generation_.load() != seen) run_chunks();
      if (workers_inside_.fetch_sub(1) == 1) workers_inside_.notify_one();
    }
  }

  void stop_workers() noexcept {
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    workers_.clear();  // joins
  }

  Job job_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::uint64_t> closed_generation_{0};
  std::atomic<unsigned> workers_inside_{0};
  std::atomic<bool> busy_{false};
  std::atomic<bool> stop_{false};
  std::vector<std::jthread> workers_;
};

// Threads that take part in a loop on `pool`: its size, or 1 (the calling
// thread) without a pool.
inline unsigned thread_count(const ThreadPool* pool) noexcept { return pool == nullptr ? 1 : pool->size(); }

// ThreadPool::parallel_for on `pool`, or the same chunks in order on the
// calling thread when `pool` is null (the library's "no pool" setting).
template <typename Body>
void for_each_chunk(ThreadPool* pool, std::size_t count, std::size_t chunk, Body&& body) {
  if (pool == nullptr) {
    if (chunk == 0) chunk = 1;
    for (std::size_t begin = 0; begin < count; begin += chunk) body(begin, std::min(count, begin + chunk));
    return;
  }
  pool->parallel_for(count, chunk, std::forward<Body>(body));
}

}  // namespace dilemma::parallel
