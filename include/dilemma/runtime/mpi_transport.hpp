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
#include <optional>
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
  // (or rank 0 asked this rank to stop: stop) and every outgoing message
  // has left. Call from the MPI thread only.
  void pump_until(const std::function<bool()>& done) {
    while (true) {
      if (!stop_requested_) {
        if (const auto from = take_stop_message()) {
          stop_requested_ = true;
          stopped_by_ = *from;
        }
      }
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
          MPI_Isend(pending.bytes.data(), static_cast<int>(pending.bytes.size()), MPI_BYTE, item.rank, data_tag, comm_,
                    &pending.request);
          busy = true;
        }
      }
      for (auto it = pending_.begin(); it != pending_.end();) {
        int finished = 0;
        MPI_Test(&(*it)->request, &finished, MPI_STATUS_IGNORE);
        it = finished ? pending_.erase(it) : it + 1;
      }
      if (auto bytes = take_data_message()) {
        local_mailbox(*bytes).post(std::move(*bytes), Clock::now());
        busy = true;
      }
      if (!busy) {
        if ((stop_requested_ || done()) && pending_.empty()) {
          std::lock_guard lock(mutex_);
          if (outbox_.empty()) {
            // Acknowledged once nothing is left in flight: MPI_Finalize waits for no send.
            const int acknowledgement = 0;
            if (stop_requested_) MPI_Send(&acknowledgement, 1, MPI_INT, stopped_by_, stop_tag, comm_);
            return;
          }
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }

  // Rank 0, when nodes failed: asks the ranks that host them to stop pumping
  // (a node still stuck there then ends as close() closes its mailbox) and
  // waits up to `timeout` for each to acknowledge, which a rank does once its
  // last send has completed. True if all did: every rank will reach
  // MPI_Finalize, and the job ends without MPI_Abort, after which Open MPI
  // 4.1's mpirun sometimes never reaped its exited ranks and hung (once in
  // the first three runs of the fault test next to two busy processes).
  // False: a process is gone or stuck, and only MPI_Abort can end the job.
  bool stop(const std::vector<int>& ranks, std::chrono::duration<double> timeout) {
    const int request = 0;
    std::vector<MPI_Request> sent(ranks.size(), MPI_REQUEST_NULL);
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      MPI_Isend(&request, 1, MPI_INT, ranks[i], stop_tag, comm_, &sent[i]);
    }
    std::size_t acknowledged = 0;
    const auto give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
    while (acknowledged < ranks.size() && Clock::now() < give_up) {
      if (take_stop_message()) {
        ++acknowledged;
        continue;
      }
      // What the stopping ranks still send is received and dropped, so that their sends complete.
      if (take_data_message()) continue;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (acknowledged < ranks.size()) return false;
    MPI_Waitall(static_cast<int>(sent.size()), sent.data(), MPI_STATUSES_IGNORE);
    return true;
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
  // A stop request or its acknowledgement, if one has arrived: its sender.
  std::optional<int> take_stop_message() {
    int arrived = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, stop_tag, comm_, &arrived, &status);
    if (!arrived) return std::nullopt;
    int ignored = 0;
    MPI_Recv(&ignored, 1, MPI_INT, status.MPI_SOURCE, stop_tag, comm_, MPI_STATUS_IGNORE);
    return status.MPI_SOURCE;
  }

  // An encoded message, if one has arrived.
  std::optional<std::vector<std::byte>> take_data_message() {
    int arrived = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, data_tag, comm_, &arrived, &status);
    if (!arrived) return std::nullopt;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    std::vector<std::byte> bytes(static_cast<std::size_t>(count));
    MPI_Recv(bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, data_tag, comm_, MPI_STATUS_IGNORE);
    return bytes;
  }

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
  static constexpr int data_tag = 17;
  static constexpr int stop_tag = 18;
  MPI_Comm comm_;
  int rank_ = 0;
  bool stop_requested_ = false;
  int stopped_by_ = 0;
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
