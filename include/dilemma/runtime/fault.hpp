#pragma once
// Injected faults, to test that a run fails cleanly when a node breaks: an
// endpoint wrapper that, once its node has sent a given number of messages,
// makes the node die (its thread ends; under MPI its process exits), hang
// (it stays alive but neither answers nor sends) or send one corrupted
// message (a data message whose header no longer matches its payload).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "dilemma/error.hpp"
#include "dilemma/runtime/message.hpp"
#include "dilemma/runtime/transport.hpp"

namespace dilemma::runtime {

enum class FaultKind { die, hang, corrupt };

inline FaultKind parse_fault_kind(std::string_view name, std::string_view what) {
  if (name == "die") return FaultKind::die;
  if (name == "hang") return FaultKind::hang;
  if (name == "corrupt") return FaultKind::corrupt;
  dilemma::detail::fail("{}: unknown fault \"{}\" (expected die, hang or corrupt)", what, name);
}

// Strikes `server` once it has sent `after_messages` messages.
struct Fault {
  std::string server;
  std::int64_t after_messages = 0;
  FaultKind kind = FaultKind::die;
};

// "SERVER:MESSAGES:die|hang|corrupt", as the CLI's --inject-fault takes it.
inline Fault parse_fault(std::string_view text, std::string_view what) {
  const auto first = text.find(':');
  const auto second = first == std::string_view::npos ? first : text.find(':', first + 1);
  if (second == std::string_view::npos) {
    dilemma::detail::fail("{}: expected SERVER:MESSAGES:die|hang|corrupt, got \"{}\"", what, text);
  }
  Fault fault;
  fault.server = std::string(text.substr(0, first));
  const std::string count(text.substr(first + 1, second - first - 1));
  std::size_t used = 0;
  try {
    fault.after_messages = std::stoll(count, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (count.empty() || used != count.size() || fault.after_messages < 0) {
    dilemma::detail::fail("{}: MESSAGES must be a non-negative integer, got \"{}\"", what, count);
  }
  fault.kind = parse_fault_kind(text.substr(second + 1), what);
  return fault;
}

class FaultyEndpoint final : public Endpoint {
 public:
  // `on_die` runs when the node dies (MPI: end the process, as a crash would).
  FaultyEndpoint(std::unique_ptr<Endpoint> inner, Fault fault, std::function<void()> on_die = {})
      : inner_(std::move(inner)), fault_(std::move(fault)), on_die_(std::move(on_die)) {}

  Address address() const override { return inner_->address(); }

  void send(Address to, Message message) override {
    if (state_ != State::alive) return;
    if (is_warm_up(message.header.request)) {  // the fault strikes on the measured requests' messages
      inner_->send(to, std::move(message));
      return;
    }
    if (sent_ == fault_.after_messages) {
      switch (fault_.kind) {
        case FaultKind::die:
          state_ = State::dead;
          if (on_die_) on_die_();
          return;
        case FaultKind::hang:
          state_ = State::hung;
          return;
        case FaultKind::corrupt:
          if (is_control(message.header.kind)) break;  // corrupt the next data message instead
          message.header.rows += 1;                     // the payload no longer matches the shape
          ++sent_;
          inner_->send(to, std::move(message));
          return;
      }
    }
    ++sent_;
    inner_->send(to, std::move(message));
  }

  std::optional<Message> receive(Clock::duration timeout) override {
    if (state_ == State::dead) throw EndpointClosed();
    if (state_ == State::hung) {
      // Alive but silent: what arrives is dropped; the transport's
      // EndpointClosed still ends the node when the run is over.
      try {
        inner_->receive(timeout);
      } catch (const dilemma::Error&) {
      }
      return std::nullopt;
    }
    return inner_->receive(timeout);
  }

 private:
  enum class State { alive, dead, hung };
  std::unique_ptr<Endpoint> inner_;
  Fault fault_;
  std::function<void()> on_die_;
  std::int64_t sent_ = 0;
  State state_ = State::alive;
};

}  // namespace dilemma::runtime
