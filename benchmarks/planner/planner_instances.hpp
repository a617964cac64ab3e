#pragma once
// The planning instances bench_planner solves: OPT-350m's 26 stages on 3, 5
// and 10 servers, and a 66-stage model (OPT-66b's shape: 64 decoder layers)
// on 16 servers, all with the four formats. Clusters are drawn from a seeded
// generator so that every run solves the same problems: heterogeneous memory,
// compute and links, memory well below the float32 model (so the plan must
// split and quantize), and an accuracy budget that forbids quantizing
// everything to int4.

#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include <fmt/format.h>

#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/cost/stage_work.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/plan/problem.hpp"

namespace dilemma::bench {

// facebook/opt-66b's shape: 64 decoder layers, so 66 stages.
inline model::OptConfig opt_66b_config() {
  model::OptConfig config;
  config.vocab_size = 50272;
  config.hidden_size = 9216;
  config.num_hidden_layers = 64;
  config.ffn_dim = 36864;
  config.num_attention_heads = 72;
  config.word_embed_proj_dim = 9216;
  config.do_layer_norm_before = true;
  config.max_position_embeddings = 2048;
  return config;
}

struct PlannerInstance {
  std::string name;
  model::OptConfig config;
  std::size_t servers = 0;
  std::uint64_t seed = 0;
};

// Memory totals `memory_share` of the float32 model (weights and KV caches),
// split unevenly; compute spans a 4× range; a full mesh of links from 50
// Mbit/s to 1 Gbit/s; the user's phone reaches two servers.
inline plan::Problem make_problem(const PlannerInstance& spec, cost::Objective objective, double memory_share = 0.45,
                                  double budget_share = 0.3) {
  std::mt19937_64 engine(spec.seed);
  auto uniform = [&](double low, double high) { return std::uniform_real_distribution<double>(low, high)(engine); };
  const cost::Request request{128, 32, 1};
  const quant::QuantScheme scheme;

  double f32_bytes = 0.0;
  for (std::size_t s = 0; s < static_cast<std::size_t>(spec.config.num_stages()); ++s) {
    f32_bytes += cost::weight_bytes(cost::stage_shape(spec.config, s), quant::Format::f32, scheme) +
                 cost::kv_cache_bytes(spec.config, s, request.prompt_tokens + request.new_tokens);
  }
  edge::Cluster cluster;
  cluster.name = fmt::format("{}-servers", spec.servers);
  std::vector<double> shares;
  double share_sum = 0.0;
  for (std::size_t j = 0; j < spec.servers; ++j) share_sum += shares.emplace_back(uniform(0.5, 1.5));
  for (std::size_t j = 0; j < spec.servers; ++j) {
    edge::Server server;
    server.name = fmt::format("edge-{}", j);
    server.memory_bytes = f32_bytes * memory_share * shares[j] / share_sum;
    const double speed = uniform(1.0, 4.0);
    server.set_peak_flops(speed * 25e9);
    server.memory_bandwidth = speed * 5e9;
    server.stage_overhead_seconds = 20e-6;
    cluster.servers.push_back(std::move(server));
  }
  for (std::size_t a = 0; a < spec.servers; ++a) {
    for (std::size_t b = a + 1; b < spec.servers; ++b) {
      cluster.links.push_back({cluster.servers[a].name,
                               cluster.servers[b].name,
                               {std::exp(uniform(std::log(50e6 / 8), std::log(1e9 / 8))), uniform(0.5e-3, 5e-3)},
                               true});
    }
  }
  cluster.user = {"phone", false};
  cluster.links.push_back({"phone", cluster.servers[0].name, {40e6 / 8, 4e-3}, true});
  cluster.links.push_back({"phone", cluster.servers[1].name, {20e6 / 8, 6e-3}, true});

  const cost::ErrorTable errors = cost::proxy_error_table(spec.config, scheme);
  double all_int4 = 0.0;
  for (std::size_t s = 0; s < errors.errors.size(); ++s) all_int4 += *errors.error(s, quant::Format::int4);

  plan::Problem problem;
  problem.instance.cluster = cluster;
  problem.instance.objective = objective;
  problem.instance.workloads.push_back(
      {cost::analytic_costs(spec.config, cluster, request, errors, {scheme}, spec.name), budget_share * all_int4, 1.0});
  return problem;
}

}  // namespace dilemma::bench
