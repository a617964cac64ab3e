#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <vector>

#include "dilemma/plan/solve.hpp"
#include "plan_test_support.hpp"

using namespace dilemma;
using quant::Format;

namespace {

constexpr double no_budget = std::numeric_limits<double>::infinity();
const quant::QuantScheme groups_of_32{32, false};

std::vector<std::string> reasons_of(const plan::Problem& problem) {
  const plan::Plan plan = plan::solve(problem);
  CHECK(plan.status == plan::Status::infeasible);
  CHECK_FALSE(plan.has_plan());
  return plan.reasons;
}

double half_of_int8_everywhere() {
  return 0.5 *
         testing::whole_model_error(cost::proxy_error_table(testing::tiny_opt_config(), groups_of_32), Format::int8);
}

}  // namespace

TEST_CASE("a cluster smaller than the smallest model is reported before solving") {
  const edge::Cluster too_small = edge::Cluster::load(testing::example_cluster("too-small"));
  CHECK(reasons_of(testing::tiny_opt_problem(too_small, no_budget, groups_of_32)) ==
        std::vector<std::string>{"tiny-opt needs at least 5.22 MiB (every stage in the smallest format the options and "
                                 "the accuracy budget allow, with the KV caches), but the servers that may hold stages "
                                 "have 1.88 MiB in total"});
  // With the default groups of 64, the 96-wide embedding and head cannot be
  // stored in integer formats, and even in f16 they fit on no server.
  CHECK(reasons_of(testing::tiny_opt_problem(too_small, no_budget)) ==
        std::vector<std::string>{
            "tiny-opt: stage embedding needs at least 1.74 MiB (in f16, weights and KV cache) but the "
            "largest server that may hold it, \"sensor-b\", has 768.00 KiB",
            "tiny-opt: stage head needs at least 1.55 MiB (in f16, weights and KV cache) but the "
            "largest server that may hold it, \"sensor-b\", has 768.00 KiB"});
}

TEST_CASE("a stage larger than every server is reported with its size and the largest server") {
  plan::Problem problem =
      testing::tiny_opt_problem(edge::Cluster::load(testing::example_cluster("smart-city")), no_budget);
  problem.options.formats = {Format::f32};
  CHECK(reasons_of(problem) ==
        std::vector<std::string>{
            "tiny-opt: stage embedding needs at least 3.29 MiB (in f32, weights and KV cache) but the "
            "largest server that may hold it, \"street-light-gw\", has 2.75 MiB",
            "tiny-opt: stage head needs at least 3.10 MiB (in f32, weights and KV cache) but the "
            "largest server that may hold it, \"street-light-gw\", has 2.75 MiB"});
}

TEST_CASE("a budget below the least error any format mix reaches is reported before solving") {
  plan::Problem problem = testing::tiny_opt_problem(edge::Cluster::load(testing::example_cluster("smart-city")),
                                                    half_of_int8_everywhere(), groups_of_32);
  problem.options.formats = {Format::int8, Format::int4};
  CHECK(reasons_of(problem) ==
        std::vector<std::string>{"tiny-opt: the accuracy budget 2.14876e-05 is below the least error any plan reaches, "
                                 "4.29752e-05 (every stage in its most accurate format that fits a server)"});
}

TEST_CASE("a budget that only the memory makes unreachable is found by the diagnosis after the solve" *
          doctest::skip(testing::cbc_search_heavy)) {
  const plan::Problem problem = testing::tiny_opt_problem(edge::Cluster::load(testing::example_cluster("smart-city")),
                                                          half_of_int8_everywhere(), groups_of_32);
  const std::vector<std::string> reasons = reasons_of(problem);
  REQUIRE(reasons.size() == 1);
  CHECK(reasons.front() ==
        "tiny-opt: the accuracy budget 2.14876e-05 is below the least error a plan that fits the servers' memory can "
        "reach, 3.19482e-05");
}

TEST_CASE("servers cut off from the user are named") {
  edge::Cluster city = edge::Cluster::load(testing::example_cluster("smart-city"));
  std::erase_if(city.links, [](const edge::LinkSpec& link) {
    return link.from == "street-light-gw" || link.to == "bus-stop-kiosk";
  });
  CHECK(reasons_of(testing::tiny_opt_problem(city, no_budget, groups_of_32)) ==
        std::vector<std::string>{
            "servers \"traffic-cam\", \"bus-stop-kiosk\", \"parking-hub\", \"district-node\" have no "
            "chain of links from and back to the user node \"citizen-phone\", so only "
            "\"street-light-gw\" (2.75 MiB in total) can take part, but tiny-opt needs at least 5.22 "
            "MiB"});
}

TEST_CASE("the user must reach the embedding's server and be reached from the head's") {
  edge::Cluster city = edge::Cluster::load(testing::example_cluster("smart-city"));
  city.servers[1].memory_bytes = city.servers[2].memory_bytes = 300000;  // the two boxes the phone reaches
  CHECK(reasons_of(testing::tiny_opt_problem(city, no_budget, groups_of_32)) ==
        std::vector<std::string>{
            "tiny-opt: stage embedding must receive the prompt, but no server that can hold it has a "
            "link from the user node \"citizen-phone\"",
            "tiny-opt: stage head must send tokens to the user, but no server that can hold it has a "
            "link to the user node \"citizen-phone\""});
}

TEST_CASE("options that rule out every plan are named by the diagnosis" * doctest::skip(testing::cbc_search_heavy)) {
  const edge::Cluster city = edge::Cluster::load(testing::example_cluster("smart-city"));
  plan::Problem problem = testing::tiny_opt_problem(city, no_budget, groups_of_32);
  problem.options.max_servers = 1;
  CHECK(reasons_of(problem) ==
        std::vector<std::string>{"at most 1 server may be used, but every plan needs at least 3"});

  problem = testing::tiny_opt_problem(city, no_budget, groups_of_32);
  problem.options.pins = {{"", "embedding", "street-light-gw", {}}, {"", "head", "street-light-gw", {}}};
  problem.options.contiguous = true;
  CHECK(reasons_of(problem) ==
        std::vector<std::string>{
            "no plan keeps each server's stages in one contiguous range; plans that split them exist"});
  problem.options.contiguous = false;
  const plan::Plan plan = plan::solve(problem);
  REQUIRE(plan.has_plan());
  CHECK(plan.assignments[0].front().server == 2);
  CHECK(plan.assignments[0].back().server == 2);
}

TEST_CASE("bad options are input errors, not infeasibility") {
  plan::Problem problem =
      testing::tiny_opt_problem(edge::Cluster::load(testing::example_cluster("smart-city")), no_budget);
  problem.options.pins = {{"", "layer.12", "street-light-gw", {}}};
  CHECK_THROWS_WITH_AS(
      plan::solve(problem),
      "pin of stage layer.12: model \"tiny-opt\" has no stage \"layer.12\" (it has embedding, layer.0 .. "
      "layer.7, head)",
      Error);
  problem.options.pins = {{"", "head", "city-hall", {}}};
  CHECK_THROWS_WITH_AS(plan::solve(problem),
                       "pin of stage head: unknown server \"city-hall\" (cluster \"smart-city\" has traffic-cam, "
                       "bus-stop-kiosk, street-light-gw, parking-hub, district-node)",
                       Error);
  problem.options.pins.clear();
  problem.options.max_servers = 0;
  CHECK_THROWS_WITH_AS(plan::solve(problem), "problem: max_servers must be >= 1", Error);
}
