#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>

#include "dilemma/plan/solve.hpp"
#include "random_instances.hpp"
#include "test_support.hpp"

using namespace dilemma;

namespace {

testing::RandomShape property_shape(std::uint64_t seed) {
  testing::RandomShape shape;
  shape.servers = 3 + seed % 2;
  shape.stages = 5 + seed % 3;
  shape.options = seed % 3 == 0;
  return shape;
}

}  // namespace

TEST_CASE("a looser accuracy budget never gives a slower plan" *
          doctest::skip(testing::cbc_search_heavy)) {
  int compared = 0, improved = 0;
  for (std::uint64_t seed = 1000; seed < 1016; ++seed) {
    plan::Problem problem = testing::random_problem(seed, property_shape(seed));
    double worst = 0.0;
    for (const auto& stage : problem.instance.workloads[0].costs.stages) worst += stage.formats[3]->error;
    std::optional<double> previous;
    for (double fraction : {0.0, 0.05, 0.15, 0.4, 1.0}) {
      CAPTURE(seed);
      CAPTURE(fraction);
      problem.instance.workloads[0].accuracy_budget = fraction * worst;
      const plan::Plan plan = plan::solve(problem);
      if (previous) {
        REQUIRE(plan.has_plan());  // a plan that met a tighter budget meets this one
        CHECK(plan.objective() <= *previous * (1 + 1e-9));
        ++compared;
        improved += plan.objective() < *previous * (1 - 1e-6);
      }
      if (plan.has_plan()) previous = plan.objective();
    }
  }
  MESSAGE(compared << " comparisons, " << improved << " strict improvements");
  CHECK(compared >= 36);
  CHECK(improved >= 20);
}

TEST_CASE("more memory never gives a slower plan" *
          doctest::skip(testing::cbc_search_heavy)) {
  int compared = 0, improved = 0;
  for (std::uint64_t seed = 2000; seed < 2016; ++seed) {
    plan::Problem problem = testing::random_problem(seed, property_shape(seed));
    std::optional<double> previous;
    for (int round = 0; round < 4; ++round) {
      CAPTURE(seed);
      CAPTURE(round);
      const plan::Plan plan = plan::solve(problem);
      if (previous) {
        REQUIRE(plan.has_plan());
        CHECK(plan.objective() <= *previous * (1 + 1e-9));
        ++compared;
        improved += plan.objective() < *previous * (1 - 1e-6);
      }
      if (plan.has_plan()) previous = plan.objective();
      // Grow one server at a time, then all of them.
      auto& servers = problem.instance.cluster.servers;
      if (round < 2) {
        servers[static_cast<std::size_t>(round) % servers.size()].memory_bytes *= 1.7;
      } else {
        for (auto& server : servers) server.memory_bytes *= 1.5;
      }
    }
  }
  MESSAGE(compared << " comparisons, " << improved << " strict improvements");
  CHECK(compared >= 40);
  CHECK(improved >= 4);
}

TEST_CASE("each objective's plan is the best of the two on its own measure" *
          doctest::skip(testing::cbc_search_heavy)) {
  for (std::uint64_t seed = 3000; seed < 3010; ++seed) {
    CAPTURE(seed);
    plan::Problem problem = testing::random_problem(seed, property_shape(seed));
    problem.instance.objective = cost::Objective::latency;
    const plan::Plan fastest = plan::solve(problem);
    problem.instance.objective = cost::Objective::throughput;
    const plan::Plan busiest = plan::solve(problem);
    REQUIRE(fastest.has_plan() == busiest.has_plan());
    if (!fastest.has_plan()) continue;
    CHECK(fastest.evaluation.weighted_completion_seconds <=
          busiest.evaluation.weighted_completion_seconds * (1 + 1e-9));
    CHECK(busiest.evaluation.bottleneck_seconds <= fastest.evaluation.bottleneck_seconds * (1 + 1e-9));
  }
}
