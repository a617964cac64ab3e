#pragma once
// One server of a distributed run: the stages the plan puts on it, loaded one
// by one from the checkpoint and quantized to their planned format on load
// (the float weights of other stages are never read), the KV caches of every
// request it has seen, and the loop that turns incoming messages into stage
// calls and outgoing messages. Consecutive stages on the node run back to
// back; the activations leave only when the next stage lives elsewhere.
//
// A slower server than this machine (speed_factor σ < 1) is emulated by
// stretching each burst of computation: after computing for t seconds the
// node waits t·(1/σ − 1) more before it sends the result, reading its own
// weights meanwhile as the slower server's computation would.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/edge/units.hpp"
#include "dilemma/error.hpp"
#include "dilemma/generation/sampler.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/run_context.hpp"
#include "dilemma/model/stage.hpp"
#include "dilemma/runtime/deployment.hpp"
#include "dilemma/runtime/message.hpp"
#include "dilemma/runtime/transport.hpp"

namespace dilemma::runtime {

// What every request of a run generates; all nodes of a run share it.
struct GenerationSettings {
  std::int64_t max_new_tokens = 32;
  bool stop_at_eos = true;
};

struct NodeOptions {
  GenerationSettings generation;
  WireFormat wire = WireFormat::f32;
  bool emulate_speed = true;  // stretch compute by the server's speed_factor
  model::RunContext context;  // kernels and threads of this node's stage calls
};

// Time spent in one stage on one node, measured on this machine and as the
// emulated server would have taken it.
struct StageTiming {
  std::size_t stage = 0;
  std::string name;
  quant::Format format = quant::Format::f32;
  double weight_bytes = 0.0;  // as loaded
  std::int64_t prefill_calls = 0;
  std::int64_t decode_calls = 0;
  double prefill_seconds = 0.0;  // sums over calls, this machine
  double decode_seconds = 0.0;
  double emulated_prefill_seconds = 0.0;  // the same stretched by 1/speed_factor
  double emulated_decode_seconds = 0.0;
};

struct Traffic {
  std::int64_t messages = 0;
  double bytes = 0.0;  // encoded, header included
};

struct NodeReport {
  Address node = 0;
  std::string server;
  double weight_bytes = 0.0;
  double kv_cache_bytes = 0.0;  // reserved for the requests in flight
  double capacity_bytes = 0.0;
  std::vector<StageTiming> stages;
  std::map<Address, Traffic> sent;  // by destination
  std::int64_t activation_messages = 0;
  WireError wire_error;  // worst over the activations this node encoded

  nlohmann::json to_json() const;
  static NodeReport from_json(const nlohmann::json& json);
};

// Loads the node's stages in their planned formats and checks that they fit:
// the actual bytes of the loaded weights plus the KV caches of the requests
// in flight against the server's memory.
inline std::vector<model::Stage> load_node_stages(const model::OptCheckpoint& checkpoint, const Deployment& deployment,
                                                  Address node) {
  std::vector<model::Stage> stages;
  double weights = 0.0, caches = 0.0;
  const std::vector<std::size_t> indices = deployment.stages_on(node);
  for (std::size_t s : indices) {
    model::Stage stage = checkpoint.load_stage(s);
    stage.quantize(deployment.stages[s].format, deployment.scheme);
    weights += static_cast<double>(stage.weight_bytes());
    caches += deployment.kv_cache_bytes(s);
    stages.push_back(std::move(stage));
  }
  const double capacity = deployment.cluster.servers.at(node).memory_bytes;
  if (weights + caches > capacity * (1.0 + cost::feasibility_tolerance)) {
    dilemma::detail::fail(
        "server \"{}\": its stages ({}) take {} once loaded in their formats, plus {} of KV caches, more than its {}",
        deployment.name(node), detail::stage_list(deployment, indices), edge::format_bytes(weights),
        edge::format_bytes(caches), edge::format_bytes(capacity));
  }
  return stages;
}

class Node {
 public:
  Node(const Deployment& deployment, Address self, std::vector<model::Stage> stages, NodeOptions options)
      : deployment_(deployment), self_(self), label_(deployment.label(self)), stages_(std::move(stages)),
        options_(std::move(options)) {
    const std::vector<std::size_t> indices = deployment_.stages_on(self_);
    if (indices.size() != stages_.size()) {
      dilemma::detail::fail("{}: {} stages planned, {} given", label_, indices.size(), stages_.size());
    }
    local_.assign(deployment_.stage_count(), -1);
    report_.node = self_;
    report_.server = deployment_.name(self_);
    report_.capacity_bytes = deployment_.cluster.servers.at(self_).memory_bytes;
    for (std::size_t i = 0; i < indices.size(); ++i) {
      if (stages_[i].index() != indices[i]) {
        dilemma::detail::fail("{}: stage {} given where stage {} is planned", label_, stages_[i].index(), indices[i]);
      }
      local_[indices[i]] = static_cast<int>(i);
      StageTiming timing;
      timing.stage = indices[i];
      timing.name = deployment_.stage_names[indices[i]];
      timing.format = deployment_.stages[indices[i]].format;
      timing.weight_bytes = static_cast<double>(stages_[i].weight_bytes());
      report_.weight_bytes += timing.weight_bytes;
      report_.kv_cache_bytes += deployment_.kv_cache_bytes(indices[i]);
      report_.stages.push_back(timing);
    }
    speed_ = deployment_.cluster.servers.at(self_).speed_factor;
    for (const model::Stage& stage : stages_) {
      for (const model::ConstNamedMatrix& matrix : stage.matrices()) {
        weights_.push_back(matrix.weight->storage());
      }
    }
  }

