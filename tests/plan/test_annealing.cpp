// Annealing: its fast scorer against plan::evaluate, the reference, and its
// plans against greedy's and the exact optimum.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dilemma/plan/annealing.hpp"
#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/brute_force.hpp"
#include "dilemma/plan/solve.hpp"
#include "plan_test_support.hpp"
#include "random_instances.hpp"

using namespace dilemma;

namespace {

// Small enough to enumerate (as test_ilp_vs_brute_force.cpp draws them).
testing::RandomShape annealing_shape(std::uint64_t seed) {
  testing::RandomShape shape;
  shape.servers = 2 + seed % 3;
  shape.stages = shape.servers == 4 ? 3 : 4 + seed % 2;
  if (seed % 5 == 0) {
    shape.models = 2;
    shape.servers = 2;
    shape.stages = 3;
  }
  return shape;
}

}  // namespace

TEST_CASE("annealing scores an assignment as plan::evaluate does: objective and feasibility") {
  int compared = 0, feasible = 0, infeasible = 0;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    CAPTURE(seed);
    const plan::Problem problem = testing::random_problem(seed, annealing_shape(seed));
    const plan::CandidateSet candidates = plan::candidate_set(problem);
    if (!candidates.empty_reasons.empty()) continue;
    plan::detail::AssignmentScorer scorer(problem, candidates.placements);
    testing::Random random(seed);
    for (int draw = 0; draw < 50; ++draw) {
      plan::detail::CandidateChoice choice(scorer.models());
      std::vector<cost::Assignment> assignments(scorer.models());
      for (std::size_t m = 0; m < scorer.models(); ++m) {
        for (std::size_t s = 0; s < scorer.stages(m); ++s) {
          const auto c = static_cast<std::uint32_t>(random.index(scorer.candidates(m, s)));
          choice[m].push_back(c);
          assignments[m].push_back(scorer.placement(m, s, c));
        }
      }
      const plan::detail::Score score = scorer.score(choice);
      const cost::Evaluation reference = plan::evaluate(problem, assignments);
      CHECK(score.feasible() == reference.feasible());
      if (std::isfinite(reference.objective)) {
        CHECK(testing::relative_difference(score.objective, reference.objective) <= 1e-12);
      }
      ++compared;
      ++(reference.feasible() ? feasible : infeasible);
    }
  }
  MESSAGE(compared << " assignments: " << feasible << " feasible, " << infeasible << " not");
  CHECK(feasible >= compared / 10);
  CHECK(infeasible >= compared / 10);
}

TEST_CASE("annealing keeps greedy's plan or improves it, finds most optima, and repeats itself") {
  int optimal = 0, improved = 0, compared = 0, rescued = 0;
  plan::AnnealingOptions options;
  options.moves_per_stage = 2000;
  for (std::uint64_t seed = 100; seed < static_cast<std::uint64_t>(100 + testing::randomized_instances(90)); ++seed) {
    CAPTURE(seed);
    const plan::Problem problem = testing::random_problem(seed, annealing_shape(seed));
    const plan::Plan exact = plan::brute_force(problem);
    const plan::Plan greedy = plan::greedy(problem);
    const plan::Plan annealed = plan::anneal(problem, options);
    CHECK(annealed.method == "annealing");
    if (!exact.has_plan()) {
      CHECK_FALSE(annealed.has_plan());
      CHECK(annealed.status == plan::Status::no_plan);
      continue;
    }
    if (greedy.has_plan()) {
      REQUIRE(annealed.has_plan());
      CHECK(annealed.objective() <= greedy.objective());
      improved += annealed.objective() < greedy.objective() * (1 - 1e-12);
    } else {
      rescued += annealed.has_plan();
    }
    if (!annealed.has_plan()) continue;
    CHECK(annealed.status == plan::Status::feasible);
    CHECK(annealed.evaluation.feasible());
    CHECK(annealed.objective() >= exact.objective() * (1 - 1e-12));
    optimal += testing::relative_difference(annealed.objective(), exact.objective()) <= 1e-9;
    ++compared;
    const plan::Plan again = plan::anneal(problem, options);
    CHECK(again.assignments == annealed.assignments);
  }
  MESSAGE(compared << " annealed plans: " << optimal << " optimal, " << improved << " better than greedy's, " << rescued
                   << " where greedy found none");
  CHECK(optimal >= compared * 3 / 4);
  CHECK(improved >= compared / 6);
}

TEST_CASE("annealing starts from any assignment, even one that breaks the constraints") {
  const plan::Problem problem = testing::opt_350m_city_problem(0.3);
  const plan::Plan greedy = plan::greedy(problem);
  REQUIRE(greedy.has_plan());
  // Everything on the first server in float32: far more than its memory.
  std::vector<cost::Assignment> start(1);
  start[0].assign(greedy.assignments[0].size(), {0, quant::Format::f32});
  REQUIRE_FALSE(plan::evaluate(problem, start).feasible());
  const plan::Plan annealed = plan::anneal(problem, start);
  REQUIRE(annealed.has_plan());
  CHECK(annealed.evaluation.feasible());
  CHECK(annealed.objective() <= greedy.objective());
}

TEST_CASE("a start of the wrong shape is an error that says so") {
  const plan::Problem problem = testing::opt_350m_city_problem(0.3);
  std::vector<cost::Assignment> two_models(2);
  CHECK_THROWS_WITH_AS(plan::anneal(problem, two_models), "anneal: a start of 2 assignments for 1 models", Error);
  std::vector<cost::Assignment> short_start(1, cost::Assignment(3));
  CHECK_THROWS_WITH_AS(plan::anneal(problem, short_start),
                       "anneal: the start of model \"opt-350m\" has 3 stages, the model has 26", Error);
}
