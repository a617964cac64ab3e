#pragma once
// An edge cluster's network inside one process. Every node is an endpoint
// with its own mailbox; a message between two cluster nodes occupies their
// link for bytes / bandwidth (a link carries one message at a time per
// direction: a message waits while the link is busy), then arrives `latency`
// later, as the cost model's τ = λ + B/β assumes. Messages between endpoints
// on one cluster node (the user at its access point) arrive at once, and so
// do control messages (release, shutdown, ping, pong, error, report): they
// stand for an out-of-band control plane, are not counted on the links, and
// need no link, so that the user can reach every node.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "dilemma/error.hpp"
#include "dilemma/runtime/deployment.hpp"
#include "dilemma/runtime/message.hpp"
#include "dilemma/runtime/transport.hpp"

namespace dilemma::runtime {

// What one directed link carried during a run.
struct LinkMeasurement {
  std::size_t from = 0;  // cluster nodes (servers, then the user node)
  std::size_t to = 0;
  std::int64_t messages = 0;
  double bytes = 0.0;             // encoded, header included
  double busy_seconds = 0.0;      // Σ bytes / bandwidth
  double transfer_seconds = 0.0;  // Σ from send to arrival: queueing behind earlier messages + busy + latency
};

class EmulatedNetwork {
 public:
  // `emulate_links` false delivers every message at once (a test of the
  // protocol alone, or a run whose links are not the point).
  explicit EmulatedNetwork(const Deployment& deployment, bool emulate_links = true)
      : deployment_(deployment), emulate_links_(emulate_links), mailboxes_(deployment.cluster.servers.size() + 1) {
    // The user's client times tokens by their arrival (Message::arrived): its
    // thread need not spin for them, taking a CPU from the nodes.
    for (std::size_t a = 0; a < mailboxes_.size(); ++a) {
      mailboxes_[a] = std::make_unique<Mailbox>(a != deployment.user());
    }
  }

  std::unique_ptr<Endpoint> endpoint(Address address);

  // Ends the run: every receive() throws EndpointClosed from now on.
  void close() {
    closed_ = true;
    for (auto& mailbox : mailboxes_) mailbox->close();
  }
  bool closed() const { return closed_; }

  std::vector<LinkMeasurement> links() const {
    std::lock_guard lock(mutex_);
    std::vector<LinkMeasurement> result;
    for (const auto& [key, link] : links_) result.push_back(link.measured);
    return result;
  }

  // `measured` false (a warm-up request's message) leaves the link's
  // measurement alone; the message still takes its time on the link.
  void deliver(Address from, Address to, std::vector<std::byte> bytes, bool control, bool measured) {
    if (to >= mailboxes_.size()) {
      dilemma::detail::fail("{}: cannot send to address {}: the run has addresses 0 .. {}", deployment_.label(from), to,
                            mailboxes_.size() - 1);
    }
    const auto now = Clock::now();
    const std::size_t a = deployment_.cluster_node(from), b = deployment_.cluster_node(to);
    if (a == b || control || !emulate_links_) {
      mailboxes_[to]->post(std::move(bytes), now);
      return;
    }
    const auto link = deployment_.cluster.link(a, b);
    if (!link) {
      dilemma::detail::fail("{}: no link from \"{}\" to \"{}\"", deployment_.label(from),
                            deployment_.cluster.node_name(a), deployment_.cluster.node_name(b));
    }
    const double size = static_cast<double>(bytes.size());
    const double busy = size / link->bandwidth;
    Clock::time_point arrival;
    {
      std::lock_guard lock(mutex_);
      LinkState& state = links_[{a, b}];
      const auto start = std::max(now, state.busy_until);
      state.busy_until = start + seconds(busy);
      arrival = state.busy_until + seconds(link->latency);
      state.measured.from = a;
      state.measured.to = b;
      if (measured) {
        state.measured.messages += 1;
        state.measured.bytes += size;
        state.measured.busy_seconds += busy;
        state.measured.transfer_seconds += std::chrono::duration<double>(arrival - now).count();
      }
    }
    mailboxes_[to]->post(std::move(bytes), arrival);
  }

  Mailbox& mailbox(Address address) { return *mailboxes_.at(address); }
  const Deployment& deployment() const { return deployment_; }

 private:
  static Clock::duration seconds(double value) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(value));
  }

  struct LinkState {
    Clock::time_point busy_until{};
    LinkMeasurement measured;
  };

  const Deployment& deployment_;
  bool emulate_links_;
  std::vector<std::unique_ptr<Mailbox>> mailboxes_;
  std::atomic<bool> closed_ = false;
  mutable std::mutex mutex_;
  std::map<std::pair<std::size_t, std::size_t>, LinkState> links_;
};

namespace detail {

class EmulatedEndpoint final : public Endpoint {
 public:
  EmulatedEndpoint(EmulatedNetwork& network, Address address)
      : network_(network), address_(address), label_(network.deployment().label(address)) {}

  Address address() const override { return address_; }

  void send(Address to, Message message) override {
    message.header.from = address_;
    message.header.to = to;
    const bool control = is_control(message.header.kind);
    network_.deliver(address_, to, encode(message), control, !is_warm_up(message.header.request));
  }

  std::optional<Message> receive(Clock::duration timeout) override {
    auto delivery = network_.mailbox(address_).take(Clock::now() + timeout);
    if (!delivery) return std::nullopt;
    Message message = decode(delivery->bytes, label_);
    message.arrived = delivery->at;
    return message;
  }

 private:
  EmulatedNetwork& network_;
  Address address_;
  std::string label_;
};

}  // namespace detail

inline std::unique_ptr<Endpoint> EmulatedNetwork::endpoint(Address address) {
  if (address >= mailboxes_.size()) {
    dilemma::detail::fail("emulated network: no address {} (the run has addresses 0 .. {})", address,
                          mailboxes_.size() - 1);
  }
  return std::make_unique<detail::EmulatedEndpoint>(*this, address);
}

}  // namespace dilemma::runtime