  Address address() const { return self_; }

  const NodeReport& report() const { return report_; }
  std::size_t requests_held() const { return requests_.size(); }

  // Serves until a shutdown message (then sends its report to the user when
  // `send_report`). Errors in a message go to the user as an error message
  // and the node serves on; EndpointClosed (the node was stopped from
  // outside) propagates.
  void serve(Endpoint& endpoint, bool send_report) {
    while (true) {
      std::optional<Message> message;
      try {
        message = endpoint.receive(std::chrono::seconds(1));
      } catch (const dilemma::Error& e) {
        send(endpoint, deployment_.user(), make_text_message(MessageKind::error, 0, e.what()));
        continue;
      }
      if (!message) continue;
      const MessageHeader& h = message->header;
      if (h.kind == MessageKind::shutdown) {
        if (send_report) send(endpoint, h.from, make_text_message(MessageKind::report, 0, report_.to_json().dump()));
        return;
      }
      try {
        handle(endpoint, *message);
      } catch (const std::exception& e) {
        requests_.erase(h.request);
        send(endpoint, deployment_.user(),
             make_text_message(MessageKind::error, h.request,
                               fmt::format("{}: {}: {}", label_, request_name(h.request), e.what())));
      }
    }
  }

 private:
  struct RequestState {
    std::vector<model::StageState> states;  // by local position
    std::vector<std::uint32_t> steps;       // calls made per local stage
    generation::Sampler sampler{generation::SamplingOptions{}};
  };

  void send(Endpoint& endpoint, Address to, Message message) {
    if (!is_warm_up(message.header.request)) {
      Traffic& traffic = report_.sent[to];
      traffic.messages += 1;
      traffic.bytes += static_cast<double>(encoded_size(message));
    }
    endpoint.send(to, std::move(message));
  }

