#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/brute_force.hpp"
#include "dilemma/plan/solve.hpp"
#include "plan_test_support.hpp"
#include "random_instances.hpp"

using namespace dilemma;
using quant::Format;

namespace {

testing::RandomShape baseline_shape(std::uint64_t seed) {
  testing::RandomShape shape;
  shape.servers = 2 + seed % 3;
  shape.stages = 4 + seed % 3;
  shape.options = seed % 2 == 0;
  return shape;
}

}  // namespace

TEST_CASE("the uniform-format dynamic program is optimal among contiguous placements in that format") {
  int matched = 0, none = 0;
  for (std::uint64_t seed = 4000; seed < 4060; ++seed) {
    const plan::Problem problem = testing::random_problem(seed, baseline_shape(seed));
    for (Format format : {Format::f32, Format::int8, Format::int4}) {
      CAPTURE(seed);
      CAPTURE(quant::format_name(format));
      const plan::Plan dp =
          format == Format::f32 ? plan::placement_only(problem) : plan::uniform_format(problem, format);
      if (std::find(problem.options.formats.begin(), problem.options.formats.end(), format) ==
          problem.options.formats.end()) {
        CHECK_FALSE(dp.has_plan());  // the options forbid the format
        continue;
      }
      plan::Problem restricted = problem;
      restricted.options.contiguous = true;
      restricted.options.formats = {format};
      const plan::Plan exact = plan::brute_force(restricted);
      REQUIRE(dp.has_plan() == exact.has_plan());
      if (!dp.has_plan()) {
        ++none;
        continue;
      }
      ++matched;
      CHECK(dp.status == plan::Status::feasible);
      CHECK(testing::relative_difference(dp.objective(), exact.objective()) <= 1e-9);
      CHECK(testing::relative_difference(*dp.solver.objective, dp.objective()) <= 1e-12);
    }
  }
  MESSAGE(matched << " plans matched, " << none << " without a plan");
  CHECK(matched >= 60);
  CHECK(none >= 10);
}

TEST_CASE("single-server, greedy and uniform baselines are valid plans no better than DILEMMA") {
  int single = 0, greedy = 0, single_exact = 0;
  const int instances = testing::randomized_instances(60);
  for (std::uint64_t seed = 5000; seed < 5000 + static_cast<std::uint64_t>(instances); ++seed) {
    CAPTURE(seed);
    const plan::Problem problem = testing::random_problem(seed, baseline_shape(seed));
    const plan::Plan best = plan::solve(problem);
    for (const plan::Plan& baseline :
         {plan::single_server(problem), plan::greedy(problem), plan::uniform_format(problem, Format::int8)}) {
      CAPTURE(baseline.method);
      if (!baseline.has_plan()) {
        CHECK_FALSE(baseline.reasons.empty());
        continue;
      }
      REQUIRE(best.has_plan());
      CHECK(baseline.evaluation.feasible());
      CHECK(best.objective() <= baseline.objective() * (1 + 1e-9));
      single += baseline.method == "single-server-f32";
      greedy += baseline.method == "greedy";
    }
    // The single-server baseline is the best plan on one server in float32.
    plan::Problem one_server = problem;
    one_server.options.max_servers = 1;
    one_server.options.formats = {Format::f32};
    const plan::Plan exact = plan::brute_force(one_server);
    const plan::Plan baseline = plan::single_server(problem);
    REQUIRE(exact.has_plan() == baseline.has_plan());
    if (exact.has_plan()) {
      CHECK(testing::relative_difference(baseline.objective(), exact.objective()) <= 1e-9);
      ++single_exact;
    }
  }
  MESSAGE(single << " single-server plans (" << single_exact << " checked by enumeration), " << greedy
                 << " greedy plans");
  CHECK(single_exact >= instances / 12);
  CHECK(greedy >= instances / 3);
}

