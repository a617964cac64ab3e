#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/messages.hpp"

using namespace dilemma;
using quant::Format;

namespace {

// Servers A and B; the user's phone U reaches A only (100 B/s, 10 ms); A–B is
// 1000 B/s, 1 ms. Three stages; on B everything takes twice as long as on A,
// and B cannot run int4.
cost::Instance hand_instance() {
  cost::Instance instance;
  edge::Cluster& cluster = instance.cluster;
  cluster.name = "hand";
  for (const char* name : {"A", "B"}) {
    edge::Server server;
    server.name = name;
    server.memory_bytes = 100;
    cluster.servers.push_back(server);
  }
  cluster.servers[1].formats = {Format::f32, Format::f16, Format::int8};
  cluster.user = {"U", false};
  cluster.links = {{"U", "A", {100, 0.01}, true}, {"A", "B", {1000, 0.001}, true}};

  cost::ModelCosts costs;
  costs.name = "m";
  costs.source = "hand";
  costs.request = {10, 3, 1};  // 10 prompt tokens, 3 new tokens: 2 decode steps
  costs.activation_bytes = 40;
  costs.token_id_bytes = 4;
  const double weights[] = {30, 40, 20};
  const double prefill[] = {0.1, 0.2, 0.3};
  for (std::size_t s = 0; s < 3; ++s) {
    cost::StageCosts stage;
    stage.name = s == 0 ? "embedding" : s == 1 ? "layer.0" : "head";
    stage.f32_weight_bytes = weights[s];
    stage.kv_cache_bytes = s == 1 ? 5 : 0;
    const double errors[] = {0.0, 0.001, 0.01, 0.1};
    for (std::size_t f = 0; f < 4; ++f)
      stage.formats[f] = cost::FormatCosts{weights[s] / static_cast<double>(1 << f), errors[f]};
    stage.times.resize(2);
    for (std::size_t f = 0; f < 4; ++f) {
      stage.times[0][f] = cost::StageTimes{prefill[s], prefill[s] / 10};
      if (f < 3) stage.times[1][f] = cost::StageTimes{2 * prefill[s], 2 * prefill[s] / 10};
    }
    costs.stages.push_back(std::move(stage));
  }
  instance.workloads.push_back({costs, 0.05, 1.0});
  instance.validate();
  return instance;
}

cost::Evaluation evaluate(const cost::Instance& instance, const cost::Assignment& assignment) {
  return cost::evaluate(instance, std::vector<cost::Assignment>{assignment});
}

}  // namespace

TEST_CASE("evaluate computes the completion time term by term") {
  cost::Instance instance = hand_instance();
  const cost::Evaluation result = evaluate(instance, {{0, Format::f32}, {1, Format::f32}, {0, Format::f32}});
  REQUIRE(result.feasible());
  const cost::ModelEvaluation& model = result.models[0];
  // Compute: prefill 0.1 + 0.4 + 0.3, one decode step 0.01 + 0.04 + 0.03.
  // Prompt U→A 0.01 + 40/100; A→B 10 rows 0.001 + 400/1000; B→A one row
  // 0.001 + 40/1000; first token A→U 0.01 + 4/100. Each decode step adds
  // A→B and B→A of one row, 0.041 each; the fed-back token stays on A.
  CHECK(model.first_token_seconds == doctest::Approx(0.8 + 0.41 + 0.401 + 0.041 + 0.05).epsilon(1e-14));
  CHECK(model.decode_step_seconds == doctest::Approx(0.08 + 0.082).epsilon(1e-14));
  CHECK(model.completion_seconds == doctest::Approx(1.702 + 2 * 0.162).epsilon(1e-14));
  CHECK(model.compute_seconds == doctest::Approx(0.8 + 2 * 0.08).epsilon(1e-14));
  CHECK(model.transfer_seconds == doctest::Approx(model.completion_seconds - model.compute_seconds).epsilon(1e-14));
  CHECK(result.objective == model.completion_seconds);
  CHECK(model.servers[0].memory_bytes == 50);
  CHECK(model.servers[1].memory_bytes == 45);
  CHECK(model.servers[1].stages == std::vector<std::size_t>{1});
  CHECK(model.error == 0.0);
  CHECK(model.quantization_ratio == 1.0);
  REQUIRE(model.links.size() == 4);  // A→B, A→U, B→A, U→A: ordered by (from, to) node
  CHECK(model.links[0].from == 0);
  CHECK(model.links[0].to == 1);
  CHECK(model.links[0].bytes == 400 + 2 * 40);
  CHECK(model.links[0].busy_seconds == doctest::Approx(0.48));
  CHECK(model.links[1].bytes == 3 * 4);  // every generated token goes to the user

  // Throughput: A and B each compute 0.4 + 2·0.04; link A→B carries 480 bytes.
  instance.objective = cost::Objective::throughput;
  const cost::Evaluation pipelined = evaluate(instance, {{0, Format::f32}, {1, Format::f32}, {0, Format::f32}});
  CHECK(pipelined.server_busy_seconds[0] == doctest::Approx(0.48));
  CHECK(pipelined.objective == doctest::Approx(0.48));
  CHECK(pipelined.bottleneck_seconds == doctest::Approx(0.48));
}

