// The layer-count program (plan::LayerCounts) against cost::evaluate, plan by
// plan: every assignment, fixed in the program through start_values, is a
// solution exactly when it is feasible, with its own objective, and reads
// back as a plan with that objective.

#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "dilemma/ilp/cbc_solver.hpp"
#include "dilemma/plan/formulation.hpp"
#include "dilemma/plan/problem.hpp"
#include "dilemma/plan/program_values.hpp"
#include "plan_test_support.hpp"
#include "random_instances.hpp"

using namespace dilemma;

namespace {

// The program with every integer variable fixed to the plan's value.
ilp::Model fixed_to(const plan::Formulation& formulation, const std::vector<std::pair<ilp::Variable, double>>& start) {
  ilp::Model model = formulation.model;
  std::map<std::size_t, double> values;
  for (const auto& [variable, value] : start) values[variable.index] = value;
  for (std::size_t index = 0; index < model.variables().size(); ++index) {
    if (model.variables()[index].kind != ilp::VariableKind::integer) continue;
    const auto value = values.find(index);
    model.add_constraint("fixed", ilp::Variable{index}, ilp::Sense::equal, value == values.end() ? 0.0 : value->second);
  }
  return model;
}

}  // namespace

TEST_CASE("every assignment solves the layer-count program exactly when it is feasible, at its own objective") {
  int counted = 0, feasible = 0, infeasible = 0, revisits = 0;
  const int instances = testing::randomized_instances(60);
  for (std::uint64_t seed = 2001; seed <= 2000 + static_cast<std::uint64_t>(instances); ++seed) {
    testing::RandomShape shape;
    shape.identical_layers = true;
    shape.servers = 2 + seed % 3;
    shape.stages = 5 + seed % 3;
    if (seed % 5 == 0) shape.models = 2;
    CAPTURE(seed);
    const plan::Problem problem = testing::random_problem(seed, shape);
    const plan::CandidateSet candidates = plan::candidate_set(problem);
    if (!candidates.empty_reasons.empty()) continue;
    const plan::Formulation formulation = plan::formulate(problem, candidates.placements);
    bool all_counted = true;
    for (const auto& counts : formulation.layer_counts) all_counted &= counts.has_value();
    if (!all_counted) continue;
    ++counted;
    testing::Random random(seed);
    for (int draw = 0; draw < 30; ++draw) {
      std::vector<cost::Assignment> assignments(candidates.placements.size());
      for (std::size_t m = 0; m < assignments.size(); ++m) {
        for (const auto& placements : candidates.placements[m]) {
          assignments[m].push_back(placements[random.index(placements.size())]);
        }
      }
      const cost::Evaluation reference = plan::evaluate(problem, assignments);
      const auto start = plan::start_values(formulation, assignments);
      if (!start) {  // a transfer over a missing link
        CHECK_FALSE(reference.feasible());
        ++infeasible;
        continue;
      }
      const ilp::Solution solution = ilp::solve(fixed_to(formulation, *start), {});
      if (!reference.feasible()) {
        CHECK(solution.status == ilp::Status::infeasible);
        ++infeasible;
        continue;
      }
      ++feasible;
      REQUIRE(solution.status == ilp::Status::optimal);
      CHECK(testing::relative_difference(solution.objective * formulation.objective_unit, reference.objective) <=
            1e-6);
      const std::vector<cost::Assignment> read_back = plan::assignments(formulation, solution);
      CHECK(testing::relative_difference(plan::evaluate(problem, read_back).objective, reference.objective) <= 1e-9);
      for (const cost::Assignment& assignment : assignments) {
        revisits += testing::revisits_a_server(assignment, problem.instance.cluster.servers.size());
      }
    }
  }
  MESSAGE(counted << " counted problems, " << feasible << " feasible and " << infeasible
                  << " infeasible assignments, " << revisits << " feasible plans with a server visited twice");
  // 60 problems in release builds, 20 sanitized.
  CHECK(counted >= instances * 2 / 3);
  CHECK(feasible >= instances * 3);
  CHECK(infeasible >= instances * 8);
  CHECK(revisits >= instances * 2);
}

TEST_CASE("a model whose layers differ keeps the per-stage program") {
  testing::RandomShape shape;
  shape.identical_layers = true;
  shape.options = false;
  int checked = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    plan::Problem problem = testing::random_problem(seed, shape);
    plan::CandidateSet candidates = plan::candidate_set(problem);
    if (!candidates.empty_reasons.empty() || candidates.placements[0][2].size() < 2) continue;
    CHECK(plan::formulate(problem, candidates.placements).layer_counts[0].has_value());
    // A pin on one layer makes it differ from the others.
    const cost::Placement pinned = candidates.placements[0][2].front();
    problem.options.pins.push_back(
        {"", "layer.1", problem.instance.cluster.servers[pinned.server].name, pinned.format});
    candidates = plan::candidate_set(problem);
    REQUIRE(candidates.empty_reasons.empty());
    CHECK_FALSE(plan::formulate(problem, candidates.placements).layer_counts[0].has_value());
    ++checked;
  }
  CHECK(checked >= 5);
}
