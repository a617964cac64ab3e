#pragma once
// What a run measured, next to what the plan predicted for the same request:
// per request the time to the first token, the time per generated token and
// the total; per stage its compute time; per link its bytes and transfer
// time; the throughput with several requests in flight. As JSON and as a
// table for people. Relative errors are (measured − predicted) / predicted.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/edge/units.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/runtime/client.hpp"
#include "dilemma/runtime/deployment.hpp"
#include "dilemma/runtime/emulated_network.hpp"
#include "dilemma/runtime/node.hpp"
#include "dilemma/runtime/prediction.hpp"

namespace dilemma::runtime {

struct Compared {
  double measured = 0.0;
  double predicted = 0.0;
  double relative_error() const { return predicted != 0.0 ? (measured - predicted) / predicted : 0.0; }
};

struct RequestReport {
  std::vector<TokenId> prompt;
  std::vector<TokenId> tokens;
  bool stopped_at_eos = false;
  Compared first_token_seconds;
  Compared per_token_seconds;
  Compared completion_seconds;
};

struct StageReport {
  std::size_t stage = 0;
  std::string name;
  std::string server;
  quant::Format format = quant::Format::f32;
  double weight_bytes = 0.0;
  std::int64_t prefill_calls = 0;
  std::int64_t decode_calls = 0;
  double local_prefill_seconds = 0.0;  // mean per call, on this machine
  double local_decode_seconds = 0.0;
  Compared prefill_seconds;  // mean per call as the server ran it (emulated), vs the plan's p[s][j][f]
  Compared decode_seconds;   // vs d[s][j][f]
};

struct LinkReport {
  std::string from;
  std::string to;
  std::int64_t messages = 0;
  Compared bytes;                                 // all requests; measured includes the 56-byte headers
  Compared busy_seconds;                          // Σ bytes / bandwidth
  std::optional<double> transfer_seconds;         // Σ send → arrival (emulated links only)
};

struct NodeMemory {
  std::string server;
  double weight_bytes = 0.0;
  double kv_cache_bytes = 0.0;
  double capacity_bytes = 0.0;
};

struct RunReport {
  std::string transport;  // "emulated" or "mpi"
  std::string mode;       // "latency" or "throughput"
  std::string model;
  std::string cluster;
  std::string plan_method;
  WireFormat wire = WireFormat::f32;
  std::size_t requests_in_flight = 1;
  std::vector<RequestReport> requests;
  std::vector<StageReport> stages;
  std::vector<LinkReport> links;
  std::vector<NodeMemory> nodes;
  Compared first_token_seconds;  // means over requests
  Compared per_token_seconds;
  Compared completion_seconds;
  double wall_seconds = 0.0;             // first prompt sent → last token received
  Compared throughput_requests_per_second;  // measured: requests / wall; predicted: 1 / bottleneck
  WireError wire_error;
  std::vector<std::string> notes;

