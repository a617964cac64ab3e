#pragma once
// The exact objective and constraint usage of any assignment (stage → server,
// format) of every model of an instance, computed from the cost tables alone.
// It is the reference the ILP, the baselines and the brute-force enumerator
// are checked against, and what a plan's predicted numbers come from. The
// formulas, term by term, are in docs/model.md.
//
// Timeline of one request (batch 1): the prompt goes from the user to the
// embedding's server; the prefill runs the stages one after the other, each
// sending its activations to the next (the head receives only the last
// position); the head's server samples the first token and sends it to the
// user. Each of the N − 1 decode steps then starts with the previous token
// going from the head's server to the embedding's, runs every stage on one
// token and ends with the head's sample, which goes to the user while the next
// step runs; only the last token's trip to the user is on the critical path.
//   completion = first_token + (N − 1) · decode_step

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/cost/instance.hpp"
#include "dilemma/cost/messages.hpp"
#include "dilemma/edge/units.hpp"
#include "dilemma/error.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::cost {

struct Placement {
  std::size_t server = 0;
  quant::Format format = quant::Format::f32;
  bool operator==(const Placement&) const = default;
};

// One placement per stage, in stage order.
using Assignment = std::vector<Placement>;

// Capacities and budgets hold up to this relative slack, which absorbs
// rounding in sums of many terms and in the solver.
inline constexpr double feasibility_tolerance = 1e-9;

// What one model's request costs on one server.
struct ServerUse {
  std::vector<std::size_t> stages;
  double memory_bytes = 0.0;
  double prefill_seconds = 0.0;      // compute in the prefill
  double decode_step_seconds = 0.0;  // compute in one decode step
  double busy_seconds = 0.0;         // per request: prefill + (N − 1) decode steps
};

// What one model's request costs on one directed link between nodes.
struct LinkUse {
  std::size_t from = 0;
  std::size_t to = 0;
  double first_token_seconds = 0.0;  // transfers before the first token reaches the user
  double decode_step_seconds = 0.0;  // transfers in one decode step
  double bytes = 0.0;                // per request
  double busy_seconds = 0.0;         // per request: bytes / bandwidth
};

struct ModelEvaluation {
  double first_token_seconds = 0.0;
  double decode_step_seconds = 0.0;
  double completion_seconds = 0.0;
  double compute_seconds = 0.0;     // part of completion spent computing
  double transfer_seconds = 0.0;    // part of completion spent on links
  double bottleneck_seconds = 0.0;  // busiest server or link per request, this model alone
  double error = 0.0;
  double weight_bytes = 0.0;
  double quantization_ratio = 0.0;  // weight bytes / float32 weight bytes
  std::vector<ServerUse> servers;   // one per server
  std::vector<LinkUse> links;       // the links used, ordered by (from, to)
};

struct LinkBusy {
  std::size_t from = 0;
  std::size_t to = 0;
  double busy_seconds = 0.0;  // Σ_models weight · busy per request
};

struct Evaluation {
  std::vector<ModelEvaluation> models;
  std::vector<double> server_memory_bytes;  // all models together
  std::vector<double> server_busy_seconds;  // Σ_models weight · busy per request
  std::vector<LinkBusy> link_busy;
  double weighted_completion_seconds = 0.0;  // Σ_models weight · completion
  double bottleneck_seconds = 0.0;           // max of server_busy_seconds and link_busy
  double objective = 0.0;                    // one of the two above, by the instance's objective
  std::vector<std::string> violations;       // empty for a feasible assignment

  bool feasible() const { return violations.empty(); }
};

