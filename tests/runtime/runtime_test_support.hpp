#pragma once
// Plans for the bundled tiny-opt on a small test cluster, written by hand
// (stage by stage) so that each test decides where every stage runs.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/generation/generate.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/quant/format.hpp"
#include "dilemma/runtime/run.hpp"
#include "test_support.hpp"

namespace dilemma::testing {

// Three servers on a triangle of links and a phone linked to each.
// Fast links keep the tests quick; "gamma" runs integer formats only.
inline edge::Cluster test_cluster(double latency_seconds = 2e-4) {
  nlohmann::json json = {
      {"name", "test-triangle"},
      {"servers",
       {{{"name", "alpha"}, {"memory", "64 MiB"}, {"peak_flops", "20 GFLOP/s"}, {"memory_bandwidth", "10 GB/s"}},
        {{"name", "beta"}, {"memory", "64 MiB"}, {"peak_flops", "20 GFLOP/s"}, {"memory_bandwidth", "10 GB/s"}},
        {{"name", "gamma"},
         {"memory", "64 MiB"},
         {"peak_flops", "20 GFLOP/s"},
         {"memory_bandwidth", "10 GB/s"},
         {"formats", {"int8", "int4"}}}}},
      {"links",
       {{{"from", "phone"}, {"to", "alpha"}, {"bandwidth", "1 Gbit/s"}, {"latency", latency_seconds}},
        {{"from", "phone"}, {"to", "beta"}, {"bandwidth", "1 Gbit/s"}, {"latency", latency_seconds}},
        {{"from", "phone"}, {"to", "gamma"}, {"bandwidth", "1 Gbit/s"}, {"latency", latency_seconds}},
        {{"from", "alpha"}, {"to", "beta"}, {"bandwidth", "1 Gbit/s"}, {"latency", latency_seconds}},
        {{"from", "beta"}, {"to", "gamma"}, {"bandwidth", "1 Gbit/s"}, {"latency", latency_seconds}},
        {{"from", "alpha"}, {"to", "gamma"}, {"bandwidth", "1 Gbit/s"}, {"latency", latency_seconds}}}},
      {"user", {{"name", "phone"}}}};
  return edge::Cluster::from_json(json, "test cluster");
}

// Groups of 32: tiny-opt's embedding and head are 96 columns wide.
inline quant::QuantScheme test_scheme() { return {32, false}; }

// A plan placing stage s on servers[s] in formats[s], priced by the analytic
// cost model for `prompt` + `new_tokens` tokens.
inline plan::Plan hand_plan(const edge::Cluster& cluster, const std::vector<std::string>& servers,
                            const std::vector<quant::Format>& formats, std::int64_t prompt = 16,
                            std::int64_t new_tokens = 8) {
  const auto config = model::OptConfig::load(model_dir("tiny-opt") / "config.json");
  plan::Problem problem;
  problem.instance.cluster = cluster;
  problem.instance.workloads.push_back(
      {cost::analytic_costs(config, cluster, {prompt, new_tokens, 1}, cost::proxy_error_table(config, test_scheme()),
                            {test_scheme()}, "tiny-opt"),
       std::numeric_limits<double>::infinity(), 1.0});
  cost::Assignment assignment;
  for (std::size_t s = 0; s < servers.size(); ++s) {
    assignment.push_back({cluster.server_index(servers[s], "hand plan"), formats[s]});
  }
  return plan::make_plan("hand", plan::Status::feasible, problem, {assignment}, {});
}

inline std::vector<quant::Format> all_f32(std::size_t stages = 10) {
  return std::vector<quant::Format>(stages, quant::Format::f32);
}

// tiny-opt's ten stages over the three test servers: embedding and layers 0-2
// on alpha, layers 3-6 on beta, layer 7 and the head on gamma (int8, since
// gamma runs integer formats only).
inline const std::vector<std::string> split3 = {"alpha", "alpha", "alpha", "alpha", "beta",
                                                "beta",  "beta",  "beta",  "gamma", "gamma"};

inline std::vector<quant::Format> split3_formats() {
  auto formats = all_f32();
  formats[8] = formats[9] = quant::Format::int8;
  return formats;
}

// Greedy tokens of the same model in one process, each stage in its format.
inline std::vector<std::vector<TokenId>> single_process_tokens(const std::vector<std::vector<TokenId>>& prompts,
                                                               const std::vector<quant::Format>& formats,
                                                               int new_tokens, const model::RunContext& context = {}) {
  auto model = model::OptModel::load(tiny_opt());
  for (std::size_t s = 0; s < formats.size(); ++s) model.stages()[s].quantize(formats[s], test_scheme());
  generation::GenerationOptions options;
  options.max_new_tokens = new_tokens;
  options.stop_at_eos = false;
  options.run_context = context;
  std::vector<std::vector<TokenId>> tokens;
  for (const auto& prompt : prompts) tokens.push_back(generation::generate(model, prompt, options).tokens);
  return tokens;
}

inline std::vector<TokenId> single_process_tokens(const std::vector<TokenId>& prompt,
                                                  const std::vector<quant::Format>& formats, int new_tokens,
                                                  const model::RunContext& context = {}) {
  return single_process_tokens(std::vector<std::vector<TokenId>>{prompt}, formats, new_tokens, context).front();
}

inline std::vector<TokenId> test_prompt(int variant = 0) {
  std::vector<TokenId> prompt = {2};
  for (int i = 0; i < 11; ++i) prompt.push_back(static_cast<TokenId>(100 + 37 * i + 13 * variant));
  return prompt;
}

inline runtime::RunOptions quick_options(int new_tokens = 6) {
  runtime::RunOptions options;
  options.scheme = test_scheme();
  options.generation.max_new_tokens = new_tokens;
  options.generation.stop_at_eos = false;
  options.timeout_seconds = 5.0;
  return options;
}

}  // namespace dilemma::testing