// A one-token request feeds nothing back, so a chain from A to B needs no
// link from B to A; with a second token it does. Links: U ↔ A, A → B, B → U.
TEST_CASE("the placement-only DP prices a one-token chain without a link back to its first server") {
  plan::Problem problem;
  edge::Cluster& cluster = problem.instance.cluster;
  cluster.name = "one-way";
  for (const char* name : {"A", "B"}) {
    edge::Server server;
    server.name = name;
    server.memory_bytes = 70;
    cluster.servers.push_back(server);
  }
  cluster.user = {"U", false};
  cluster.links = {{"U", "A", {100, 0.01}, true}, {"A", "B", {1000, 0.001}, false}, {"B", "U", {100, 0.01}, false}};
  cost::ModelCosts costs;
  costs.name = "m";
  costs.source = "hand";
  costs.request = {10, 1, 1};
  costs.activation_bytes = 40;
  costs.token_id_bytes = 4;
  // 95 B with the layer's KV cache: no 70 B server holds it all, and the embedding and the layer need 75 B.
  const double weights[] = {30, 40, 20};
  for (std::size_t s = 0; s < 3; ++s) {
    cost::StageCosts stage;
    stage.name = s == 0 ? "embedding" : s == 1 ? "layer.0" : "head";
    stage.f32_weight_bytes = weights[s];
    stage.kv_cache_bytes = s == 1 ? 5 : 0;
    stage.formats[cost::format_index(Format::f32)] = cost::FormatCosts{weights[s], 0.0};
    stage.times.resize(2);
    for (std::size_t j = 0; j < 2; ++j) stage.times[j][cost::format_index(Format::f32)] = cost::StageTimes{0.1, 0.01};
    costs.stages.push_back(std::move(stage));
  }
  problem.instance.workloads.push_back({costs, std::numeric_limits<double>::infinity(), 1.0});
  problem.instance.objective = cost::Objective::throughput;
  problem.options.formats = {Format::f32};
  problem.validate();

  const plan::Plan one_token = plan::placement_only(problem);
  REQUIRE(one_token.has_plan());
  const cost::Assignment& assignment = one_token.assignments.front();
  CHECK(assignment[0].server == 0);
  CHECK(assignment[1].server == 1);
  CHECK(assignment[2].server == 1);
  CHECK(testing::relative_difference(one_token.objective(), plan::brute_force(problem).objective()) <= 1e-12);

  problem.instance.workloads.front().costs.request.new_tokens = 2;
  CHECK_FALSE(plan::placement_only(problem).has_plan());
  CHECK_FALSE(plan::brute_force(problem).has_plan());
}

TEST_CASE("the DP baseline refuses problems it cannot solve exactly") {
  testing::RandomShape shape;
  shape.models = 2;
  const plan::Problem two_models = testing::random_problem(1, shape);
  CHECK_THROWS_WITH_AS(plan::uniform_format(two_models, Format::int8),
                       "uniform-int8: the dynamic program places one model; the instance has 2", Error);
  shape.models = 1;
  shape.servers = 11;
  const plan::Problem many_servers = testing::random_problem(1, shape);
  CHECK_THROWS_WITH_AS(plan::placement_only(many_servers),
                       "placement-only-f32: the dynamic program enumerates subsets of servers and handles at most 10; "
                       "the cluster has 11",
                       Error);
}

TEST_CASE("a solve stopped by the time limit returns CBC's incumbent or a better annealed plan") {
  const plan::Problem problem = testing::opt_350m_city_problem(0.3);
  ilp::SolverOptions hurried;
  hurried.time_limit_seconds = 1e-3;  // far too short to prove anything
  const plan::Plan plan = plan::solve(problem, hurried);
  const plan::Plan greedy = plan::greedy(problem);
  REQUIRE(greedy.has_plan());
  REQUIRE(plan.has_plan());
  CHECK(plan.status == plan::Status::feasible);
  CHECK(plan.method == "dilemma");
  CHECK(plan.objective() < greedy.objective());
  CHECK(plan.solver.gap.value_or(1.0) > 0.0);
  // CBC had no plan yet: annealing from greedy's gave this one.
  CHECK(plan.solver.status == "no_solution; annealing found the plan, CBC none");
  CHECK(plan.assignments == plan::anneal(problem).assignments);
}