  void handle(Endpoint& endpoint, const Message& message) {
    using dilemma::detail::fail;
    const MessageHeader& h = message.header;
    switch (h.kind) {
      case MessageKind::ping:
        send(endpoint, h.from, make_control_message(MessageKind::pong, h.request));
        return;
      case MessageKind::release:
        requests_.erase(h.request);
        return;
      case MessageKind::prompt:
      case MessageKind::token:
      case MessageKind::prefill_activations:
      case MessageKind::decode_activation:
        break;
      default:
        fail("unexpected {} message from {}", kind_name(h.kind), describe(h.from));
    }
    if (h.stage >= deployment_.stage_count() || local_[h.stage] < 0) {
      fail("{} message from {} for stage {}, which this node does not run", kind_name(h.kind), describe(h.from),
           h.stage < deployment_.stage_count() ? deployment_.stage_names[h.stage] : fmt::format("#{}", h.stage));
    }
    const bool ids = h.kind == MessageKind::prompt || h.kind == MessageKind::token;
    const bool prefill = h.kind == MessageKind::prompt || h.kind == MessageKind::prefill_activations;
    if (ids != (h.stage == 0)) {
      fail("{} message from {} for stage {}: token ids enter the embedding only, activations every other stage",
           kind_name(h.kind), describe(h.from), deployment_.stage_names[h.stage]);
    }
    if (prefill != (h.sequence == 0)) {
      fail("{} message with sequence {}: the prefill is sequence 0, decode steps 1, 2, ...", kind_name(h.kind),
           h.sequence);
    }
    const Address expected_sender = h.kind == MessageKind::prompt ? deployment_.user()
                                    : h.kind == MessageKind::token ? deployment_.head_node()
                                                                   : deployment_.node_of_stage(h.stage - 1);
    if (h.from != expected_sender || (!ids && local_[h.stage - 1] >= 0)) {
      fail("{} message for stage {} from {}; its input comes from {}", kind_name(h.kind),
           deployment_.stage_names[h.stage], describe(h.from),
           !ids && local_[h.stage - 1] >= 0 ? std::string("this node") : describe(expected_sender));
    }
    auto found = requests_.find(h.request);
    if (prefill) {
      if (found != requests_.end() && found->second.steps[static_cast<std::size_t>(local_[h.stage])] != 0) {
        fail("a second prefill for stage {}", deployment_.stage_names[h.stage]);
      }
      if (found == requests_.end()) {
        RequestState state;
        state.states.resize(stages_.size());
        state.steps.assign(stages_.size(), 0);
        found = requests_.emplace(h.request, std::move(state)).first;
      }
    } else if (found == requests_.end()) {
      fail("{} message for stage {} before any prefill", kind_name(h.kind), deployment_.stage_names[h.stage]);
    }
    model::StageInput input;
    if (ids) {
      input = token_ids(message);
    } else {
      input = activations(message);
    }
    run_from(endpoint, h.request, found->second, h.stage, h.sequence, std::move(input));
  }

  void run_from(Endpoint& endpoint, std::uint64_t request, RequestState& state, std::size_t stage,
                std::uint32_t sequence, model::StageInput input) {
    using dilemma::detail::fail;
    const std::size_t last = deployment_.stage_count() - 1;
    const bool measured = !is_warm_up(request);
    bool prefill = sequence == 0;
    double computed = 0.0;
    while (true) {
      const auto position = static_cast<std::size_t>(local_[stage]);
      if (state.steps[position] != sequence) {
        fail("stage {}: sequence {} arrived, expected {}", deployment_.stage_names[stage], sequence,
             state.steps[position]);
      }
      const Eigen::Index rows = std::holds_alternative<model::Matrix>(input)
                                    ? std::get<model::Matrix>(input).rows()
                                    : static_cast<Eigen::Index>(std::get<std::vector<TokenId>>(input).size());
      if (state.states[position].tokens_seen + rows > deployment_.config.max_position_embeddings) {
        fail("stage {}: {} more tokens after {} exceed the model's context of {}", deployment_.stage_names[stage],
             rows, state.states[position].tokens_seen, deployment_.config.max_position_embeddings);
      }
      const auto start = Clock::now();
      model::Matrix output = stages_[position].run(input, state.states[position], options_.context);
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      state.steps[position] += 1;
      if (measured) record(position, prefill, seconds);
      computed += seconds;
      if (stage == last) {
        stretch(computed);
        const std::optional<TokenId> token = emit_token(endpoint, request, state, sequence, output);
        if (!token) return;
        // The embedding runs here too: the next step starts at once, as a
        // server would, instead of through a message to itself.
        input = std::vector<TokenId>{*token};
        stage = 0;
        sequence += 1;
        prefill = false;
        computed = 0.0;
        continue;
      }
      const std::size_t next = stage + 1;
      if (local_[next] < 0) {
        stretch(computed);
        // Only the last position reaches the head: it computes one row of logits.
        if (next == last && output.rows() > 1) {
          model::Matrix row = output.bottomRows(1);
          output = std::move(row);
        }
        WireError error;
        Message message = make_activations_message(
            prefill ? MessageKind::prefill_activations : MessageKind::decode_activation, request,
            static_cast<std::uint32_t>(next), sequence, output, options_.wire, &error);
        if (measured) {
          report_.activation_messages += 1;
          report_.wire_error.max_abs = std::max(report_.wire_error.max_abs, error.max_abs);
          report_.wire_error.relative_rms = std::max(report_.wire_error.relative_rms, error.relative_rms);
        }
        send(endpoint, deployment_.node_of_stage(next), std::move(message));
        return;
      }
      if (next == last && output.rows() > 1) {
        model::Matrix row = output.bottomRows(1);
        output = std::move(row);
      }
      input = std::move(output);
      stage = next;
    }
  }

