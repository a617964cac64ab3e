#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "cost_test_support.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/cost/rtn_errors.hpp"
#include "dilemma/model/checkpoint.hpp"
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

TEST_CASE("a profile's normalized errors become the accuracy table, in either metric") {
  json stages = json::object();
  for (const char* stage : {"embedding", "layer.0", "head"}) {
    stages[stage] = {{"f32", {{"prefill", "8 ms"}, {"decode", "1 ms"}}},
                     {"int8",
                      {{"prefill", 0.004},
                       {"decode", 0.0005},
                       {"weight_difference", 0.5},
                       {"normalized_weight_difference", 1e-5},
                       {"output_error", 2.0},
                       {"normalized_output_error", 3e-5}}}};
  }
  stages["layer.0"]["int8"]["normalized_weight_difference"] = 4e-5;
  const cost::Profile profile =
      cost::Profile::from_json({{"machine", "box"}, {"prompt_tokens", 8}, {"stages", stages}}, "p.json");
  const cost::ErrorTable weight = profile.error_table(cost::ErrorMetric::weight);
  const cost::ErrorTable output = profile.error_table(cost::ErrorMetric::output);
  const std::size_t layer = cost::detail::find_stage(weight.stage_names, "layer.0");
  CHECK(weight.error(layer, Format::int8) == 4e-5);
  CHECK(output.error(layer, Format::int8) == 3e-5);
  CHECK(weight.error(layer, Format::f32) == 0.0);  // the teacher itself
  CHECK_FALSE(weight.error(layer, Format::int4).has_value());
  CHECK(weight.metric == "normalized_weight_difference from the profile p.json of machine \"box\"");
  // The extra keys survive a round trip, and a table built from them plans.
  const cost::Profile again = cost::Profile::from_json(profile.to_json(), "again.json");
  CHECK(again.error_table(cost::ErrorMetric::output).error(layer, Format::int8) == 3e-5);
  const model::OptConfig config = testing::hand_config();
  const cost::ModelCosts costs = cost::measured_costs(config, one_server(), {4, 3, 1}, weight, profile, {{32, false}});
  CHECK(costs.error(1, Format::int8) == 4e-5);

  stages["head"]["int8"].erase("normalized_output_error");
  CHECK_THROWS_WITH_AS(
      cost::Profile::from_json({{"prompt_tokens", 8}, {"stages", stages}}, "p.json").error_table(cost::ErrorMetric::output),
      "p.json: stages.head.int8 has no \"normalized_output_error\", which the output error metric needs", Error);
  stages["head"]["int8"]["output_error"] = -1;
  CHECK_THROWS_WITH_AS(cost::Profile::from_json({{"prompt_tokens", 8}, {"stages", stages}}, "p.json"),
                       "p.json: stages.head.int8.output_error: must be finite and >= 0, got -1", Error);
  CHECK_THROWS_WITH_AS(cost::parse_error_metric("kl", "--error-metric"),
                       "--error-metric: unknown error metric \"kl\" (expected weight or output)", Error);
}

TEST_CASE("round-to-nearest errors measured on tiny-opt's weights") {
  const auto checkpoint = model::OptCheckpoint::open(testing::model_dir("tiny-opt"));
  const quant::QuantScheme groups_of_32{32, false};
  const cost::ErrorTable table = cost::rtn_error_table(checkpoint, groups_of_32);
  const model::OptConfig& config = checkpoint.config();
  REQUIRE(table.errors.size() == static_cast<std::size_t>(config.num_stages()));
  double int8 = 0.0, int4 = 0.0;
  for (std::size_t s = 0; s < table.errors.size(); ++s) {
    CAPTURE(table.stage_names[s]);
    CHECK(table.stage_names[s] == cost::stage_name(config, s));
    CHECK(*table.error(s, Format::f32) == 0.0);
    CHECK(*table.error(s, Format::f16) < *table.error(s, Format::int8));
    CHECK(*table.error(s, Format::int8) < *table.error(s, Format::int4));
    int8 += *table.error(s, Format::int8);
    int4 += *table.error(s, Format::int4);
  }
  // Whole-model relative errors near what round-to-nearest gives near-Gaussian
  // weights with groups of 32 (the proxy), within a factor of three.
  const cost::ErrorTable proxy = cost::proxy_error_table(config, groups_of_32);
  double proxy_int4 = 0.0;
  for (std::size_t s = 0; s < proxy.errors.size(); ++s) proxy_int4 += *proxy.error(s, Format::int4);
  CHECK(int4 > proxy_int4 / 3);
  CHECK(int4 < proxy_int4 * 3);
  CHECK(int4 / int8 > 100);  // 4 bits fewer: about (127/7)² times the error

  // Layer 0 recomputed directly: Σ‖W − Q(W)‖² over its matrices / the model's Σ‖W‖².
  double norm = 0.0, layer_difference = 0.0;
  for (std::size_t s = 0; s < table.errors.size(); ++s) {
    const model::Stage stage = checkpoint.load_stage(s);
    for (const auto& [name, weight] : stage.matrices()) {
      const model::Matrix w = weight->dequantize();
      norm += w.cast<double>().squaredNorm();
      if (s == 1) {
        layer_difference +=
            (w - quant::QuantizedMatrix::quantize(w, Format::int4, groups_of_32).dequantize()).cast<double>().squaredNorm();
      }
    }
  }
  CHECK(*table.error(1, Format::int4) == doctest::Approx(layer_difference / norm).epsilon(1e-12));
  // With the default groups of 64, the 96-wide embedding and head have no integer entries.
  const cost::ErrorTable default_groups = cost::rtn_error_table(checkpoint);
  CHECK_FALSE(default_groups.error(0, Format::int8).has_value());
  CHECK(default_groups.error(1, Format::int8).has_value());
}
