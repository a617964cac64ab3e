#pragma once
// Plans and the integer program's variables, both ways: reading CBC's
// solution of plan/formulation.hpp's program as one placement per stage (a
// counted model's layers by their walk over the servers), and writing a plan
// as the program's integer variables, for CBC to start from.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/error.hpp"
#include "dilemma/ilp/cbc_solver.hpp"
#include "dilemma/ilp/model.hpp"
#include "dilemma/plan/formulation.hpp"

namespace dilemma::plan {

namespace detail {

inline long long rounded(const ilp::Solution& solution, ilp::Variable variable) {
  return std::llround(solution.value(variable));
}

// A counted model's layers in chain order: its walk over the servers, found
// by Hierholzer's algorithm from the first run's server, gives the runs; each
// run takes one of its server's layers, the server's first run the rest, and
// each server hands out its formats in the order of its counts.
inline std::vector<cost::Placement> layers_in_order(const LayerCounts& counted, const ilp::Solution& solution,
                                                    std::size_t m) {
  auto broken = [&](std::string_view what) {
    dilemma::detail::fail("plan: the solver's solution does not chain model {}'s layers: {}", m, what);
  };
  std::size_t servers = 0;
  for (const auto& [placement, count] : counted.counts) servers = std::max(servers, placement.server + 1);
  std::optional<std::size_t> start, finish;
  for (const auto& arc : counted.enter) {
    if (rounded(solution, arc.variable) == 1) start = arc.to;
  }
  for (const auto& arc : counted.leave) {
    if (rounded(solution, arc.variable) == 1) finish = arc.from;
  }
  if (!start || !finish) broken("no first or no last run");
  std::vector<std::vector<std::size_t>> successors(servers);
  std::size_t hops = 0;
  for (const auto& arc : counted.hops) {
    const long long times = rounded(solution, arc.variable);
    for (long long t = 0; t < times; ++t) successors[arc.from].push_back(arc.to);
    hops += static_cast<std::size_t>(std::max(times, 0LL));
  }
  std::vector<std::size_t> walk, stack{*start};
  while (!stack.empty()) {
    std::vector<std::size_t>& next = successors[stack.back()];
    if (next.empty()) {
      walk.push_back(stack.back());
      stack.pop_back();
    } else {
      stack.push_back(next.back());
      next.pop_back();
    }
  }
  std::reverse(walk.begin(), walk.end());
  if (walk.size() != hops + 1 || walk.back() != *finish) broken("its runs do not form one walk");

  std::vector<std::vector<quant::Format>> formats(servers);
  for (const auto& [placement, count] : counted.counts) {
    formats[placement.server].insert(formats[placement.server].end(),
                                     static_cast<std::size_t>(std::max(rounded(solution, count), 0LL)),
                                     placement.format);
  }
  std::vector<std::size_t> visits(servers, 0);
  for (std::size_t j : walk) ++visits[j];
  std::vector<cost::Placement> layers;
  std::vector<bool> visited(servers, false);
  for (std::size_t j : walk) {
    if (!visited[j] && formats[j].size() < visits[j]) broken("a run without layers");
    const std::size_t take = visited[j] ? 1 : formats[j].size() - (visits[j] - 1);
    visited[j] = true;
    for (std::size_t t = 0; t < take; ++t) {
      layers.push_back({j, formats[j].back()});
      formats[j].pop_back();
    }
  }
  if (layers.size() != counted.layers) broken("layers outside the chain");
  return layers;
}

}  // namespace detail

// A plan as a start for CBC: the nonzero integer variables of its solution.
// Only for programs whose every model is counted (the per-stage program's
// runs are not kept); nullopt otherwise, or if the plan uses a placement the
// program does not have.
inline std::optional<std::vector<std::pair<ilp::Variable, double>>> start_values(
    const Formulation& formulation, const std::vector<cost::Assignment>& plan) {
  auto placement_variable = [](const StageVariables& list,
                               const cost::Placement& placement) -> std::optional<ilp::Variable> {
    for (const auto& [candidate, variable] : list) {
      if (candidate == placement) return variable;
    }
    return std::nullopt;
  };
  auto arc_variable = [](const std::vector<LayerCounts::Arc>& arcs, std::size_t from,
                         std::size_t to) -> std::optional<ilp::Variable> {
    for (const auto& arc : arcs) {
      if (arc.from == from && arc.to == to) return arc.variable;
    }
    return std::nullopt;
  };
  std::map<std::size_t, double> values;  // by variable index, so that repeats add up
  std::vector<bool> busy(formulation.used.size(), false);
  for (std::size_t m = 0; m < plan.size(); ++m) {
    if (!formulation.layer_counts[m] || plan[m].size() != formulation.x[m].size()) return std::nullopt;
    const LayerCounts& counted = *formulation.layer_counts[m];
    const cost::Assignment& stages = plan[m];
    std::vector<std::optional<ilp::Variable>> ones;
    const std::size_t head = stages.size() - 1;
    ones.push_back(placement_variable(formulation.x[m][0], stages[0]));
    ones.push_back(placement_variable(formulation.x[m][head], stages[head]));
    ones.push_back(arc_variable(counted.enter, stages[0].server, stages[1].server));
    ones.push_back(arc_variable(counted.leave, stages[head - 1].server, stages[head].server));
    for (std::size_t s = 1; s < head; ++s) {
      ones.push_back(placement_variable(counted.counts, stages[s]));
      if (s + 1 < head && stages[s].server != stages[s + 1].server) {
        ones.push_back(arc_variable(counted.hops, stages[s].server, stages[s + 1].server));
      }
    }
    for (const auto& variable : ones) {
      if (!variable) return std::nullopt;
      values[variable->index] += 1.0;
    }
    for (const cost::Placement& placement : stages) busy.at(placement.server) = true;
  }
  for (std::size_t j = 0; j < busy.size(); ++j) {
    if (busy[j] && formulation.used[j]) values[formulation.used[j]->index] = 1.0;
  }
  std::vector<std::pair<ilp::Variable, double>> start;
  for (const auto& [index, value] : values) start.emplace_back(ilp::Variable{index}, value);
  return start;
}

// The placement each stage takes in a solution (the x closest to 1).
inline std::vector<cost::Assignment> assignments(const Formulation& formulation, const ilp::Solution& solution) {
  std::vector<cost::Assignment> result(formulation.x.size());
  for (std::size_t m = 0; m < formulation.x.size(); ++m) {
    const std::optional<LayerCounts>& counted = formulation.layer_counts[m];
    for (std::size_t s = 0; s < formulation.x[m].size(); ++s) {
      if (counted && s > 0 && s + 1 < formulation.x[m].size()) {
        if (s == 1) {
          const std::vector<cost::Placement> layers = detail::layers_in_order(*counted, solution, m);
          result[m].insert(result[m].end(), layers.begin(), layers.end());
        }
        continue;
      }
      const std::pair<cost::Placement, ilp::Variable>* chosen = nullptr;
      for (const auto& candidate : formulation.x[m][s]) {
        if (!chosen || solution.value(candidate.second) > solution.value(chosen->second)) chosen = &candidate;
      }
      if (!chosen || solution.value(chosen->second) < 0.5) {
        dilemma::detail::fail("plan: the solver's solution places model {} stage {} nowhere", m, s);
      }
      result[m].push_back(chosen->first);
    }
  }
  return result;
}

}  // namespace dilemma::plan