  // Samples the next token and sends it to the user and, unless it is the
  // last, to the embedding's node; returns it instead when that node is this
  // one and the step is to be continued here.
  std::optional<TokenId> emit_token(Endpoint& endpoint, std::uint64_t request, RequestState& state,
                                    std::uint32_t sequence, const model::Matrix& logits) {
    const TokenId token =
        state.sampler.next(std::span<const float>(logits.data() + (logits.rows() - 1) * logits.cols(),
                                                  static_cast<std::size_t>(logits.cols())));
    const auto generated = static_cast<std::int64_t>(sequence) + 1;
    const bool last = generated >= options_.generation.max_new_tokens ||
                      (options_.generation.stop_at_eos && token == deployment_.config.eos_token_id);
    const TokenId one[] = {token};
    const auto head = static_cast<std::uint32_t>(deployment_.stage_count() - 1);
    const bool continue_here = !last && deployment_.embedding_node() == self_;
    // The embedding's copy first: it is on the critical path, the user's is not.
    if (!last && !continue_here) {
      send(endpoint, deployment_.embedding_node(),
           make_ids_message(MessageKind::token, request, 0, sequence + 1, one));
    }
    send(endpoint, deployment_.user(),
         make_ids_message(MessageKind::token, request, head, sequence, one, last ? flag_last_token : 0));
    return continue_here ? std::optional<TokenId>(token) : std::nullopt;
  }

  void record(std::size_t position, bool prefill, double seconds) {
    StageTiming& timing = report_.stages[position];
    const double emulated = stretched(seconds);
    if (prefill) {
      timing.prefill_calls += 1;
      timing.prefill_seconds += seconds;
      timing.emulated_prefill_seconds += emulated;
    } else {
      timing.decode_calls += 1;
      timing.decode_seconds += seconds;
      timing.emulated_decode_seconds += emulated;
    }
  }

  // A server faster than this machine cannot be emulated: it runs at this
  // machine's speed (the run report says so).
  double stretched(double seconds) const {
    return options_.emulate_speed && speed_ < 1.0 ? seconds / speed_ : seconds;
  }

  // Waits out the extra time a slower server would have computed. The last
  // millisecond is spun rather than slept: a sleep wakes late by the timer
  // slack (50 µs) plus the wake-up, as much as a small stage's whole decode
  // step. With 200 µs spun, a tiny-opt plan on one server ran each decode
  // step 36–58 % over its prediction while every stage's own time was within
  // 10–20 % of its own; with 1 ms, 28–45 %.
  //
  // The spin reads the node's weights, one byte per cache line: a slower
  // server is busy with them for the whole stretch and keeps them in its
  // caches, while an idle spin let other tenants of the shared L3 evict a
  // cache-resident model between steps. On a one-server tiny-opt plan with
  // σ = 0.25 (86 interleaved runs each) a yield-spin left the per-token time
  // +15 % over the prediction (median), the reading spin −1 % (docs/results.md).
  void stretch(double computed) {
    const double extra = stretched(computed) - computed;
    if (extra <= 0.0) return;
    const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(extra));
    constexpr auto spin = std::chrono::milliseconds(1);
    if (until - Clock::now() > spin) std::this_thread::sleep_until(until - spin);
    unsigned char sum = 0;
    while (Clock::now() < until) read_weights_until(until, sum);
    touched_ += sum;  // keeps the reads
  }

