#pragma once
// Why there is no plan, in words and numbers. precheck() finds the common
// causes without solving: a stage that fits nowhere, a budget below the least
// error any format mix reaches, models larger than the servers' memory, and
// servers cut off from the user. When the solver proves infeasibility
// anyway, diagnose() re-solves with one family of constraints dropped at a
// time and names the family that makes the difference.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/edge/units.hpp"
#include "dilemma/ilp/cbc_solver.hpp"
#include "dilemma/plan/formulation.hpp"
#include "dilemma/plan/problem.hpp"

namespace dilemma::plan {

namespace detail {

// Nodes reachable from `start` over the cluster's links, following them
// forwards or, with `reverse`, backwards.
inline std::vector<bool> reachable(const cost::LinkTable& links, std::size_t start, bool reverse) {
  std::vector<bool> seen(links.nodes(), false);
  std::deque<std::size_t> queue{start};
  seen[start] = true;
  while (!queue.empty()) {
    const std::size_t node = queue.front();
    queue.pop_front();
    for (std::size_t next = 0; next < links.nodes(); ++next) {
      if (seen[next] || !(reverse ? links.connected(next, node) : links.connected(node, next))) continue;
      seen[next] = true;
      queue.push_back(next);
    }
  }
  return seen;
}

inline std::string model_names(const cost::Instance& instance) {
  std::string names;
  for (std::size_t m = 0; m < instance.workloads.size(); ++m) {
    if (m > 0) names += m + 1 == instance.workloads.size() ? " and " : ", ";
    names += instance.workloads[m].costs.name;
  }
  return names;
}

inline std::string server_list(const edge::Cluster& cluster, const std::vector<std::size_t>& servers) {
  std::string list;
  for (std::size_t j : servers) list += (list.empty() ? "\"" : ", \"") + cluster.servers[j].name + "\"";
  return list;
}

// Solves a variant of the problem; nullopt when it has no solution (or none
// was found in the time limit).
inline std::optional<ilp::Solution> solve_variant(const Problem& problem, const Relaxation& keep, const Goal& goal,
                                                  const ilp::SolverOptions& options) {
  const CandidateSet candidates = candidate_set(problem, keep);
  if (!candidates.empty_reasons.empty()) return std::nullopt;
  const Formulation formulation = formulate(problem, candidates.placements, keep, goal);
  ilp::SolverOptions quiet = options;
  quiet.log_level = 0;
  quiet.root_relaxation = false;
  ilp::Solution solution = ilp::solve(formulation.model, quiet);
  if (!solution.has_solution()) return std::nullopt;
  solution.objective *= formulation.objective_unit;
  return solution;
}

}  // namespace detail

inline std::vector<std::string> precheck(const Problem& problem, const CandidateSet& candidates) {
  if (!candidates.empty_reasons.empty()) return candidates.empty_reasons;
  const cost::Instance& instance = problem.instance;
  const edge::Cluster& cluster = instance.cluster;
  std::vector<std::string> reasons;

  double least_memory = 0.0;
  std::vector<bool> may_hold(cluster.servers.size(), false);
  for (std::size_t m = 0; m < instance.workloads.size(); ++m) {
    const cost::Workload& workload = instance.workloads[m];
    double least_error = 0.0;
    for (std::size_t s = 0; s < workload.costs.stages.size(); ++s) {
      double error = std::numeric_limits<double>::infinity(), memory = error;
      for (const cost::Placement& placement : candidates.placements[m][s]) {
        error = std::min(error, workload.costs.error(s, placement.format));
        memory = std::min(memory, workload.costs.memory_bytes(s, placement.format));
        may_hold[placement.server] = true;
      }
      least_error += error;
      least_memory += memory;
    }
    if (least_error > workload.accuracy_budget * (1.0 + cost::feasibility_tolerance)) {
      reasons.push_back(
          fmt::format("{}: the accuracy budget {:.6g} is below the least error any plan reaches, {:.6g} "
                      "(every stage in its most accurate format that fits a server)",
                      workload.costs.name, workload.accuracy_budget, least_error));
    }
  }

  const cost::LinkTable links(cluster);
  const std::size_t user = cluster.user_node();
  const std::vector<bool> from_user = detail::reachable(links, user, false);
  const std::vector<bool> to_user = detail::reachable(links, user, true);
  double all_memory = 0.0, usable_memory = 0.0;
  std::vector<std::size_t> usable, cut_off;
  for (std::size_t j = 0; j < cluster.servers.size(); ++j) {
    if (!may_hold[j]) continue;
    all_memory += cluster.servers[j].memory_bytes;
    if (from_user[j] && to_user[j]) {
      usable_memory += cluster.servers[j].memory_bytes;
      usable.push_back(j);
    } else {
      cut_off.push_back(j);
    }
  }
  const std::string names = detail::model_names(instance);
  const char* verb = instance.workloads.size() == 1 ? "needs" : "need";
  if (least_memory > all_memory * (1.0 + cost::feasibility_tolerance)) {
    reasons.push_back(
        fmt::format("{} {} at least {} (every stage in the smallest format the options and the accuracy "
                    "budget allow, with the KV caches), but the servers that may hold stages have {} in total",
                    names, verb, edge::format_bytes(least_memory), edge::format_bytes(all_memory)));
  } else if (least_memory > usable_memory * (1.0 + cost::feasibility_tolerance)) {
    reasons.push_back(
        fmt::format("{} {} {} no chain of links from and back to {}, so only {} ({} in total) can take "
                    "part, but {} {} at least {}",
                    cut_off.size() == 1 ? "server" : "servers", detail::server_list(cluster, cut_off),
                    cut_off.size() == 1 ? "has" : "have", cluster.user_label(),
                    usable.empty() ? std::string("no server") : detail::server_list(cluster, usable),
                    edge::format_bytes(usable_memory), names, verb, edge::format_bytes(least_memory)));
  }
  return reasons;
}

// Call after the solver proved `problem` infeasible although precheck() found
// nothing; solves relaxed variants under `options`.
inline std::vector<std::string> diagnose(const Problem& problem, const ilp::SolverOptions& options) {
  const cost::Instance& instance = problem.instance;
  std::vector<std::string> reasons;

  bool budgeted = false;
  for (const cost::Workload& workload : instance.workloads)
    budgeted = budgeted || std::isfinite(workload.accuracy_budget);
  Relaxation keep;
  if (budgeted) {
    keep.accuracy_budgets = false;
    if (detail::solve_variant(problem, keep, {}, options)) {
      std::string least_errors;
      for (std::size_t m = 0; m < instance.workloads.size(); ++m) {
        const cost::Workload& workload = instance.workloads[m];
        if (!std::isfinite(workload.accuracy_budget)) continue;
        const auto least = detail::solve_variant(problem, keep, {Goal::Kind::error, m}, options);
        if (!least) continue;
        least_errors += fmt::format("{}{}: {:.6g} (budget {:.6g})", least_errors.empty() ? "" : ", ",
                                    workload.costs.name, least->objective, workload.accuracy_budget);
        if (least->objective > workload.accuracy_budget * (1.0 + cost::feasibility_tolerance)) {
          reasons.push_back(
              fmt::format("{}: the accuracy budget {:.6g} is below the least error a plan that fits the "
                          "servers' memory can reach, {:.6g}",
                          workload.costs.name, workload.accuracy_budget, least->objective));
        }
      }
      if (reasons.empty()) {
        reasons.push_back(
            fmt::format("the accuracy budgets cannot all be met at once on the shared servers, although "
                        "each can alone (least errors: {})",
                        least_errors));
      }
      return reasons;
    }
    keep.accuracy_budgets = true;
  }

  if (problem.options.max_servers) {
    keep.max_servers = false;
    if (detail::solve_variant(problem, keep, {}, options)) {
      const auto fewest = detail::solve_variant(problem, keep, {Goal::Kind::servers}, options);
      const std::size_t limit = *problem.options.max_servers;
      reasons.push_back(fmt::format(
          "at most {} {} may be used, but every plan needs at least {}", limit, limit == 1 ? "server" : "servers",
          fewest ? fmt::format("{:.0f}", std::round(fewest->objective)) : std::string("more")));
      return reasons;
    }
    keep.max_servers = true;
  }
  if (problem.options.contiguous) {
    keep.contiguous = false;
    if (detail::solve_variant(problem, keep, {}, options)) {
      reasons.push_back("no plan keeps each server's stages in one contiguous range; plans that split them exist");
      return reasons;
    }
    keep.contiguous = true;
  }

  keep.memory = false;
  if (detail::solve_variant(problem, keep, {}, options)) {
    reasons.push_back(
        fmt::format("the stages of {} cannot be divided among the servers without exceeding the memory of "
                    "one of them (in the formats the accuracy budget and the options allow)",
                    detail::model_names(instance)));
    return reasons;
  }
  const Relaxation links_only{false, false, false, false};
  if (detail::solve_variant(problem, links_only, {}, options)) {
    reasons.push_back(
        "the memory, the accuracy budget and the options leave no plan together, although each can be "
        "met alone");
  } else {
    reasons.push_back(
        fmt::format("no chain of links joins servers able to hold consecutive stages of {} from {} and "
                    "back",
                    detail::model_names(instance), instance.cluster.user_label()));
  }
  return reasons;
}

}  // namespace dilemma::plan
