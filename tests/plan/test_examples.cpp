#include <doctest/doctest.h>

#include <limits>
#include <set>

#include "dilemma/model/config.hpp"
#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/solve.hpp"
#include "plan_test_support.hpp"

using namespace dilemma;
using quant::Format;

namespace {

std::set<std::size_t> servers_of(const cost::Assignment& assignment) {
  std::set<std::size_t> servers;
  for (const cost::Placement& placement : assignment) servers.insert(placement.server);
  return servers;
}

}  // namespace

TEST_CASE("tiny-opt on the smart-city cluster must be split and quantized, and DILEMMA beats every baseline" *
          doctest::skip(testing::cbc_search_heavy)) {
  const edge::Cluster city = edge::Cluster::load(testing::example_cluster("smart-city"));
  const quant::QuantScheme groups_of_32{32, false};  // so that integer formats can store the 96-wide embedding and head
  const double budget =
      0.3 * testing::whole_model_error(cost::proxy_error_table(testing::tiny_opt_config(), groups_of_32), Format::int4);
  const plan::Problem problem = testing::tiny_opt_problem(city, budget, groups_of_32);
  const plan::Plan plan = plan::solve(problem);
  REQUIRE(plan.status == plan::Status::optimal);
  const cost::ModelEvaluation& model = plan.evaluation.models[0];
  CHECK(servers_of(plan.assignments[0]).size() >= 2);
  CHECK(model.quantization_ratio < 0.5);  // f16 everywhere would not fit
  CHECK(model.error <= budget);
  CHECK(model.completion_seconds == plan.objective());
  for (const plan::Plan& baseline : {plan::single_server(problem), plan::placement_only(problem)}) {
    CHECK_FALSE(baseline.has_plan());  // the model fits on no server, and nowhere in f32
  }
  for (const plan::Plan& baseline : {plan::uniform_format(problem, Format::int8), plan::greedy(problem)}) {
    REQUIRE(baseline.has_plan());
    CHECK(plan.objective() < baseline.objective());
  }
  CHECK_FALSE(plan::uniform_format(problem, Format::int4).has_plan());  // over the budget

  // With the default groups of 64 the embedding and head stay in f16 or f32;
  // the model still has to be split and its layers quantized.
  const plan::Plan default_groups = plan::solve(testing::tiny_opt_problem(city, budget));
  REQUIRE(default_groups.status == plan::Status::optimal);
  CHECK(servers_of(default_groups.assignments[0]).size() >= 2);
  CHECK(default_groups.assignments[0].front().format == Format::f16);
  CHECK(default_groups.objective() >= plan.objective());
}

TEST_CASE("an OPT-350m-shaped model on its smart-city cluster must be split and quantized too" *
          doctest::skip(testing::cbc_search_heavy)) {
  const plan::Problem problem = testing::opt_350m_city_problem(0.05);
  const plan::Plan plan = plan::solve(problem);
  REQUIRE(plan.status == plan::Status::optimal);
  CHECK(servers_of(plan.assignments[0]).size() >= 2);
  CHECK(plan.evaluation.models[0].quantization_ratio < 0.5);
  CHECK(plan.solver.root_gap.value() >= 0.0);
}

TEST_CASE("two models share the servers, and their weights trade their delays") {
  const edge::Cluster city = edge::Cluster::load(testing::example_cluster("homogeneous"));
  const model::OptConfig config = testing::tiny_opt_config();
  const cost::ErrorTable errors = cost::proxy_error_table(config);
  plan::Problem problem;
  problem.instance.cluster = city;
  for (const char* name : {"assistant", "translator"}) {
    problem.instance.workloads.push_back({cost::analytic_costs(config, city, {64, 16, 1}, errors, {}, name),
                                          std::numeric_limits<double>::infinity(), 1.0});
  }
  for (auto& server : problem.instance.cluster.servers) server.memory_bytes = 12.0 * 1048576;  // one f32 copy each
  const plan::Plan shared = plan::solve(problem);
  REQUIRE(shared.status == plan::Status::optimal);
  CHECK(
      shared.evaluation.weighted_completion_seconds ==
      doctest::Approx(shared.evaluation.models[0].completion_seconds + shared.evaluation.models[1].completion_seconds));
  for (std::size_t j = 0; j < city.servers.size(); ++j) {
    CHECK(shared.evaluation.server_memory_bytes[j] <= problem.instance.cluster.servers[j].memory_bytes);
  }
  // Weighting the translator 10×: its delay can only get shorter.
  problem.instance.workloads[1].weight = 10.0;
  const plan::Plan favoured = plan::solve(problem);
  REQUIRE(favoured.has_plan());
  CHECK(favoured.evaluation.models[1].completion_seconds <=
        shared.evaluation.models[1].completion_seconds * (1 + 1e-9));
}