  // One pass over the node's weights, one byte per cache line, the clock read
  // every 64 KiB; stops early once `until` has passed.
  void read_weights_until(Clock::time_point until, unsigned char& sum) const {
    constexpr std::size_t cache_line = 64, between_clock_reads = 64 * 1024;
    for (const std::span<const std::byte> bytes : weights_) {
      for (std::size_t begin = 0; begin < bytes.size(); begin += between_clock_reads) {
        const std::size_t end = std::min(bytes.size(), begin + between_clock_reads);
        for (std::size_t i = begin; i < end; i += cache_line) sum += static_cast<unsigned char>(bytes[i]);
        if (Clock::now() >= until) return;
      }
    }
  }

  std::string describe(Address address) const {
    return address <= deployment_.user() ? deployment_.label(address) : fmt::format("unknown address {}", address);
  }

  const Deployment& deployment_;
  Address self_;
  std::string label_;
  std::vector<model::Stage> stages_;
  NodeOptions options_;
  std::vector<int> local_;  // by stage: position in stages_, or −1
  double speed_ = 1.0;
  std::vector<std::span<const std::byte>> weights_;  // every stage's weights and scales, for stretch()
  unsigned char touched_ = 0;
  std::map<std::uint64_t, RequestState> requests_;
  NodeReport report_;
};

inline nlohmann::json NodeReport::to_json() const {
  nlohmann::json stage_list = nlohmann::json::array();
  for (const StageTiming& t : stages) {
    stage_list.push_back({{"stage", t.stage},
                          {"name", t.name},
                          {"format", quant::format_name(t.format)},
                          {"weight_bytes", t.weight_bytes},
                          {"prefill_calls", t.prefill_calls},
                          {"decode_calls", t.decode_calls},
                          {"prefill_seconds", t.prefill_seconds},
                          {"decode_seconds", t.decode_seconds},
                          {"emulated_prefill_seconds", t.emulated_prefill_seconds},
                          {"emulated_decode_seconds", t.emulated_decode_seconds}});
  }
  nlohmann::json traffic = nlohmann::json::array();
  for (const auto& [to, t] : sent) traffic.push_back({{"to", to}, {"messages", t.messages}, {"bytes", t.bytes}});
  return {{"node", node},
          {"server", server},
          {"weight_bytes", weight_bytes},
          {"kv_cache_bytes", kv_cache_bytes},
          {"capacity_bytes", capacity_bytes},
          {"stages", stage_list},
          {"sent", traffic},
          {"activation_messages", activation_messages},
          {"wire_error", {{"max_abs", wire_error.max_abs}, {"relative_rms", wire_error.relative_rms}}}};
}

// Reads a report a node sent over the network: a malformed one is an error.
inline NodeReport NodeReport::from_json(const nlohmann::json& json) {
  NodeReport report;
  try {
    report.node = json.at("node").get<Address>();
    report.server = json.at("server").get<std::string>();
    report.weight_bytes = json.at("weight_bytes").get<double>();
    report.kv_cache_bytes = json.at("kv_cache_bytes").get<double>();
    report.capacity_bytes = json.at("capacity_bytes").get<double>();
    for (const auto& s : json.at("stages")) {
      StageTiming t;
      t.stage = s.at("stage").get<std::size_t>();
      t.name = s.at("name").get<std::string>();
      t.format = quant::parse_format(s.at("format").get<std::string>(), "node report");
      t.weight_bytes = s.at("weight_bytes").get<double>();
      t.prefill_calls = s.at("prefill_calls").get<std::int64_t>();
      t.decode_calls = s.at("decode_calls").get<std::int64_t>();
      t.prefill_seconds = s.at("prefill_seconds").get<double>();
      t.decode_seconds = s.at("decode_seconds").get<double>();
      t.emulated_prefill_seconds = s.at("emulated_prefill_seconds").get<double>();
      t.emulated_decode_seconds = s.at("emulated_decode_seconds").get<double>();
      report.stages.push_back(t);
    }
    for (const auto& t : json.at("sent")) {
      report.sent[t.at("to").get<Address>()] = {t.at("messages").get<std::int64_t>(), t.at("bytes").get<double>()};
    }
    report.activation_messages = json.at("activation_messages").get<std::int64_t>();
    report.wire_error = {json.at("wire_error").at("max_abs").get<double>(),
                         json.at("wire_error").at("relative_rms").get<double>()};
  } catch (const nlohmann::json::exception& e) {
    dilemma::detail::fail("malformed node report: {}", e.what());
  }
  return report;
}

}  // namespace dilemma::runtime
