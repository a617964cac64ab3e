#pragma once
// The one interface a node and the user see of the network: send a message
// to an address, receive the next one addressed to you within a timeout.
// Transports carry encoded bytes (message.hpp) and decode on receipt, so the
// same checks guard the emulated cluster and MPI.
//
// Also the in-process mailbox both transports deliver into: a queue ordered
// by delivery time, so that the emulated network can hand a message over at
// the instant its link would have delivered it.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <queue>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "dilemma/runtime/message.hpp"

namespace dilemma::runtime {

using Clock = std::chrono::steady_clock;

// Thrown by receive() on an endpoint whose node was stopped from outside: the
// network shut down, or an injected fault killed it. Not a dilemma::Error: it
// ends the node's thread quietly, as a crash or a power cut would.
class EndpointClosed : public std::runtime_error {
 public:
  EndpointClosed() : std::runtime_error("endpoint closed") {}
};

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual Address address() const = 0;
  // Sets the header's from and to, encodes and sends. Never blocks on the receiver.
  virtual void send(Address to, Message message) = 0;
  // The next message for this endpoint, or nullopt when none came within
  // `timeout`. A malformed message is a dilemma::Error.
  virtual std::optional<Message> receive(Clock::duration timeout) = 0;
};

// An encoded message and the time it was due at its receiver.
struct Delivery {
  std::vector<std::byte> bytes;
  Clock::time_point at;
};

// Encoded messages waiting for one endpoint, each with the time it may be
// taken; ties keep the order of posting.
class Mailbox {
 public:
  // `on_time` false: the receiver needs messages within a millisecond but not
  // on the microsecond (a receiver that times messages by Message::arrived).
  // Such a mailbox is polled every `poll_interval` instead of notified: waking
  // a thread that sleeps on another vCPU cost the sender 35-45 µs on the 2-vCPU
  // VM we measure on, and a node that streams a token to the user and goes on
  // with the next decode step pays it on every step (7 % of a tiny-opt step;
  // docs/results.md). The last stretch before a delivery is slept, not spun,
  // and leaves the CPU to the threads that compute.
  explicit Mailbox(bool on_time = true) : on_time_(on_time) {}

  static constexpr std::chrono::milliseconds poll_interval{1};

  void post(std::vector<std::byte> bytes, Clock::time_point deliver_at) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;  // a message to a stopped node is lost, as on a real network
      queue_.push({deliver_at, next_++, std::move(bytes)});
    }
    if (on_time_) ready_.notify_all();
  }

  // Waits until the earliest message is due or `deadline` passes. Throws
  // EndpointClosed once closed.
  std::optional<Delivery> take(Clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    while (true) {
      if (closed_) throw EndpointClosed();
      const auto now = Clock::now();
      if (!queue_.empty() && queue_.top().deliver_at <= now) {
        Delivery delivery{std::move(const_cast<Item&>(queue_.top()).bytes), queue_.top().deliver_at};
        queue_.pop();
        return delivery;
      }
      if (now >= deadline) return std::nullopt;
      const auto wake = queue_.empty() ? deadline : std::min(deadline, queue_.top().deliver_at);
      // A condition variable wakes tens of microseconds late, a sizeable
      // share of an emulated fast link's transfer: the last stretch before
      // a delivery is spun instead (nothing, for a receiver not on time:
      // wake is after now).
      const auto spin = on_time_ ? std::chrono::microseconds(200) : std::chrono::microseconds(0);
      if (wake - now <= spin) {
        lock.unlock();
        while (Clock::now() < wake) std::this_thread::yield();
        lock.lock();
        continue;
      }
      ready_.wait_until(lock, on_time_ ? wake - spin : std::min(wake, now + poll_interval));
    }
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      queue_ = {};
    }
    ready_.notify_all();
  }

  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

 private:
  struct Item {
    Clock::time_point deliver_at;
    std::uint64_t order;
    std::vector<std::byte> bytes;
    bool operator>(const Item& other) const {
      return deliver_at != other.deliver_at ? deliver_at > other.deliver_at : order > other.order;
    }
  };
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> queue_;
  std::uint64_t next_ = 0;
  bool closed_ = false;
  bool on_time_;
};

}  // namespace dilemma::runtime
