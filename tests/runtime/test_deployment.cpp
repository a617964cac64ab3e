#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "dilemma/runtime/deployment.hpp"
#include "runtime_test_support.hpp"

using namespace dilemma;
using namespace dilemma::runtime;
using quant::Format;

namespace {

model::OptConfig tiny_config() { return model::OptConfig::load(testing::model_dir("tiny-opt") / "config.json"); }

std::string deploy_error(const plan::Plan& plan, const model::OptConfig& config, RequestShape shape,
                         DeploymentOptions options) {
  try {
    deploy(plan, config, shape, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

DeploymentOptions groups_of_32(std::optional<edge::Cluster> cluster = std::nullopt) {
  return {0, std::move(cluster), testing::test_scheme()};
}

}  // namespace

TEST_CASE("a plan becomes a deployment: stages per node, addresses of embedding, head and user") {
  const auto plan = testing::hand_plan(testing::test_cluster(), testing::split3, testing::split3_formats());
  const Deployment d = deploy(plan, tiny_config(), {12, 6, 1}, groups_of_32());
  CHECK(d.stage_count() == 10);
  CHECK(d.user() == 3);
  CHECK(d.cluster_node(d.user()) == 3);  // the phone is a node of its own
  CHECK(d.embedding_node() == 0);
  CHECK(d.head_node() == 2);
  CHECK(d.nodes() == std::vector<Address>{0, 1, 2});
  CHECK(d.stages_on(1) == std::vector<std::size_t>{4, 5, 6, 7});
  CHECK(d.stage_names[9] == "head");
  CHECK(d.label(2) == "node \"gamma\"");
  CHECK(d.label(3) == "the user \"phone\"");
  // Memory: weights in the cost model's layout plus one KV cache of 18 tokens per layer.
  const double layer_kv = 2.0 * 192 * 18 * 4;
  CHECK(d.kv_cache_bytes(1) == layer_kv);
  CHECK(d.kv_cache_bytes(0) == 0.0);
  CHECK(d.planned_memory_bytes(1) ==
        doctest::Approx(4 * (cost::weight_bytes(cost::stage_shape(tiny_config(), 1), Format::f32, {}) + layer_kv)));
}

TEST_CASE("plans that do not match the model or the cluster are rejected before anything runs") {
  const edge::Cluster cluster = testing::test_cluster();
  const auto plan = testing::hand_plan(cluster, testing::split3, testing::split3_formats());
  const auto config = tiny_config();

  SUBCASE("wrong number of stages") {
    const auto other = model::OptConfig::load(testing::model_dir("tiny-opt-preln") / "config.json");
    CHECK(deploy_error(plan, other, {12, 6, 1}, groups_of_32()) ==
          "the plan's model \"tiny-opt\" has 10 stages, but the model to run has 4 (embedding, 2 layers, head)");
  }
  SUBCASE("a plan without an assignment") {
    plan::Plan empty = plan::no_plan("dilemma", plan::Status::infeasible, plan.problem, {"too little memory"}, {});
    CHECK(deploy_error(empty, config, {12, 6, 1}, groups_of_32()) ==
          "the plan has no assignment to run (status infeasible; too little memory)");
  }
  SUBCASE("unknown server in the cluster the run uses") {
    edge::Cluster renamed = cluster;
    renamed.servers[1].name = "delta";
    for (auto& link : renamed.links) {
      if (link.from == "beta") link.from = "delta";
      if (link.to == "beta") link.to = "delta";
    }
    CHECK(deploy_error(plan, config, {12, 6, 1}, groups_of_32(renamed)) ==
          "plan: stage layer.3: unknown server \"beta\" (cluster \"test-triangle\" has alpha, delta, gamma)");
  }
  SUBCASE("a format the server cannot run") {
    edge::Cluster integer_only = cluster;
    integer_only.servers[1].formats = {Format::int8, Format::int4};
    CHECK(deploy_error(plan, config, {12, 6, 1}, groups_of_32(integer_only)) ==
          "plan: stage layer.3 is planned on server \"beta\" in f32, which that server cannot run (it runs int8, "
          "int4)");
  }
  SUBCASE("a format the stage cannot be stored in with the run's groups") {
    CHECK(deploy_error(plan, config, {12, 6, 1}, {0, std::nullopt, {64, false}}) ==
          "plan: stage head cannot be stored in int8 with groups of 64: the group size must be a multiple of 32 "
          "dividing the columns of every matrix of the stage");
  }
  SUBCASE("memory over capacity") {
    edge::Cluster small = cluster;
    small.servers[1].memory_bytes = 3.0 * 1048576;
    CHECK(deploy_error(plan, config, {12, 6, 1}, groups_of_32(small)) ==
          "server \"beta\": the stages planned on it (layer.3, layer.4, layer.5, layer.6) need 6.89 MiB in their "
          "formats with 1 request(s) of 12 + 6 tokens in flight, it has 3.00 MiB");
  }
  SUBCASE("a missing link") {
    edge::Cluster cut = cluster;
    std::erase_if(cut.links, [](const edge::LinkSpec& l) { return l.from == "beta" && l.to == "gamma"; });
    CHECK(deploy_error(plan, config, {12, 6, 1}, groups_of_32(cut)) ==
          "no link from \"beta\" to \"gamma\" in cluster \"test-triangle\" for the activations from layer.6 to "
          "layer.7");
  }
  SUBCASE("a request longer than the context") {
    CHECK(deploy_error(plan, config, {250, 7, 1}, groups_of_32()) ==
          "a prompt of 250 tokens and 7 new tokens exceed the model's context of 256 positions");
  }
  SUBCASE("a model the plan does not have") {
    CHECK(deploy_error(plan, config, {12, 6, 1}, {3, std::nullopt, testing::test_scheme()}) ==
          "the plan places 1 model(s); there is no model 3 in it");
  }
}
