#include <doctest/doctest.h>

#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "dilemma/plan/solve.hpp"
#include "plan_test_support.hpp"

using namespace dilemma;
using nlohmann::json;

namespace {

const plan::Plan& city_plan() {
  static const plan::Plan plan = [] {
    const edge::Cluster city = edge::Cluster::load(testing::example_cluster("smart-city"));
    plan::Problem problem = testing::tiny_opt_problem(city, std::numeric_limits<double>::infinity());
    problem.options.server_formats["traffic-cam"] = {quant::Format::int8};
    return plan::solve(problem);
  }();
  return plan;
}

}  // namespace

TEST_CASE("a plan survives a JSON round trip, and its file alone recomputes the objective") {
  const plan::Plan plan = city_plan();
  REQUIRE(plan.has_plan());
  const json stored = plan.to_json();
  CHECK(stored["status"] == "optimal");
  CHECK(stored["objective"]["seconds"].get<double>() == plan.objective());
  CHECK(stored["models"][0]["stages"].size() == 10);
  CHECK(stored["models"][0]["predicted"]["completion_seconds"].get<double>() == plan.objective());
  CHECK(stored["instance"]["models"][0]["costs"]["stages"].size() == 10);
  CHECK(stored["options"]["server_formats"]["traffic-cam"] == json::array({"int8"}));

  testing::ScratchDir scratch;
  plan.save(scratch / "plan.json");
  const plan::Plan loaded = plan::Plan::load(scratch / "plan.json");
  CHECK(loaded.assignments == plan.assignments);
  CHECK(loaded.objective() == plan.objective());
  CHECK(loaded.to_json() == stored);

  // The file's tables alone give the same objective, with the formula of docs/model.md.
  const json& costs = stored["instance"]["models"][0]["costs"];
  const auto& placed = stored["models"][0]["stages"];
  double compute = 0.0;
  for (std::size_t s = 0; s < placed.size(); ++s) {
    const auto server = plan.assignments[0][s].server;
    const json& format = costs["stages"][s]["formats"][placed[s]["format"].get<std::string>()];
    compute += format["prefill_seconds"][server].get<double>() + 31 * format["decode_seconds"][server].get<double>();
  }
  CHECK(compute == doctest::Approx(plan.evaluation.models[0].compute_seconds).epsilon(1e-12));
}

TEST_CASE("a plan file that disagrees with its own tables is rejected") {
  json stored = city_plan().to_json();
  json edited = stored;
  edited["objective"]["seconds"] = edited["objective"]["seconds"].get<double>() * 0.9;
  CHECK_THROWS_WITH_AS(plan::Plan::from_json(edited, "p.json"), doctest::Contains("p.json: the stored objective ("),
                       Error);
  edited = stored;
  edited["models"][0]["stages"][0]["server"] = "city-hall";
  CHECK_THROWS_WITH_AS(
      plan::Plan::from_json(edited, "p.json"),
      "p.json: models[0].stages[0]: unknown server \"city-hall\" (cluster \"smart-city\" has traffic-cam, "
      "bus-stop-kiosk, street-light-gw, parking-hub, district-node)",
      Error);
  edited = stored;
  edited["models"][0]["stages"][3]["format"] = "f32";  // a 1.7 MiB layer more on its server
  CHECK_THROWS_WITH_AS(plan::Plan::from_json(edited, "p.json"),
                       doctest::Contains("p.json: the plan violates its own problem: "), Error);
  edited = stored;
  edited["format"] = "something else";
  CHECK_THROWS_WITH_AS(plan::Plan::from_json(edited, "p.json"),
                       "p.json: not a dilemma plan (expected \"format\": \"dilemma-plan\")", Error);
}

TEST_CASE("an infeasible plan stores its reasons and no placement") {
  const plan::Plan plan = plan::solve(testing::tiny_opt_problem(
      edge::Cluster::load(testing::example_cluster("too-small")), std::numeric_limits<double>::infinity()));
  const json stored = plan.to_json();
  CHECK(stored["status"] == "infeasible");
  CHECK(stored["models"].empty());
  CHECK(stored["objective"]["seconds"].is_null());
  CHECK(stored["reasons"].size() == 2);  // neither the embedding nor the head fits anywhere
  const plan::Plan loaded = plan::Plan::from_json(stored);
  CHECK(loaded.status == plan::Status::infeasible);
  CHECK(loaded.reasons == plan.reasons);
}
