#pragma once
// The user's side of a run: sends each prompt to the embedding's node,
// receives the tokens the head's node streams back, and times them. One
// request at a time (latency mode) or several in flight at once, pipelining
// through the nodes (throughput mode).
//
// Nothing hangs: when no token arrives within the timeout the client pings
// every node; a node that does not answer within another timeout is named as
// the one that died or stopped answering, and the run fails. A node's error
// message fails the run at once with that node's words.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/runtime/deployment.hpp"
#include "dilemma/runtime/message.hpp"
#include "dilemma/runtime/node.hpp"
#include "dilemma/runtime/transport.hpp"

namespace dilemma::runtime {

struct ClientOptions {
  double timeout_seconds = 10.0;    // with no token for this long, the nodes are pinged
  std::size_t requests_in_flight = 1;  // 1 = latency mode
  std::function<void(std::size_t request, TokenId token)> on_token;  // streaming, request = index into the prompts
};

struct RequestResult {
  std::vector<TokenId> prompt;
  std::vector<TokenId> tokens;
  bool stopped_at_eos = false;
  double first_token_seconds = 0.0;  // prompt sent → first token received
  double completion_seconds = 0.0;   // prompt sent → last token received
  double per_token_seconds = 0.0;    // (last − first) / (tokens − 1); 0 with one token
  Clock::time_point sent{}, first{}, last{};
};

class Client {
 public:
  Client(const Deployment& deployment, Endpoint& endpoint, ClientOptions options)
      : deployment_(deployment), endpoint_(endpoint), options_(std::move(options)) {
    if (!(options_.timeout_seconds > 0.0)) {
      dilemma::detail::fail("the timeout must be positive, got {} s", options_.timeout_seconds);
    }
    if (options_.requests_in_flight < 1) dilemma::detail::fail("requests in flight must be at least 1");
  }

  // Runs every prompt; throws dilemma::Error when a node fails or goes silent.
  std::vector<RequestResult> run(const std::vector<std::vector<TokenId>>& prompts) {
    if (prompts.empty()) dilemma::detail::fail("no prompts to run");
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      if (prompts[i].empty()) dilemma::detail::fail("prompt {} is empty (OPT prompts start with BOS)", i);
    }
    results_.assign(prompts.size(), {});
    std::size_t started = 0, finished = 0;
    std::set<std::size_t> active;
    auto start = [&] {
      RequestResult& result = results_[started];
      result.prompt = prompts[started];
      result.sent = Clock::now();
      endpoint_.send(deployment_.embedding_node(),
                     make_ids_message(MessageKind::prompt, request_id(started), 0, 0, result.prompt));
      active.insert(started);
      ++started;
    };
    while (started < prompts.size() && active.size() < options_.requests_in_flight) start();
    auto last_progress = Clock::now();
    while (finished < prompts.size()) {
      std::optional<Message> message;
      if (!deferred_.empty()) {
        message = std::move(deferred_.front());
        deferred_.erase(deferred_.begin());
      } else {
        const auto deadline = last_progress + timeout();
        message = endpoint_.receive(std::max(Clock::duration::zero(), deadline - Clock::now()));
      }
      if (!message) {
        diagnose();
        if (deferred_.empty()) dilemma::detail::fail("{}", stall_message(active));
        last_progress = Clock::now();
        continue;
      }
      const auto done = accept(*message, active);
      if (done) {
        last_progress = Clock::now();
        if (*done != no_request) {
          ++finished;
          active.erase(*done);
          for (Address node : deployment_.nodes()) {
            endpoint_.send(node, make_control_message(MessageKind::release, request_id(*done)));
          }
          if (started < prompts.size()) start();
        }
      }
    }
    return results_;
  }

  // Runs `prompt` once as a warm-up request (message.hpp: is_warm_up): through
  // every node and link as a measured request goes, but left out of the
  // nodes' and links' measurements, and its tokens are not streamed. A
  // server's first request pays first-touch costs (allocations, page
  // faults, cold caches, in the transport too) that a long-lived server pays
  // once and the plan's profiled times leave out: measured on tiny-opt, the
  // first request's time to first token was 1.4–2.3× that of the next ones.
  void warm_up(const std::vector<TokenId>& prompt) {
    first_id_ = warm_up_request_bit + 1;
    struct Restore {
      std::uint64_t& id;
      ~Restore() { id = 1; }
    } restore{first_id_};
    run({prompt});
  }

  // Tells every node to stop. With `collect_reports` (nodes in other
  // processes) waits up to the timeout for each node's report; nodes that
  // send none are left out.
  std::vector<NodeReport> shutdown(bool collect_reports) {
    std::set<Address> waiting;
    for (Address node : deployment_.nodes()) {
      endpoint_.send(node, make_control_message(MessageKind::shutdown));
      waiting.insert(node);
    }
    std::vector<NodeReport> reports;
    if (!collect_reports) return reports;
    const auto deadline = Clock::now() + timeout();
    while (!waiting.empty() && Clock::now() < deadline) {
      std::optional<Message> message;
      try {
        message = endpoint_.receive(deadline - Clock::now());
      } catch (const dilemma::Error&) {
        continue;  // the run is over; a garbled straggler changes nothing
      }
      if (!message || message->header.kind != MessageKind::report || !waiting.contains(message->header.from)) continue;
      waiting.erase(message->header.from);
      try {
        reports.push_back(NodeReport::from_json(nlohmann::json::parse(payload_text(*message))));
      } catch (const nlohmann::json::exception& e) {
        dilemma::detail::fail("{} sent a report that is not JSON: {}", deployment_.label(message->header.from),
                              e.what());
      }
    }
    missing_reports_.assign(waiting.begin(), waiting.end());
    return reports;
  }

