// The ILP against exhaustive enumeration on seeded random instances of every
// kind: infeasible ones, throughput objectives, several models, options and
// budgets that bind.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "dilemma/plan/brute_force.hpp"
#include "dilemma/plan/solve.hpp"
#include "plan_test_support.hpp"
#include "random_instances.hpp"

using namespace dilemma;

namespace {

struct Tally {
  int feasible = 0, infeasible = 0, throughput = 0, multi_model = 0;
};

// The ILP's plan, checked against exhaustive enumeration; nullopt where
// neither finds a plan.
std::optional<plan::Plan> solve_and_compare(const plan::Problem& problem, Tally& tally) {
  plan::Plan ilp = plan::solve(problem);
  const plan::Plan exact = plan::brute_force(problem);
  REQUIRE(ilp.has_plan() == exact.has_plan());
  if (!exact.has_plan()) {
    CHECK(ilp.status == plan::Status::infeasible);
    CHECK_FALSE(ilp.reasons.empty());
    ++tally.infeasible;
    return std::nullopt;
  }
  ++tally.feasible;
  CHECK(ilp.status == plan::Status::optimal);
  CHECK(testing::relative_difference(ilp.objective(), exact.objective()) <= 1e-9);
  // The plan's objective is cost::evaluate's; the solver's own agrees up to its tolerances.
  CHECK(testing::relative_difference(*ilp.solver.objective, ilp.objective()) <= 1e-6);
  CHECK(testing::relative_difference(*exact.solver.objective, exact.objective()) <= 1e-12);
  CHECK(*ilp.solver.root_bound <= ilp.objective() * (1 + 1e-9));
  tally.throughput += problem.instance.objective == cost::Objective::throughput;
  tally.multi_model += problem.instance.workloads.size() > 1;
  return ilp;
}

}  // namespace

TEST_CASE("the ILP optimum equals the brute-force optimum on seeded random instances") {
  Tally tally;
  int with_options = 0, tight = 0;
  const int instances = testing::randomized_instances(240);
  for (std::uint64_t seed = 1; seed <= static_cast<std::uint64_t>(instances); ++seed) {
    testing::RandomShape shape;
    shape.servers = 2 + seed % 3;                          // 2, 3, 4
    shape.stages = shape.servers == 4 ? 3 : 4 + seed % 2;  // keeps (servers·formats)^stages enumerable
    if (seed % 7 == 0) {
      shape.models = 2;
      shape.servers = 2;
      shape.stages = 3;
    }
    const plan::Problem problem = testing::random_problem(seed, shape);
    CAPTURE(seed);
    const std::optional<plan::Plan> ilp = solve_and_compare(problem, tally);
    if (!ilp) continue;
    with_options += problem.options.contiguous || problem.options.max_servers || !problem.options.pins.empty();
    for (const auto& evaluation : ilp->evaluation.models) {
      const double budget = problem.instance.workloads[&evaluation - ilp->evaluation.models.data()].accuracy_budget;
      tight += std::isfinite(budget) && evaluation.error > 0.5 * budget;
    }
  }
  MESSAGE(tally.feasible << " feasible, " << tally.infeasible << " infeasible, " << tally.throughput << " throughput, "
                         << tally.multi_model << " multi-model, " << with_options << " with options, " << tight
                         << " with a binding-ish budget");
  // Every kind of instance is well represented (240 in release builds, 80 sanitized).
  CHECK(tally.feasible + tally.infeasible == instances);
  CHECK(tally.feasible >= instances * 5 / 12);
  CHECK(tally.infeasible >= instances / 12);
  CHECK(tally.throughput >= instances / 12);
  CHECK(tally.multi_model >= instances / 24);
  CHECK(with_options >= instances / 6);
  CHECK(tight >= instances / 8);
}

// Models whose decoder layers are identical are written with layer counts and
// a walk over the servers (plan::LayerCounts) instead of one x per layer.
TEST_CASE("the layer-count formulation's optimum equals the brute-force optimum") {
  Tally tally;
  int counted = 0, revisits = 0;
  const int instances = testing::randomized_instances(200);
  for (std::uint64_t seed = 1001; seed < 1001 + static_cast<std::uint64_t>(instances); ++seed) {
    testing::RandomShape shape;
    shape.identical_layers = true;
    shape.servers = 2 + seed % 2;  // 2, 3
    shape.stages = 5 + seed % 2;   // 3 or 4 layers
    if (seed % 6 == 0) {
      shape.models = 2;
      shape.servers = 2;
      shape.stages = 4;
    }
    const plan::Problem problem = testing::random_problem(seed, shape);
    CAPTURE(seed);
    const plan::CandidateSet candidates = plan::candidate_set(problem);
    bool any_counted = false;
    for (std::size_t m = 0; m < problem.instance.workloads.size() && candidates.empty_reasons.empty(); ++m) {
      any_counted |= plan::detail::interchangeable_layers(problem.instance.workloads[m].costs,
                                                          candidates.placements[m]);
    }
    counted += any_counted;
    const std::optional<plan::Plan> ilp = solve_and_compare(problem, tally);
    if (!ilp) continue;
    for (const cost::Assignment& assignment : ilp->assignments) {
      revisits += testing::revisits_a_server(assignment, problem.instance.cluster.servers.size());
    }
  }
  MESSAGE(counted << " counted, " << tally.feasible << " feasible, " << tally.infeasible << " infeasible, "
                  << tally.throughput << " throughput, " << tally.multi_model << " multi-model, " << revisits
                  << " plans revisiting a server");
  CHECK(counted >= instances * 3 / 4);
  CHECK(tally.feasible >= instances / 3);
  CHECK(tally.infeasible >= instances / 12);
  CHECK(tally.throughput >= instances / 12);
  CHECK(tally.multi_model >= instances / 24);
  CHECK(revisits >= 1);
}
