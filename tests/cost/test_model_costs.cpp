#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "cost_test_support.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "test_support.hpp"

using namespace dilemma;
using nlohmann::json;
using quant::Format;

namespace {

edge::Cluster one_server(double speed_factor = 1.0) {
  edge::Cluster cluster;
  cluster.name = "one";
  edge::Server server;
  server.name = "box";
  server.memory_bytes = 1e6;
  server.set_peak_flops(1e9);
  server.memory_bandwidth = 1e9;
  server.stage_overhead_seconds = 1e-6;
  server.speed_factor = speed_factor;
  cluster.servers.push_back(server);
  cluster.user = {"box", true};
  return cluster;
}

cost::ErrorTable errors_for(const model::OptConfig& config) { return cost::proxy_error_table(config); }

}  // namespace

TEST_CASE("analytic costs are the roofline of each call, decode averaged over the request's steps") {
  const model::OptConfig config = testing::hand_config();
  const cost::Request request{4, 3, 1};
  const cost::CostOptions groups_of_32{{32, false}};
  const cost::ModelCosts costs =
      cost::analytic_costs(config, one_server(), request, errors_for(config), groups_of_32, "hand");
  REQUIRE(costs.stages.size() == 3);
  const auto& layer = costs.stages[1];
  CHECK(layer.name == "layer.0");
  // Prefill: 67584 FLOPs at 1 GFLOP/s beat 36224 bytes at 1 GB/s; plus 1 us overhead.
  CHECK(layer.time(0, Format::f32)->prefill_seconds == doctest::Approx(68.584e-6).epsilon(1e-12));
  // Two decode steps, memory-bound: (35712 + 35968) bytes / 2 at 1 GB/s, plus overhead.
  CHECK(layer.time(0, Format::f32)->decode_seconds == doctest::Approx(36.84e-6).epsilon(1e-12));
  CHECK(layer.kv_cache_bytes == 1792);
  CHECK(layer.f32_weight_bytes == 34176);
  CHECK(layer.formats[cost::format_index(Format::int8)]->weight_bytes == 10624);
  CHECK(costs.memory_bytes(1, Format::int4) == 6528 + 1792);
  CHECK(costs.activation_bytes == 128);
  CHECK(costs.prefill_rows_into(1) == 4);
  CHECK(costs.prefill_rows_into(2) == 1);
  // Errors come from the table and grow with coarser formats.
  CHECK(costs.error(1, Format::f32) == 0.0);
  CHECK(costs.error(1, Format::f16) < costs.error(1, Format::int8));
  CHECK(costs.error(1, Format::int8) < costs.error(1, Format::int4));
  // With the default groups of 64, integer formats cannot store the 32-wide matrices.
  const cost::ModelCosts default_groups =
      cost::analytic_costs(config, one_server(), request, errors_for(config), {}, "hand");
  CHECK_FALSE(default_groups.stages[1].formats[cost::format_index(Format::int8)].has_value());
  CHECK_FALSE(default_groups.stages[1].time(0, Format::int8).has_value());
  CHECK(default_groups.stages[1].time(0, Format::f16).has_value());

  const cost::ModelCosts again = cost::ModelCosts::from_json(costs.to_json(), "round trip");
  CHECK(again.to_json() == costs.to_json());
}

TEST_CASE("the analytic model needs every server's compute specs") {
  const model::OptConfig config = testing::hand_config();
  edge::Cluster cluster = one_server();
  cluster.servers[0].peak_flops[cost::format_index(Format::int4)].reset();
  CHECK_THROWS_WITH_AS(cost::analytic_costs(config, cluster, {4, 3, 1}, errors_for(config)),
                       "cluster one: server \"box\" runs int4 but has no peak_flops for it, which the analytic cost "
                       "model needs (or use measured costs, which need only speed_factor)",
                       Error);
  cluster.servers[0].formats = {Format::f32};
  CHECK_NOTHROW(cost::analytic_costs(config, cluster, {4, 3, 1}, errors_for(config)));
  CHECK_THROWS_WITH_AS(cost::analytic_costs(config, cluster, {10, 7, 1}, errors_for(config), {}, "hand"),
                       "hand: a request of 10 prompt + 7 new tokens exceeds the model's context of 16 positions",
                       Error);
  CHECK_THROWS_WITH_AS(cost::analytic_costs(config, cluster, {4, 0, 1}, errors_for(config), {}, "hand"),
                       "hand request: new_tokens must be >= 1, got 0", Error);
}