  const std::vector<Address>& missing_reports() const { return missing_reports_; }

 private:
  static constexpr std::size_t no_request = static_cast<std::size_t>(-1);
  std::uint64_t request_id(std::size_t index) const { return first_id_ + index; }

  Clock::duration timeout() const {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.timeout_seconds));
  }

  // Handles one message. Returns the index of a request it completed,
  // no_request for other progress, nullopt for none.
  std::optional<std::size_t> accept(const Message& message, const std::set<std::size_t>& active) {
    const MessageHeader& h = message.header;
    switch (h.kind) {
      case MessageKind::error:
        dilemma::detail::fail("{}", payload_text(message));
      case MessageKind::pong:
        return std::nullopt;  // a late answer to a ping
      case MessageKind::token:
        break;
      default:
        dilemma::detail::fail("{}: unexpected {} message from {}", deployment_.label(deployment_.user()),
                              kind_name(h.kind), deployment_.label(h.from));
    }
    const std::size_t index = h.request - first_id_;
    if (h.request < first_id_ || !active.contains(index)) {
      dilemma::detail::fail("{}: a token for {}, which is not running", deployment_.label(deployment_.user()),
                            request_name(h.request));
    }
    if (h.from != deployment_.head_node()) {
      dilemma::detail::fail("{}: a token from {}, but the head runs on {}", deployment_.label(deployment_.user()),
                            deployment_.label(h.from), deployment_.label(deployment_.head_node()));
    }
    RequestResult& result = results_[index];
    if (h.sequence != result.tokens.size()) {
      dilemma::detail::fail("{}: {}: token {} arrived, expected token {}", deployment_.label(deployment_.user()),
                            request_name(h.request), h.sequence, result.tokens.size());
    }
    const TokenId token = token_ids(message).front();
    const auto now = message.arrived != Clock::time_point{} ? message.arrived : Clock::now();
    if (result.tokens.empty()) result.first = now;
    result.last = now;
    result.tokens.push_back(token);
    if (options_.on_token && !is_warm_up(h.request)) options_.on_token(index, token);
    if (!(h.flags & flag_last_token)) return no_request;
    result.stopped_at_eos = token == deployment_.config.eos_token_id;
    result.first_token_seconds = std::chrono::duration<double>(result.first - result.sent).count();
    result.completion_seconds = std::chrono::duration<double>(result.last - result.sent).count();
    result.per_token_seconds = result.tokens.size() > 1 ? std::chrono::duration<double>(result.last - result.first).count() /
                                                              static_cast<double>(result.tokens.size() - 1)
                                                        : 0.0;
    return index;
  }

  // After a timeout: pings every node and waits one more timeout for the
  // answers, keeping any other message for run() (the run was only slow if
  // tokens arrived meanwhile); throws naming the nodes that did not answer.
  void diagnose() {
    std::set<Address> silent;
    for (Address node : deployment_.nodes()) {
      endpoint_.send(node, make_control_message(MessageKind::ping));
      silent.insert(node);
    }
    const auto deadline = Clock::now() + timeout();
    while (!silent.empty() && Clock::now() < deadline) {
      auto message = endpoint_.receive(deadline - Clock::now());
      if (!message) break;
      if (message->header.kind == MessageKind::pong) {
        silent.erase(message->header.from);
        continue;
      }
      deferred_.push_back(std::move(*message));
    }
    if (!silent.empty()) {
      std::string names;
      for (Address node : silent) names += (names.empty() ? "" : ", ") + deployment_.label(node);
      dilemma::detail::fail("{} stopped answering: no token for {:.3g} s and no answer to a ping within {:.3g} s; "
                            "the run was stopped",
                            names, options_.timeout_seconds, options_.timeout_seconds);
    }
  }

  std::string stall_message(const std::set<std::size_t>& active) const {
    std::string requests;
    for (std::size_t index : active) requests += (requests.empty() ? "" : ", ") + request_name(request_id(index));
    return fmt::format("no token for {} within {:.3g} s, though every node answers a ping: a message was "
                       "lost, or the timeout is shorter than a step",
                       requests, options_.timeout_seconds);
  }

  const Deployment& deployment_;
  Endpoint& endpoint_;
  ClientOptions options_;
  std::vector<RequestResult> results_;
  std::vector<Message> deferred_;  // received while pinging
  std::vector<Address> missing_reports_;
  std::uint64_t first_id_ = 1;  // the id of request 0 of the current run
};

}  // namespace dilemma::runtime
