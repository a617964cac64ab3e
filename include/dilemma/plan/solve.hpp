#pragma once
// DILEMMA: the optimal joint placement and quantization of every stage, by
// solving the integer program of plan/formulation.hpp with CBC.

#include <Cbc_C_Interface.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/ilp/cbc_solver.hpp"
#include "dilemma/plan/annealing.hpp"
#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/feasibility.hpp"
#include "dilemma/plan/formulation.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/plan/program_values.hpp"
#include "dilemma/plan/problem.hpp"

namespace dilemma::plan {

inline Plan solve(const Problem& problem, const ilp::SolverOptions& options = {},
                  const AnnealingOptions& annealing = {}) {
  problem.validate();
  SolverReport report;
  report.solver = fmt::format("cbc {}", Cbc_getVersion());
  const CandidateSet candidates = candidate_set(problem);
  if (auto reasons = precheck(problem, candidates); !reasons.empty()) {
    report.status = "not run: infeasible before solving";
    return no_plan("dilemma", Status::infeasible, problem, std::move(reasons), report);
  }

  const Formulation formulation = formulate(problem, candidates.placements);
  // On the per-stage program CBC's default preprocessing (it looks for SOS
  // rows) and cut rounds at every node cost more than they save: with cuts at
  // the root only and no preprocessing, bench_planner's OPT-350m instances
  // solved in half the time. For latency, the feasibility pump spent 3 of
  // opt-350m-5's 7 s at the root for a plan 1.6 % above the optimum, which the
  // search finds anyway; without it 10 of 11 latency instances solved faster or
  // ended with a better plan. Throughput's min-max objective needs the pump's
  // incumbent (opt-350m-3: 2.6 s with it, 16 s without). The program with
  // layer counts (formulation.hpp's LayerCounts) gains nothing from turning
  // any of these back on; its nodes are cheap, and for latency CBC's default
  // of 100 rounds of cuts at the root took most of the time: 10 rounds cut the
  // median of 12 seeded 10-server OPT-350m instances from 1.50 to 0.54 s.
  // docs/performance.md has the numbers. The caller's parameters come after
  // these and override them.
  std::vector<std::pair<std::string, std::string>> defaults = {{"preprocess", "off"}, {"cuts", "root"}};
  const bool latency = problem.instance.objective == cost::Objective::latency;
  if (latency) defaults.emplace_back("feasibilityPump", "off");
  const bool counted =
      std::ranges::any_of(formulation.layer_counts, [](const auto& counts) { return counts.has_value(); });
  if (latency && counted) defaults.emplace_back("passCuts", "10");
  ilp::SolverOptions tuned = options;
  tuned.parameters.insert(tuned.parameters.begin(), defaults.begin(), defaults.end());
  // Under throughput, CBC's own first plans are poor: with layer counts, in 6
  // of the 7 solves of 27 seeded instances that the limit stopped, annealing
  // found a better plan than CBC's. So annealing runs first and its plan is
  // CBC's start: of 8 seeded 10-server instances 7 were then proven within
  // 20 s instead of 5, with a quarter of the nodes (docs/performance.md).
  // Under latency CBC finds good plans itself, and on the per-stage program a
  // start slowed the proof (below).
  std::optional<Plan> annealed;
  if (!latency && counted) {
    annealed = anneal(problem, annealing);
    if (annealed->has_plan()) {
      if (auto start = start_values(formulation, annealed->assignments)) tuned.start = std::move(*start);
    }
  }
  const ilp::Solution solution = ilp::solve(formulation.model, tuned);
  const double unit = formulation.objective_unit;
  report.status = std::string(ilp::status_name(solution.status));
  report.seconds = solution.root_seconds + solution.solve_seconds + (annealed ? annealed->solver.seconds : 0.0);
  report.nodes = solution.nodes;
  report.variables = static_cast<std::int64_t>(formulation.model.variables().size());
  report.constraints = static_cast<std::int64_t>(formulation.model.constraints().size());
  if (solution.has_solution()) report.objective = solution.objective * unit;
  if (!std::isnan(solution.best_bound)) report.best_bound = solution.best_bound * unit;
  if (!std::isnan(solution.gap)) report.gap = solution.gap;
  if (solution.root_bound) report.root_bound = *solution.root_bound * unit;

  // When the time limit stops CBC before it proves a plan optimal, annealing
  // (plan/annealing.hpp) from greedy's plan and from CBC's incumbent may find
  // a better plan: on bench_planner's largest instances CBC finds none in
  // 30 s and annealing finds, in half a second, plans better than CBC's after
  // a minute. Both starts, because each can end in a local optimum the other
  // avoids (OPT-350m on the smart city at 4x speed: greedy's plan, annealed or
  // not, is 1.5 % faster than CBC's after 60 s, annealed or not). The best
  // plan is returned, still as `feasible`, with the gap to CBC's proven bound.
  // Under latency annealing is not given to CBC as a first incumbent: that
  // made opt-350m-5 3.6x slower to prove on the per-stage program
  // (docs/performance.md, "Annealing").
  auto best_known = [&](std::optional<std::vector<cost::Assignment>> incumbent) -> Plan {
    Plan heuristic = annealed ? *annealed : anneal(problem, annealing);
    if (!annealed) report.seconds += heuristic.solver.seconds;
    if (incumbent) {
      Plan from_incumbent = anneal(problem, *incumbent, annealing);
      report.seconds += from_incumbent.solver.seconds;
      if (from_incumbent.has_plan() && (!heuristic.has_plan() || from_incumbent.objective() < heuristic.objective())) {
        heuristic = std::move(from_incumbent);
      }
    }
    const bool heuristic_wins =
        heuristic.has_plan() &&
        (!incumbent || heuristic.objective() < evaluate(problem, *incumbent).objective * (1 - 1e-12));
    if (!heuristic_wins && !incumbent) {
      return no_plan(
          "dilemma", Status::no_plan, problem,
          {fmt::format("the time limit of {} s ran out before CBC found a plan, and annealing found none either",
                       options.time_limit_seconds)},
          report);
    }
    if (heuristic_wins) {
      report.status +=
          incumbent ? "; annealing found a better plan than CBC's" : "; annealing found the plan, CBC none";
      report.objective = heuristic.objective();
      if (report.best_bound) report.gap = (heuristic.objective() - *report.best_bound) / heuristic.objective();
      return make_plan("dilemma", Status::feasible, problem, std::move(heuristic.assignments), report);
    }
    return make_plan("dilemma", Status::feasible, problem, std::move(*incumbent), report);
  };
  switch (solution.status) {
    case ilp::Status::optimal:
      return make_plan("dilemma", Status::optimal, problem, assignments(formulation, solution), report);
    case ilp::Status::feasible:
      return best_known(assignments(formulation, solution));
    case ilp::Status::infeasible:
      return no_plan("dilemma", Status::infeasible, problem, diagnose(problem, options), report);
    case ilp::Status::no_solution:
      return best_known(std::nullopt);
    case ilp::Status::unbounded:
      break;
  }
  dilemma::detail::fail("plan: CBC reports the planning problem unbounded, which nonnegative costs rule out");
}

}  // namespace dilemma::plan