TEST_CASE("evaluate reports quantization, and every violated constraint in words") {
  cost::Instance instance = hand_instance();
  instance.workloads[0].accuracy_budget = 0.2;
  cost::Evaluation result = evaluate(instance, {{0, Format::int8}, {0, Format::f16}, {0, Format::int4}});
  CHECK(result.feasible());
  CHECK(result.models[0].error == doctest::Approx(0.01 + 0.001 + 0.1));
  CHECK(result.models[0].weight_bytes == doctest::Approx(7.5 + 20 + 2.5));
  CHECK(result.models[0].quantization_ratio == doctest::Approx(30.0 / 90.0));
  // The head in int4 on B: B cannot run it. The embedding on B: the phone has
  // no link to B. The layer in int4: over budget. Every stage on A in f32
  // with a 60-byte A: too big.
  instance.cluster.servers[0].memory_bytes = 60;
  instance.workloads[0].accuracy_budget = 0.05;
  result = evaluate(instance, {{1, Format::f32}, {0, Format::int4}, {1, Format::int4}});
  REQUIRE(result.violations.size() == 4);
  CHECK(result.violations[0] == "m: stage head cannot run on server \"B\" in int4");
  CHECK(result.violations[1] == "m: no link from \"U\" to \"B\" for the prompt");
  CHECK(result.violations[2] == "m: no link from \"B\" to \"U\" for the generated tokens");
  CHECK(result.violations[3] == "m: the accuracy error 0.1 exceeds the budget 0.05");
  result = evaluate(instance, {{0, Format::f32}, {0, Format::f32}, {0, Format::f32}});
  REQUIRE(result.violations.size() == 1);
  CHECK(result.violations[0] == "server \"A\": the stages placed on it need 95 B, it has 60 B");
  CHECK_THROWS_WITH_AS(evaluate(instance, {{0, Format::f32}}),
                       "evaluate: the assignment of model \"m\" has 1 stages, the model has 3", Error);
  CHECK_THROWS_WITH_AS(evaluate(instance, {{0, Format::f32}, {5, Format::f32}, {0, Format::f32}}),
                       "evaluate: model \"m\" stage layer.0 is on server 5, but the cluster has 2 servers", Error);
}

TEST_CASE("boundary_cost prices one step of the chain as evaluate does, and needs a link") {
  const cost::Instance instance = hand_instance();
  const cost::LinkTable links(instance.cluster);
  const cost::ModelCosts& costs = instance.workloads[0].costs;
  // Into layer.0, A→B: 10 prompt rows (0.001 + 400/1000), then one row in each of the 2 decode steps.
  const cost::LinkCost into_layer = cost::boundary_cost(links, costs, 0, 1, 1);
  CHECK(into_layer.seconds == doctest::Approx(0.401 + 2 * 0.041).epsilon(1e-14));
  CHECK(into_layer.busy == doctest::Approx(0.4 + 2 * 0.04).epsilon(1e-14));
  // Into the head, B→A: only the last position's row in the prefill.
  const cost::LinkCost into_head = cost::boundary_cost(links, costs, 1, 0, 2);
  CHECK(into_head.seconds == doctest::Approx(3 * 0.041).epsilon(1e-14));
  CHECK(into_head.busy == doctest::Approx(3 * 0.04).epsilon(1e-14));
  CHECK(cost::boundary_cost(links, costs, 1, 1, 2).seconds == 0.0);
  CHECK_THROWS_WITH_AS(cost::boundary_cost(links, costs, 1, 2, 2),
                       "cost: no link from node 1 to node 2 for the step into stage 2", Error);
  const auto priced = cost::boundary_link_cost(links, costs, 0, 1, 1);
  REQUIRE(priced);
  CHECK(priced->seconds == into_layer.seconds);
  CHECK(priced->busy == into_layer.busy);
  CHECK_FALSE(cost::boundary_link_cost(links, costs, 1, 2, 2));
}

TEST_CASE("link_cost prices a request's messages: once or in every decode step, and not without a link") {
  cost::Instance instance = hand_instance();
  const cost::LinkTable links(instance.cluster);
  const cost::ModelCosts& costs = instance.workloads[0].costs;
  const std::size_t a = 0, b = 1, user = instance.cluster.user_node();
  // The prompt, 10 tokens of 4 B, from U to A (100 B/s, 10 ms): one message on the critical path.
  const auto prompt = cost::link_cost(links, user, a, cost::prompt_message(costs));
  REQUIRE(prompt);
  CHECK(prompt->seconds == doctest::Approx(0.01 + 0.4).epsilon(1e-14));
  CHECK(prompt->busy == doctest::Approx(0.4).epsilon(1e-14));
  // Three generated tokens to the user occupy the link three times; only the last one's trip counts.
  const auto tokens = cost::link_cost(links, a, user, cost::generated_tokens_message(costs));
  REQUIRE(tokens);
  CHECK(tokens->seconds == doctest::Approx(0.01 + 0.04).epsilon(1e-14));
  CHECK(tokens->busy == doctest::Approx(3 * 0.04).epsilon(1e-14));
  // The token fed back from B to A (1000 B/s, 1 ms) holds up each of the 2 decode steps.
  const auto fed_back = cost::link_cost(links, b, a, cost::fed_back_token_message(costs));
  REQUIRE(fed_back);
  CHECK(fed_back->seconds == doctest::Approx(2 * 0.005).epsilon(1e-14));
  CHECK(fed_back->busy == doctest::Approx(2 * 0.004).epsilon(1e-14));
  // Nothing on one node; no price without a link, unless no such message is sent.
  CHECK(cost::link_cost(links, b, b, cost::prompt_message(costs))->seconds == 0.0);
  CHECK_FALSE(cost::link_cost(links, user, b, cost::prompt_message(costs)));
  CHECK_FALSE(cost::link_cost(links, b, user, cost::fed_back_token_message(costs)));
  instance.workloads[0].costs.request.new_tokens = 1;
  const auto none = cost::link_cost(links, b, user, cost::fed_back_token_message(instance.workloads[0].costs));
  REQUIRE(none);
  CHECK(none->seconds == 0.0);
  CHECK(none->busy == 0.0);
}