  nlohmann::json to_json() const;
  std::string table() const;
};

namespace detail {

inline nlohmann::json compared_json(const Compared& c) {
  return {{"measured", c.measured}, {"predicted", c.predicted}, {"relative_error", c.relative_error()}};
}

inline double mean(const std::vector<double>& values) {
  double sum = 0.0;
  for (double v : values) sum += v;
  return values.empty() ? 0.0 : sum / static_cast<double>(values.size());
}

}  // namespace detail

// Puts the measurements of a finished run next to the plan's predictions.
// `links` is empty for a transport that cannot time them (MPI): link bytes
// then come from what the nodes sent.
inline RunReport make_report(const plan::Plan& plan, std::size_t model, const Deployment& deployment,
                             const std::vector<RequestResult>& results, const std::vector<NodeReport>& nodes,
                             const std::optional<std::vector<LinkMeasurement>>& links, WireFormat wire,
                             std::size_t requests_in_flight, bool emulate_speed) {
  RunReport report;
  report.model = deployment.model_name;
  report.cluster = deployment.cluster.name;
  report.plan_method = plan.method;
  report.wire = wire;
  report.requests_in_flight = requests_in_flight;
  report.mode = requests_in_flight > 1 ? "throughput" : "latency";

  std::vector<double> first, step, completion, predicted_first, predicted_step, predicted_completion;
  std::optional<Prediction> reference;  // the first request's, for the per-stage and per-link columns
  std::map<std::pair<std::size_t, std::size_t>, std::pair<double, double>> predicted_links;  // bytes, busy
  double predicted_busy = 0.0;
  Clock::time_point begin = Clock::time_point::max(), end = Clock::time_point::min();
  for (const RequestResult& result : results) {
    const auto prompt = static_cast<std::int64_t>(result.prompt.size());
    const auto generated = static_cast<std::int64_t>(result.tokens.size());
    Prediction prediction = predict(plan, model, deployment, prompt, generated, wire);
    const cost::ModelEvaluation& e = prediction.evaluation;
    RequestReport r;
    r.prompt = result.prompt;
    r.tokens = result.tokens;
    r.stopped_at_eos = result.stopped_at_eos;
    r.first_token_seconds = {result.first_token_seconds, e.first_token_seconds};
    r.per_token_seconds = {result.per_token_seconds, generated > 1 ? e.decode_step_seconds : 0.0};
    r.completion_seconds = {result.completion_seconds, e.completion_seconds};
    report.requests.push_back(r);
    first.push_back(result.first_token_seconds);
    completion.push_back(result.completion_seconds);
    predicted_first.push_back(e.first_token_seconds);
    predicted_completion.push_back(e.completion_seconds);
    if (generated > 1) {
      step.push_back(result.per_token_seconds);
      predicted_step.push_back(e.decode_step_seconds);
    }
    for (const cost::LinkUse& use : e.links) {
      auto& [bytes, busy] = predicted_links[{use.from, use.to}];
      bytes += use.bytes;
      busy += use.busy_seconds;
    }
    predicted_busy += e.bottleneck_seconds;
    begin = std::min(begin, result.sent);
    end = std::max(end, result.last);
    if (!reference) reference = std::move(prediction);
  }
  report.first_token_seconds = {detail::mean(first), detail::mean(predicted_first)};
  report.per_token_seconds = {detail::mean(step), detail::mean(predicted_step)};
  report.completion_seconds = {detail::mean(completion), detail::mean(predicted_completion)};
  report.wall_seconds = results.empty() ? 0.0 : std::chrono::duration<double>(end - begin).count();
  const auto count = static_cast<double>(results.size());
  report.throughput_requests_per_second = {report.wall_seconds > 0.0 ? count / report.wall_seconds : 0.0,
                                           predicted_busy > 0.0 ? count / predicted_busy : 0.0};

  for (const NodeReport& node : nodes) {
    report.nodes.push_back({node.server, node.weight_bytes, node.kv_cache_bytes, node.capacity_bytes});
    report.wire_error.max_abs = std::max(report.wire_error.max_abs, node.wire_error.max_abs);
    report.wire_error.relative_rms = std::max(report.wire_error.relative_rms, node.wire_error.relative_rms);
    for (const StageTiming& t : node.stages) {
      StageReport s;
      s.stage = t.stage;
      s.name = t.name;
      s.server = node.server;
      s.format = t.format;
      s.weight_bytes = t.weight_bytes;
      s.prefill_calls = t.prefill_calls;
      s.decode_calls = t.decode_calls;
      auto per_call = [](double seconds, std::int64_t calls) { return calls > 0 ? seconds / static_cast<double>(calls) : 0.0; };
      s.local_prefill_seconds = per_call(t.prefill_seconds, t.prefill_calls);
      s.local_decode_seconds = per_call(t.decode_seconds, t.decode_calls);
      s.prefill_seconds.measured = per_call(t.emulated_prefill_seconds, t.prefill_calls);
      s.decode_seconds.measured = per_call(t.emulated_decode_seconds, t.decode_calls);
      if (reference) {
        const auto& times = reference->costs.stages[t.stage].time(node.node, t.format);
        if (times) {
          s.prefill_seconds.predicted = times->prefill_seconds;
          s.decode_seconds.predicted = times->decode_seconds;
        }
      }
      report.stages.push_back(s);
    }
  }
  std::sort(report.stages.begin(), report.stages.end(),
            [](const StageReport& a, const StageReport& b) { return a.stage < b.stage; });
  std::sort(report.nodes.begin(), report.nodes.end(),
            [](const NodeMemory& a, const NodeMemory& b) { return a.server < b.server; });

  // Measured traffic per cluster-node pair: from the emulated links, or from
  // what the nodes sent (the user's messages are not counted then).
  std::map<std::pair<std::size_t, std::size_t>, LinkReport> by_pair;
  const edge::Cluster& cluster = deployment.cluster;
  auto entry = [&](std::size_t a, std::size_t b) -> LinkReport& {
    LinkReport& link = by_pair[{a, b}];
    link.from = cluster.node_name(a);
    link.to = cluster.node_name(b);
    return link;
  };
  if (links) {
    for (const LinkMeasurement& m : *links) {
      LinkReport& link = entry(m.from, m.to);
      link.messages = m.messages;
      link.bytes.measured = m.bytes;
      link.busy_seconds.measured = m.busy_seconds;
      link.transfer_seconds = m.transfer_seconds;
    }
  } else {
    for (const NodeReport& node : nodes) {
      for (const auto& [to, traffic] : node.sent) {
        const std::size_t a = deployment.cluster_node(node.node), b = deployment.cluster_node(to);
        if (a == b) continue;
        LinkReport& link = entry(a, b);
        link.messages += traffic.messages;
        link.bytes.measured += traffic.bytes;
        if (const auto spec = cluster.link(a, b)) link.busy_seconds.measured += traffic.bytes / spec->bandwidth;
      }
    }
    report.notes.push_back("link bytes are what the nodes sent (the user's prompts and releases are not counted)");
  }
  for (const auto& [pair, values] : predicted_links) {
    LinkReport& link = entry(pair.first, pair.second);
    link.bytes.predicted = values.first;
    link.busy_seconds.predicted = values.second;
  }
  for (auto& [pair, link] : by_pair) report.links.push_back(link);

  for (Address node : deployment.nodes()) {
    const edge::Server& server = cluster.servers[node];
    if (server.speed_factor > 1.0 && emulate_speed) {
      report.notes.push_back(fmt::format(
          "server \"{}\" is {}x faster than this machine: it ran at this machine's speed", server.name,
          server.speed_factor));
    }
  }
  report.notes.push_back(
      emulate_speed
          ? "predictions are the plan's cost tables for each request's prompt and generated tokens (prefill scaled "
            "linearly with the prompt); compute is emulated from this machine's speed, so they agree when the "
            "plan's costs were profiled here"
          : "predictions are the plan's cost tables for each request's prompt and generated tokens (prefill scaled "
            "linearly with the prompt); the servers ran at their own speed, so they agree when the plan's costs "
            "were profiled on them");
  return report;
}

inline nlohmann::json RunReport::to_json() const {
  using detail::compared_json;
  nlohmann::json request_list = nlohmann::json::array();
  for (const RequestReport& r : requests) {
    request_list.push_back({{"prompt_tokens", r.prompt.size()},
                            {"new_tokens", r.tokens.size()},
                            {"tokens", r.tokens},
                            {"stopped_at_eos", r.stopped_at_eos},
                            {"time_to_first_token_seconds", compared_json(r.first_token_seconds)},
                            {"per_token_seconds", compared_json(r.per_token_seconds)},
                            {"completion_seconds", compared_json(r.completion_seconds)}});
  }
  nlohmann::json stage_list = nlohmann::json::array();
  for (const StageReport& s : stages) {
    stage_list.push_back({{"stage", s.name},
                          {"server", s.server},
                          {"format", quant::format_name(s.format)},
                          {"weight_bytes", s.weight_bytes},
                          {"prefill_calls", s.prefill_calls},
                          {"decode_calls", s.decode_calls},
                          {"local_prefill_seconds", s.local_prefill_seconds},
                          {"local_decode_seconds", s.local_decode_seconds},
                          {"prefill_seconds", compared_json(s.prefill_seconds)},
                          {"decode_seconds", compared_json(s.decode_seconds)}});
  }
  nlohmann::json link_list = nlohmann::json::array();
  for (const LinkReport& l : links) {
    link_list.push_back({{"from", l.from},
                         {"to", l.to},
                         {"messages", l.messages},
                         {"bytes", compared_json(l.bytes)},
                         {"busy_seconds", compared_json(l.busy_seconds)},
                         {"transfer_seconds", l.transfer_seconds ? nlohmann::json(*l.transfer_seconds) : nlohmann::json(nullptr)}});
  }
  nlohmann::json node_list = nlohmann::json::array();
  for (const NodeMemory& n : nodes) {
    node_list.push_back({{"server", n.server},
                         {"weight_bytes", n.weight_bytes},
                         {"kv_cache_bytes", n.kv_cache_bytes},
                         {"capacity_bytes", n.capacity_bytes}});
  }
  return {{"transport", transport},
          {"mode", mode},
          {"model", model},
          {"cluster", cluster},
          {"plan_method", plan_method},
          {"wire", wire_format_name(wire)},
          {"requests_in_flight", requests_in_flight},
          {"time_to_first_token_seconds", compared_json(first_token_seconds)},
          {"per_token_seconds", compared_json(per_token_seconds)},
          {"completion_seconds", compared_json(completion_seconds)},
          {"wall_seconds", wall_seconds},
          {"throughput_requests_per_second", compared_json(throughput_requests_per_second)},
          {"wire_error", {{"max_abs", wire_error.max_abs}, {"relative_rms", wire_error.relative_rms}}},
          {"requests", request_list},
          {"stages", stage_list},
          {"links", link_list},
          {"nodes", node_list},
          {"notes", notes}};
}

inline std::string RunReport::table() const {
  auto ms = [](double seconds) { return fmt::format("{:.3f}", seconds * 1e3); };
  auto pct = [](const Compared& c) {
    return c.predicted != 0.0 ? fmt::format("{:+.1f}%", 100.0 * c.relative_error()) : std::string("-");
  };
  std::string out = fmt::format("{} run of {} on cluster {} ({} plan), {} mode, {} request(s), activations {} on the wire\n",
                                transport, model, cluster, plan_method, mode, requests.size(), wire_format_name(wire));
  out += fmt::format("\n{:<24} {:>12} {:>12} {:>8}\n", "delay (mean over requests)", "measured ms", "predicted ms", "error");
  auto row = [&](const char* name, const Compared& c) {
    out += fmt::format("{:<24} {:>12} {:>12} {:>8}\n", name, ms(c.measured), ms(c.predicted), pct(c));
  };
  row("time to first token", first_token_seconds);
  row("per generated token", per_token_seconds);
  row("total", completion_seconds);
  if (requests.size() > 1) {
    out += fmt::format("{:<24} {:>12.2f} {:>12.2f} {:>8}   (requests/s)\n", "throughput",
                       throughput_requests_per_second.measured, throughput_requests_per_second.predicted,
                       pct(throughput_requests_per_second));
  }
  out += fmt::format("\n{:<10} {:<16} {:<5} {:>10} {:>12} {:>12} {:>12} {:>12}\n", "stage", "server", "fmt", "weights",
                     "prefill ms", "predicted", "decode ms", "predicted");
  for (const StageReport& s : stages) {
    out += fmt::format("{:<10} {:<16} {:<5} {:>10} {:>12} {:>12} {:>12} {:>12}\n", s.name, s.server,
                       quant::format_name(s.format), edge::format_bytes(s.weight_bytes), ms(s.prefill_seconds.measured),
                       ms(s.prefill_seconds.predicted), ms(s.decode_seconds.measured), ms(s.decode_seconds.predicted));
  }
  out += fmt::format("\n{:<16} {:<16} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12}\n", "link from", "to", "messages",
                     "bytes", "predicted", "busy ms", "predicted", "transfer ms");
  for (const LinkReport& l : links) {
    out += fmt::format("{:<16} {:<16} {:>8} {:>10.0f} {:>10.0f} {:>10} {:>10} {:>12}\n", l.from, l.to, l.messages,
                       l.bytes.measured, l.bytes.predicted, ms(l.busy_seconds.measured), ms(l.busy_seconds.predicted),
                       l.transfer_seconds ? ms(*l.transfer_seconds) : std::string("-"));
  }
  out += fmt::format("\n{:<16} {:>12} {:>12} {:>12}\n", "server", "weights", "KV caches", "capacity");
  for (const NodeMemory& n : nodes) {
    out += fmt::format("{:<16} {:>12} {:>12} {:>12}\n", n.server, edge::format_bytes(n.weight_bytes),
                       edge::format_bytes(n.kv_cache_bytes), edge::format_bytes(n.capacity_bytes));
  }
  if (wire == WireFormat::f16) {
    out += fmt::format("\nf16 on the wire: largest rounding error {:.3g}, relative RMS error {:.3g}\n",
                       wire_error.max_abs, wire_error.relative_rms);
  }
  for (const std::string& note : notes) out += "note: " + note + "\n";
  return out;
}

}  // namespace dilemma::runtime
