#pragma once
// The plans DILEMMA is compared against, under the same cost model and the
// same problem (options included):
//  - single_server: every stage on the one best server, in one format;
//  - uniform_format: every stage in one format, placed optimally among plans
//    where each server holds one contiguous range of stages (EdgeShard-style
//    dynamic programming over the layer chain); placement_only is its float32
//    case, placement without quantization;
//  - greedy: stages in order, each on the server and format that add the
//    least delay while the rest can still fit and meet the budget.
// Each returns a Plan whose status is feasible (a valid plan, no claim of
// global optimality) or no_plan with the reason.

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/cost/messages.hpp"
#include "dilemma/edge/units.hpp"
#include "dilemma/error.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/plan/problem.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::plan {

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline SolverReport heuristic_report(std::string solver, std::string status,
                                     std::chrono::steady_clock::time_point start) {
  SolverReport report;
  report.solver = std::move(solver);
  report.status = std::move(status);
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace detail

inline Plan single_server(const Problem& problem, quant::Format format = quant::Format::f32) {
  problem.validate();
  const auto start = std::chrono::steady_clock::now();
  const std::string method = fmt::format("single-server-{}", quant::format_name(format));
  const cost::Instance& instance = problem.instance;
  std::optional<std::vector<cost::Assignment>> best;
  double best_objective = std::numeric_limits<double>::infinity();
  std::vector<std::string> reasons;
  for (std::size_t j = 0; j < instance.cluster.servers.size(); ++j) {
    std::vector<cost::Assignment> assignments;
    for (const cost::Workload& workload : instance.workloads) {
      assignments.emplace_back(workload.costs.stages.size(), cost::Placement{j, format});
    }
    const cost::Evaluation evaluation = evaluate(problem, assignments);
    if (!evaluation.feasible()) {
      reasons.push_back(fmt::format("on \"{}\": {}", instance.cluster.servers[j].name, evaluation.violations.front()));
    } else if (evaluation.objective < best_objective) {
      best_objective = evaluation.objective;
      best = std::move(assignments);
    }
  }
  if (!best) {
    return no_plan(method, Status::no_plan, problem, std::move(reasons),
                   detail::heuristic_report("exhaustive over servers", "no_plan", start));
  }
  SolverReport report = detail::heuristic_report("exhaustive over servers", "best", start);
  report.objective = best_objective;
  return make_plan(method, Status::feasible, problem, std::move(*best), report);
}

// Servers beyond this make the dynamic program's subsets of servers too many.
inline constexpr std::size_t uniform_format_max_servers = 10;

inline Plan uniform_format(const Problem& problem, quant::Format format, std::string method = {}) {
  problem.validate();
  const auto start = std::chrono::steady_clock::now();
  if (method.empty()) method = fmt::format("uniform-{}", quant::format_name(format));
  const cost::Instance& instance = problem.instance;
  const edge::Cluster& cluster = instance.cluster;
  const std::size_t server_count = cluster.servers.size();
  if (instance.workloads.size() != 1) {
    dilemma::detail::fail("{}: the dynamic program places one model; the instance has {}", method,
                          instance.workloads.size());
  }
  if (server_count > uniform_format_max_servers) {
    dilemma::detail::fail(
        "{}: the dynamic program enumerates subsets of servers and handles at most {}; the cluster has {}", method,
        uniform_format_max_servers, server_count);
  }
  auto give_up = [&](std::string reason) {
    return no_plan(method, Status::no_plan, problem, {std::move(reason)},
                   detail::heuristic_report("dynamic programming", "no_plan", start));
  };
  const cost::Workload& workload = instance.workloads.front();
  const cost::ModelCosts& costs = workload.costs;
  const std::size_t n = costs.stages.size();
  const bool throughput = instance.objective == cost::Objective::throughput;
  const cost::LinkTable links(cluster);
  const std::size_t user = cluster.user_node();

  double error = 0.0;
  for (std::size_t s = 0; s < n; ++s) {
    if (!costs.stages[s].formats[cost::format_index(format)]) {
      return give_up(fmt::format("stage {} has no costs for {}", costs.stages[s].name, quant::format_name(format)));
    }
    error += costs.error(s, format);
  }
  if (error > workload.accuracy_budget * (1.0 + cost::feasibility_tolerance)) {
    return give_up(fmt::format("every stage in {} has an error of {:.6g}, above the accuracy budget {:.6g}",
                               quant::format_name(format), error, workload.accuracy_budget));
  }

  // allowed[s][k]: stage s may run on k in `format` (options, memory, user links).
  const CandidateSet candidates = candidate_set(problem);
  std::vector<std::vector<bool>> allowed(n, std::vector<bool>(server_count, false));
  for (std::size_t s = 0; s < n; ++s) {
    for (const cost::Placement& p : candidates.placements[0][s]) {
      if (p.format == format) allowed[s][p.server] = true;
    }
  }
  // Prefix sums over stages of busy time and memory per server.
  std::vector<std::vector<double>> busy(server_count, std::vector<double>(n + 1, 0.0)), memory = busy;
  for (std::size_t k = 0; k < server_count; ++k) {
    for (std::size_t s = 0; s < n; ++s) {
      const bool runs = costs.stages[s].time(k, format).has_value();
      busy[k][s + 1] = busy[k][s] + (runs ? detail::busy_seconds(costs, s, {k, format}) : 0.0);
      memory[k][s + 1] = memory[k][s] + costs.memory_bytes(s, format);
    }
  }
  auto combine = [&](double a, double b) { return throughput ? std::max(a, b) : a + b; };
  // The cost of the chain's step from stage e on j to stage e+1 on k.
  auto boundary = [&](std::size_t e, std::size_t j, std::size_t k) {
    const cost::LinkCost step = cost::boundary_cost(links, costs, j, k, e + 1);
    return throughput ? step.busy : step.seconds;
  };
  // Prompt in, tokens out and the fed-back token, for a chain from a to k.
  auto ends = [&](std::size_t a, std::size_t k) -> std::optional<double> {
    const std::array<std::tuple<std::size_t, std::size_t, cost::Message>, 3> messages{{
        {user, a, cost::prompt_message(costs)},
        {k, user, cost::generated_tokens_message(costs)},
        {k, a, cost::fed_back_token_message(costs)},
    }};
    double seconds = 0.0;
    // The three may share a link (when the user sits on a or k), so the loads add per link.
    std::map<std::pair<std::size_t, std::size_t>, double> load;
    for (const auto& [from, to, message] : messages) {
      const std::optional<cost::LinkCost> price = cost::link_cost(links, from, to, message);
      if (!price) return std::nullopt;
      seconds += price->seconds;
      load[{from, to}] += price->busy;
    }
    if (!throughput) return seconds;
    double worst = 0.0;
    for (const auto& [pair, busy] : load) worst = std::max(worst, busy);
    return worst;
  };
  auto fits = [&](std::size_t k, std::size_t first, std::size_t last) {
    for (std::size_t s = first; s <= last; ++s) {
      if (!allowed[s][k]) return false;
    }
    return memory[k][last + 1] - memory[k][first] <=
           cluster.servers[k].memory_bytes * (1.0 + cost::feasibility_tolerance);
  };

  const std::size_t masks = std::size_t{1} << server_count;
  const std::size_t limit = problem.options.max_servers.value_or(server_count);
  constexpr double infinity = std::numeric_limits<double>::infinity();
  struct Parent {
    std::size_t end = 0, server = 0;
  };
  std::vector<double> value(n * server_count * masks);
  std::vector<Parent> parent(value.size());
  auto at = [&](std::size_t end, std::size_t server, std::size_t mask) {
    return (end * server_count + server) * masks + mask;
  };

  double best = infinity;
  cost::Assignment best_assignment;
  for (std::size_t a = 0; a < server_count; ++a) {
    if (!allowed[0][a]) continue;
    std::fill(value.begin(), value.end(), infinity);
    for (std::size_t e = 0; e < n && fits(a, 0, e); ++e) value[at(e, a, std::size_t{1} << a)] = busy[a][e + 1];
    for (std::size_t e = 0; e + 1 < n; ++e) {
      for (std::size_t j = 0; j < server_count; ++j) {
        for (std::size_t mask = 0; mask < masks; ++mask) {
          const double here = value[at(e, j, mask)];
          if (!std::isfinite(here) || static_cast<std::size_t>(std::popcount(mask)) >= limit) continue;
          for (std::size_t k = 0; k < server_count; ++k) {
            if ((mask >> k & 1) != 0 || !links.connected(j, k)) continue;
            const double step = combine(here, boundary(e, j, k));
            const std::size_t next_mask = mask | std::size_t{1} << k;
            for (std::size_t last = e + 1; last < n && fits(k, e + 1, last); ++last) {
              const double candidate = combine(step, busy[k][last + 1] - busy[k][e + 1]);
              if (candidate < value[at(last, k, next_mask)]) {
                value[at(last, k, next_mask)] = candidate;
                parent[at(last, k, next_mask)] = {e, j};
              }
            }
          }
        }
      }
    }
    for (std::size_t k = 0; k < server_count; ++k) {
      if (!allowed[n - 1][k]) continue;
      for (std::size_t mask = 0; mask < masks; ++mask) {
        const double chain = value[at(n - 1, k, mask)];
        if (!std::isfinite(chain)) continue;
        const auto tail = ends(a, k);
        if (!tail || combine(chain, *tail) >= best) continue;
        best = combine(chain, *tail);
        best_assignment.assign(n, cost::Placement{k, format});
        // Walk the segments back; the first one is the state whose set holds only its server.
        std::size_t end = n - 1, server = k, set = mask;
        while (set != (std::size_t{1} << server)) {
          const Parent from = parent[at(end, server, set)];
          for (std::size_t s = from.end + 1; s <= end; ++s) best_assignment[s] = {server, format};
          set &= ~(std::size_t{1} << server);
          end = from.end;
          server = from.server;
        }
        for (std::size_t s = 0; s <= end; ++s) best_assignment[s] = {server, format};
      }
    }
  }
  if (!std::isfinite(best)) {
    return give_up(
        fmt::format("no placement of every stage in {} with one contiguous range per server fits the servers "
                    "and their links",
                    quant::format_name(format)));
  }
  SolverReport report = detail::heuristic_report("dynamic programming", "optimal among contiguous placements", start);
  report.objective = best;
  return make_plan(method, Status::feasible, problem, {best_assignment}, report);
}

inline Plan placement_only(const Problem& problem) {
  return uniform_format(problem, quant::Format::f32, "placement-only-f32");
}

// Stages in order, model after model; each takes the (server, format) that
// adds the least to the objective, among those that leave enough memory for
// the remaining stages at their smallest formats and enough budget for their
// least errors.
inline Plan greedy(const Problem& problem) {
  problem.validate();
  const auto start = std::chrono::steady_clock::now();
  const cost::Instance& instance = problem.instance;
  const edge::Cluster& cluster = instance.cluster;
  const std::size_t server_count = cluster.servers.size();
  const bool throughput = instance.objective == cost::Objective::throughput;
  const cost::LinkTable links(cluster);
  const std::size_t user = cluster.user_node();
  const CandidateSet candidates = candidate_set(problem);
  if (!candidates.empty_reasons.empty()) {
    return no_plan("greedy", Status::no_plan, problem, candidates.empty_reasons,
                   detail::heuristic_report("greedy", "no_plan", start));
  }

  // At their smallest formats and least errors: memory_after[m][s] and
  // error_after[m][s] of model m's stages s, s+1, …; memory_of_later_models[m]
  // of the models placed after m.
  std::vector<std::vector<double>> memory_after(instance.workloads.size()), error_after(instance.workloads.size());
  double later_total = 0.0;
  std::vector<double> memory_of_later_models(instance.workloads.size(), 0.0);
  for (std::size_t m = instance.workloads.size(); m-- > 0;) {
    const cost::ModelCosts& costs = instance.workloads[m].costs;
    const std::size_t n = costs.stages.size();
    memory_after[m].assign(n + 1, 0.0);
    error_after[m].assign(n + 1, 0.0);
    for (std::size_t s = n; s-- > 0;) {
      double memory = std::numeric_limits<double>::infinity(), error = memory;
      for (const cost::Placement& p : candidates.placements[m][s]) {
        memory = std::min(memory, costs.memory_bytes(s, p.format));
        error = std::min(error, costs.error(s, p.format));
      }
      memory_after[m][s] = memory_after[m][s + 1] + memory;
      error_after[m][s] = error_after[m][s + 1] + error;
    }
    memory_of_later_models[m] = later_total;
    later_total += memory_after[m][0];
  }

  std::vector<double> free_memory(server_count), load(server_count, 0.0);
  for (std::size_t j = 0; j < server_count; ++j) free_memory[j] = cluster.servers[j].memory_bytes;
  std::vector<bool> used(server_count, false);
  std::vector<cost::Assignment> assignments;
  for (std::size_t m = 0; m < instance.workloads.size(); ++m) {
    const cost::Workload& workload = instance.workloads[m];
    const cost::ModelCosts& costs = workload.costs;
    const std::size_t n = costs.stages.size();
    const auto steps = static_cast<double>(costs.request.decode_steps());
    cost::Assignment assignment;
    std::vector<bool> entered(server_count, false);
    double error = 0.0;
    for (std::size_t s = 0; s < n; ++s) {
      const std::size_t previous = s == 0 ? user : assignment.back().server;
      std::optional<cost::Placement> choice;
      // Latency: the delay the stage adds. Throughput: first the busiest
      // server's load after adding it, then that delay.
      std::pair<double, double> choice_score{std::numeric_limits<double>::infinity(), 0.0};
      double remaining = 0.0;
      for (std::size_t k = 0; k < server_count; ++k) remaining += free_memory[k];
      for (const cost::Placement& p : candidates.placements[m][s]) {
        const std::size_t j = p.server;
        const double memory = costs.memory_bytes(s, p.format);
        if (memory > free_memory[j] * (1.0 + cost::feasibility_tolerance)) continue;
        if (error + costs.error(s, p.format) + error_after[m][s + 1] >
            workload.accuracy_budget * (1.0 + cost::feasibility_tolerance)) {
          continue;
        }
        if (memory + memory_after[m][s + 1] + memory_of_later_models[m] > remaining * (1.0 + cost::feasibility_tolerance))
          continue;
        if (!links.connected(previous, j)) continue;
        if (problem.options.contiguous && s > 0 && j != previous && entered[j]) continue;
        if (problem.options.max_servers && !used[j] &&
            static_cast<std::size_t>(std::count(used.begin(), used.end(), true)) >= *problem.options.max_servers) {
          continue;
        }
        if (s + 1 == n && steps > 0.0 && !links.connected(j, assignment.empty() ? j : assignment.front().server))
          continue;
        const double busy = detail::busy_seconds(costs, s, p);
        double transfer = 0.0;
        if (s == 0) {
          transfer = cost::link_cost(links, user, j, cost::prompt_message(costs))->seconds;
        } else if (previous != j) {
          transfer = cost::boundary_cost(links, costs, previous, j, s).seconds;
        }
        const std::pair<double, double> score{throughput ? load[j] + workload.weight * busy : 0.0, busy + transfer};
        if (score < choice_score) {
          choice_score = score;
          choice = p;
        }
      }
      if (!choice) {
        return no_plan(
            "greedy", Status::no_plan, problem,
            {fmt::format("{}: no server can take stage {} without leaving later stages without memory, budget "
                         "or links",
                         costs.name, costs.stages[s].name)},
            detail::heuristic_report("greedy", "no_plan", start));
      }
      const std::size_t j = choice->server;
      free_memory[j] -= costs.memory_bytes(s, choice->format);
      error += costs.error(s, choice->format);
      load[j] += workload.weight * detail::busy_seconds(costs, s, *choice);
      used[j] = true;
      entered[j] = true;
      assignment.push_back(*choice);
    }
    assignments.push_back(std::move(assignment));
  }
  SolverReport report = detail::heuristic_report("greedy", "done", start);
  report.objective = evaluate(problem, assignments).objective;
  return make_plan("greedy", Status::feasible, problem, std::move(assignments), report);
}

}  // namespace dilemma::plan
