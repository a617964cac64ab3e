#pragma once
// The Open MPI transport: one rank per server of the plan, messages as MPI
// byte buffers. Not part of the header-only core (it needs <mpi.h> and
// linking against MPI): only the CLI's `serve` command includes it.
//
// MPI is driven by one thread only, the one that called MPI_Init_thread
// (MPI_THREAD_FUNNELED): the "pump". The node (and, on the user's rank, the
// client) run in their own threads and talk to the pump through in-process
// mailboxes, so that they see the same Endpoint as on the emulated cluster.

#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dilemma/error.hpp"
#include "dilemma/runtime/message.hpp"
#include "dilemma/runtime/transport.hpp"

namespace dilemma::runtime {

class MpiRouter {
 public:
  // `rank_of` maps every address of the run (servers, then the user) to the
  // rank that hosts it; -1 for servers without a rank (no stages).
  MpiRouter(MPI_Comm comm, std::vector<int> rank_of) : comm_(comm), rank_of_(std::move(rank_of)) {
    MPI_Comm_rank(comm_, &rank_);
    for (std::size_t a = 0; a < rank_of_.size(); ++a) {
      mailboxes_.push_back(rank_of_[a] == rank_ ? std::make_unique<Mailbox>() : nullptr);
    }
  }

  int rank() const { return rank_; }
  std::unique_ptr<Endpoint> endpoint(Address address, std::string label);

  // Moves messages between MPI and the local endpoints until `done()` holds
  // and every outgoing message has left. Call from the MPI thread only.
  void pump_until(const std::function<bool()>& done) {
    constexpr int tag = 17;
    while (true) {
      bool busy = false;
      {
        std::deque<Outgoing> outgoing;
        {
          std::lock_guard lock(mutex_);
          outgoing.swap(outbox_);
        }
        for (Outgoing& item : outgoing) {
          pending_.push_back(std::make_unique<Pending>());
          Pending& pending = *pending_.back();
          pending.bytes = std::move(item.bytes);
          MPI_Isend(pending.bytes.data(), static_cast<int>(pending.bytes.size()), MPI_BYTE, item.rank, tag, comm_,
                    &pending.request);
          busy = true;
        }
      }
      for (auto it = pending_.begin(); it != pending_.end();) {
        int finished = 0;
        MPI_Test(&(*it)->request, &finished, MPI_STATUS_IGNORE);
        it = finished ? pending_.erase(it) : it + 1;
      }
      int arrived = 0;
      MPI_Status status;
      MPI_Iprobe(MPI_ANY_SOURCE, tag, comm_, &arrived, &status);
      if (arrived) {
        int count = 0;
        MPI_Get_count(&status, MPI_BYTE, &count);
        std::vector<std::byte> bytes(static_cast<std::size_t>(count));
        MPI_Recv(bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, tag, comm_, MPI_STATUS_IGNORE);
        local_mailbox(bytes).post(std::move(bytes), Clock::now());
        busy = true;
      }
      if (!busy) {
        if (done() && pending_.empty()) {
          std::lock_guard lock(mutex_);
          if (outbox_.empty()) return;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }

  void close() {
    for (auto& mailbox : mailboxes_) {
      if (mailbox) mailbox->close();
    }
  }

  void post(Address from, Address to, std::vector<std::byte> bytes) {
    if (to >= rank_of_.size() || rank_of_[to] < 0) {
      dilemma::detail::fail("address {} has no MPI rank (sending from address {})", to, from);
    }
    if (rank_of_[to] == rank_) {
      mailboxes_[to]->post(std::move(bytes), Clock::now());
      return;
    }
    std::lock_guard lock(mutex_);
    outbox_.push_back({rank_of_[to], std::move(bytes)});
  }

  Mailbox& mailbox(Address address) { return *mailboxes_.at(address); }

 private:
  // The mailbox a received buffer goes to: the one its header names when it
  // is local; otherwise the rank's first, whose endpoint then rejects it as
  // malformed or misrouted.
  Mailbox& local_mailbox(const std::vector<std::byte>& bytes) {
    if (bytes.size() >= header_bytes) {
      Address to;
      std::memcpy(&to, bytes.data() + detail::Offset::to, sizeof to);
      if (to < mailboxes_.size() && mailboxes_[to]) return *mailboxes_[to];
    }
    for (auto& mailbox : mailboxes_) {
      if (mailbox) return *mailbox;
    }
    dilemma::detail::fail("MPI rank {} hosts no address", rank_);
  }

  struct Outgoing {
    int rank;
    std::vector<std::byte> bytes;
  };
  struct Pending {
    std::vector<std::byte> bytes;
    MPI_Request request;
  };
  MPI_Comm comm_;
  int rank_ = 0;
  std::vector<int> rank_of_;
  std::vector<std::unique_ptr<Mailbox>> mailboxes_;
  std::mutex mutex_;
  std::deque<Outgoing> outbox_;
  std::vector<std::unique_ptr<Pending>> pending_;
};

namespace detail {

class MpiEndpoint final : public Endpoint {
 public:
  MpiEndpoint(MpiRouter& router, Address address, std::string label)
      : router_(router), address_(address), label_(std::move(label)) {}
  Address address() const override { return address_; }
  void send(Address to, Message message) override {
    message.header.from = address_;
    message.header.to = to;
    router_.post(address_, to, encode(message));
  }
  std::optional<Message> receive(Clock::duration timeout) override {
    auto delivery = router_.mailbox(address_).take(Clock::now() + timeout);
    if (!delivery) return std::nullopt;
    Message message = decode(delivery->bytes, label_);
    message.arrived = delivery->at;
    return message;
  }

 private:
  MpiRouter& router_;
  Address address_;
  std::string label_;
};

}  // namespace detail

inline std::unique_ptr<Endpoint> MpiRouter::endpoint(Address address, std::string label) {
  if (address >= mailboxes_.size() || !mailboxes_[address]) {
    dilemma::detail::fail("MPI rank {} does not host address {}", rank_, address);
  }
  return std::make_unique<detail::MpiEndpoint>(*this, address, std::move(label));
}

}  // namespace dilemma::runtime