TEST_CASE("measured costs scale the profile by speed factor and prompt length") {
  const model::OptConfig config = testing::hand_config();
  json stages = json::object();
  for (const char* stage : {"embedding", "layer.0", "head"}) {
    stages[stage] = {{"f32", {{"prefill", "8 ms"}, {"decode", "1 ms"}}},
                     {"int8", {{"prefill", 0.004}, {"decode", 0.0005}}}};
  }
  stages["layer.0"]["int8"]["weight_bytes"] = 1000;
  const cost::Profile profile =
      cost::Profile::from_json({{"machine", "test box"}, {"prompt_tokens", 8}, {"stages", stages}});
  const cost::ModelCosts costs =
      cost::measured_costs(config, one_server(2.0), {4, 3, 1}, errors_for(config), profile, {{32, false}}, "hand");
  CHECK(costs.source == "measured on test box");
  const auto& layer = costs.stages[1];
  CHECK(layer.time(0, Format::f32)->prefill_seconds == doctest::Approx(8e-3 * 4 / 8 / 2));
  CHECK(layer.time(0, Format::f32)->decode_seconds == doctest::Approx(1e-3 / 2));
  CHECK(costs.stages[2].time(0, Format::f32)->prefill_seconds == doctest::Approx(8e-3 / 2));  // the head's one row
  CHECK(layer.formats[cost::format_index(Format::int8)]->weight_bytes == 1000);
  // Formats the profile lacks cannot be used.
  CHECK_FALSE(layer.formats[cost::format_index(Format::int4)].has_value());
  CHECK_FALSE(layer.time(0, Format::int4).has_value());

  stages.erase("head");
  CHECK_THROWS_WITH_AS(
      cost::measured_costs(config, one_server(), {4, 3, 1}, errors_for(config),
                           cost::Profile::from_json({{"prompt_tokens", 8}, {"stages", stages}}), {}, "hand"),
      "the profile has no entry for stage head (the model has 3 stages: embedding, layer.0 .. layer.0, "
      "head)",
      Error);
}

TEST_CASE("profiles and error tables are checked with the field named") {
  CHECK_THROWS_WITH_AS(cost::Profile::from_json(json{{"stages", json::object()}}, "p.json"),
                       "p.json: missing field \"prompt_tokens\"", Error);
  CHECK_THROWS_WITH_AS(
      cost::Profile::from_json(
          json{{"prompt_tokens", 8}, {"stages", {{"head", {{"int9", {{"prefill", 1}, {"decode", 1}}}}}}}}, "p.json"),
      "p.json: stages.head: unknown format \"int9\" (expected f32, f16, int8 or int4)", Error);
  CHECK_THROWS_WITH_AS(
      cost::Profile::from_json(
          json{{"prompt_tokens", 8}, {"stages", {{"head", {{"f32", {{"prefill", "1 parsec"}, {"decode", 1}}}}}}}},
          "p.json"),
      "p.json: stages.head.f32.prefill: \"1 parsec\" is not a duration: expected a number followed by one of s, ms, "
      "us, "
      "\u00b5s or ns (or a JSON number in seconds)",
      Error);
  CHECK_THROWS_WITH_AS(
      cost::Profile::from_json(
          json{{"prompt_tokens", 8}, {"stages", {{"head", {{"f32", {{"prefill", 0}, {"decode", 1}}}}}}}}, "p.json"),
      "p.json: stages.head.f32: times must be positive, got 0 s", Error);

  CHECK_THROWS_WITH_AS(cost::ErrorTable::from_json(json{{"stages", {{"head", {{"int8", -1}}}}}}, "e.json"),
                       "e.json: stages.head.int8: an error must be finite and >= 0, got -1", Error);
  const model::OptConfig config = testing::hand_config();
  cost::ErrorTable table = cost::proxy_error_table(config);
  table.stage_names[1] = "layer.9";
  CHECK_THROWS_WITH_AS(cost::analytic_costs(config, one_server(), {4, 3, 1}, table),
                       "the error table has no entry for stage layer.0 (the model has 3 stages: embedding, layer.0 .. "
                       "layer.0, head)",
                       Error);
  const cost::ErrorTable loaded = cost::ErrorTable::from_json(cost::proxy_error_table(config).to_json());
  CHECK(loaded.error(0, Format::int4) > 0.0);
}

TEST_CASE("the proxy error sums, per format, to that format's whole-model relative error") {
  const auto config = model::OptConfig::load(testing::model_dir("tiny-opt") / "config.json");
  const cost::ErrorTable table = cost::proxy_error_table(config);
  for (Format format : quant::all_formats) {
    double sum = 0.0;
    for (std::size_t s = 0; s < table.errors.size(); ++s) sum += *table.error(s, format);
    const double expected = format == Format::f32    ? 0.0
                            : format == Format::f16  ? std::pow(2.0, -22) / 3
                            : format == Format::int8 ? 2 * std::log(128.0) / (12 * 127.0 * 127.0)
                                                     : 2 * std::log(128.0) / (12 * 49.0);
    CHECK(sum == doctest::Approx(expected).epsilon(1e-12));
  }
}
