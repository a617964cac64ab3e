#pragma once
// DILEMMA: the optimal joint placement and quantization of every stage, by
// solving the integer program of plan/formulation.hpp with CBC.

#include <Cbc_C_Interface.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/ilp/cbc_solver.hpp"
#include "dilemma/plan/feasibility.hpp"
#include "dilemma/plan/formulation.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/plan/problem.hpp"

namespace dilemma::plan {

inline Plan solve(const Problem& problem, const ilp::SolverOptions& options = {}) {
  problem.validate();
  SolverReport report;
  report.solver = fmt::format("cbc {}", Cbc_getVersion());
  const CandidateSet candidates = candidate_set(problem);
  if (auto reasons = precheck(problem, candidates); !reasons.empty()) {
    report.status = "not run: infeasible before solving";
    return no_plan("dilemma", Status::infeasible, problem, std::move(reasons), report);
  }

  const Formulation formulation = formulate(problem, candidates.placements);
  const ilp::Solution solution = ilp::solve(formulation.model, options);
  const double unit = formulation.objective_unit;
  report.status = std::string(ilp::status_name(solution.status));
  report.seconds = solution.root_seconds + solution.solve_seconds;
  report.nodes = solution.nodes;
  report.variables = static_cast<std::int64_t>(formulation.model.variables().size());
  report.constraints = static_cast<std::int64_t>(formulation.model.constraints().size());
  if (solution.has_solution()) report.objective = solution.objective * unit;
  if (!std::isnan(solution.best_bound)) report.best_bound = solution.best_bound * unit;
  if (!std::isnan(solution.gap)) report.gap = solution.gap;
  if (solution.root_bound) report.root_bound = *solution.root_bound * unit;

  switch (solution.status) {
    case ilp::Status::optimal:
      return make_plan("dilemma", Status::optimal, problem, assignments(formulation, solution), report);
    case ilp::Status::feasible:
      return make_plan("dilemma", Status::feasible, problem, assignments(formulation, solution), report);
    case ilp::Status::infeasible:
      return no_plan("dilemma", Status::infeasible, problem, diagnose(problem, options), report);
    case ilp::Status::no_solution:
      return no_plan(
          "dilemma", Status::no_plan, problem,
          {fmt::format("the time limit of {} s ran out before any plan was found", options.time_limit_seconds)},
          report);
    case ilp::Status::unbounded:
      break;
  }
  dilemma::detail::fail("plan: CBC reports the planning problem unbounded, which nonnegative costs rule out");
}

}  // namespace dilemma::plan