inline Evaluation evaluate(const Instance& instance, std::span<const Assignment> assignments) {
  using dilemma::detail::fail;
  instance.validate("evaluate");  // the tables' shapes, before indexing them
  const edge::Cluster& cluster = instance.cluster;
  if (assignments.size() != instance.workloads.size()) {
    fail("evaluate: {} assignments for {} models", assignments.size(), instance.workloads.size());
  }
  const LinkTable links(cluster);
  const std::size_t server_count = cluster.servers.size();
  const std::size_t user = cluster.user_node();
  constexpr double infinity = std::numeric_limits<double>::infinity();

  Evaluation result;
  result.server_memory_bytes.assign(server_count, 0.0);
  result.server_busy_seconds.assign(server_count, 0.0);
  std::map<std::pair<std::size_t, std::size_t>, double> link_busy;

  for (std::size_t m = 0; m < assignments.size(); ++m) {
    const Workload& workload = instance.workloads[m];
    const ModelCosts& costs = workload.costs;
    const Assignment& assignment = assignments[m];
    const std::size_t stage_count = costs.stages.size();
    if (assignment.size() != stage_count) {
      fail("evaluate: the assignment of model \"{}\" has {} stages, the model has {}", costs.name, assignment.size(),
           stage_count);
    }
    for (std::size_t s = 0; s < stage_count; ++s) {
      if (assignment[s].server >= server_count) {
        fail("evaluate: model \"{}\" stage {} is on server {}, but the cluster has {} servers", costs.name,
             costs.stages[s].name, assignment[s].server, server_count);
      }
    }
    const auto decode_steps = static_cast<double>(costs.request.decode_steps());

    ModelEvaluation evaluation;
    evaluation.servers.resize(server_count);
    for (std::size_t s = 0; s < stage_count; ++s) {
      const auto [server, format] = assignment[s];
      const StageCosts& stage = costs.stages[s];
      const auto& format_costs = stage.formats[format_index(format)];
      const auto& times = stage.times[server][format_index(format)];
      ServerUse& use = evaluation.servers[server];
      use.stages.push_back(s);
      if (!format_costs || !times) {
        result.violations.push_back(fmt::format("{}: stage {} cannot run on server \"{}\" in {}{}", costs.name,
                                                stage.name, cluster.servers[server].name, quant::format_name(format),
                                                format_costs ? "" : " (no costs for that format)"));
        use.prefill_seconds = use.decode_step_seconds = infinity;
        continue;
      }
      use.memory_bytes += costs.memory_bytes(s, format);
      use.prefill_seconds += times->prefill_seconds;
      use.decode_step_seconds += times->decode_seconds;
      evaluation.error += format_costs->error;
      evaluation.weight_bytes += format_costs->weight_bytes;
    }

    std::map<std::pair<std::size_t, std::size_t>, LinkUse> used;
    // The decode steps' messages count in decode_step_seconds once per step,
    // the others in first_token_seconds (messages.hpp).
    auto send = [&](std::size_t from, std::size_t to, const Message& message, const std::string& what) {
      if (from == to || message.count == 0.0) return;
      LinkUse& use = used[{from, to}];
      use.from = from;
      use.to = to;
      const auto seconds = links.transfer_seconds(from, to, message.bytes);
      if (!seconds) {
        if (std::isfinite(use.busy_seconds)) {  // once per link: the prefill and the decode steps would repeat it
          result.violations.push_back(fmt::format("{}: no link from \"{}\" to \"{}\" for {}", costs.name,
                                                  cluster.node_name(from), cluster.node_name(to), what));
        }
        use.first_token_seconds = use.decode_step_seconds = use.busy_seconds = infinity;
        return;
      }
      (message.every_decode_step ? use.decode_step_seconds : use.first_token_seconds) += *seconds;
      use.bytes += message.count * message.bytes;
      use.busy_seconds += message.count * *links.busy_seconds(from, to, message.bytes);
    };
    const std::size_t first = assignment.front().server;
    const std::size_t last = assignment.back().server;
    send(user, first, prompt_message(costs), "the prompt");
    for (std::size_t s = 0; s + 1 < stage_count; ++s) {
      const std::string what =
          fmt::format("the activations from stage {} to {}", costs.stages[s].name, costs.stages[s + 1].name);
      send(assignment[s].server, assignment[s + 1].server, prefill_activations_message(costs, s + 1), what);
      send(assignment[s].server, assignment[s + 1].server, decode_activations_message(costs), what);
    }
    send(last, first, fed_back_token_message(costs), "the tokens fed back to the embedding");
    send(last, user, generated_tokens_message(costs), "the generated tokens");

    double first_token = 0.0, decode_step = 0.0, compute = 0.0;
    for (std::size_t j = 0; j < server_count; ++j) {
      ServerUse& use = evaluation.servers[j];
      use.busy_seconds = use.prefill_seconds + decode_steps * use.decode_step_seconds;
      first_token += use.prefill_seconds;
      decode_step += use.decode_step_seconds;
      compute += use.busy_seconds;
      result.server_memory_bytes[j] += use.memory_bytes;
      result.server_busy_seconds[j] += workload.weight * use.busy_seconds;
      evaluation.bottleneck_seconds = std::max(evaluation.bottleneck_seconds, use.busy_seconds);
    }
    for (auto& [key, use] : used) {
      first_token += use.first_token_seconds;
      decode_step += use.decode_step_seconds;
      link_busy[key] += workload.weight * use.busy_seconds;
      evaluation.bottleneck_seconds = std::max(evaluation.bottleneck_seconds, use.busy_seconds);
      evaluation.links.push_back(use);
    }
    evaluation.first_token_seconds = first_token;
    evaluation.decode_step_seconds = decode_step;
    evaluation.completion_seconds = first_token + decode_steps * decode_step;
    evaluation.compute_seconds = compute;
    evaluation.transfer_seconds = evaluation.completion_seconds - compute;
    evaluation.quantization_ratio = evaluation.weight_bytes / costs.f32_weight_bytes();
    if (evaluation.error > workload.accuracy_budget * (1.0 + feasibility_tolerance)) {
      result.violations.push_back(fmt::format("{}: the accuracy error {:.6g} exceeds the budget {:.6g}", costs.name,
                                              evaluation.error, workload.accuracy_budget));
    }
    result.weighted_completion_seconds += workload.weight * evaluation.completion_seconds;
    result.models.push_back(std::move(evaluation));
  }

  for (std::size_t j = 0; j < server_count; ++j) {
    const double capacity = cluster.servers[j].memory_bytes;
    if (result.server_memory_bytes[j] > capacity * (1.0 + feasibility_tolerance)) {
      result.violations.push_back(
          fmt::format("server \"{}\": the stages placed on it need {}, it has {}", cluster.servers[j].name,
                      edge::format_bytes(result.server_memory_bytes[j]), edge::format_bytes(capacity)));
    }
    result.bottleneck_seconds = std::max(result.bottleneck_seconds, result.server_busy_seconds[j]);
  }
  for (const auto& [key, busy] : link_busy) {
    result.link_busy.push_back({key.first, key.second, busy});
    result.bottleneck_seconds = std::max(result.bottleneck_seconds, busy);
  }
  result.objective =
      instance.objective == Objective::latency ? result.weighted_completion_seconds : result.bottleneck_seconds;
  return result;
}

}  // namespace dilemma::cost
