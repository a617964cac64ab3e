#pragma once
// Seeded random planning problems small enough to enumerate: heterogeneous
// servers (memory, speed, formats), partial and asymmetric links, a user at a
// server or on a node of its own, cost tables with sizes and errors ordered as
// real formats order them, tight to loose budgets, options, and sometimes two
// models sharing the servers.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/cost/instance.hpp"
#include "dilemma/plan/problem.hpp"

namespace dilemma::testing {

class Random {
 public:
  explicit Random(std::uint64_t seed) : engine_(seed) {}
  double uniform(double low, double high) { return std::uniform_real_distribution<double>(low, high)(engine_); }
  double log_uniform(double low, double high) { return std::exp(uniform(std::log(low), std::log(high))); }
  std::size_t index(std::size_t count) { return std::uniform_int_distribution<std::size_t>(0, count - 1)(engine_); }
  bool chance(double probability) { return uniform(0.0, 1.0) < probability; }

 private:
  std::mt19937_64 engine_;
};

struct RandomShape {
  std::size_t servers = 3;
  std::size_t stages = 4;  // per model
  std::size_t models = 1;
  bool options = true;  // draw pins, format limits, max_servers, contiguity
  // Every decoder layer a copy of the first, as under the analytic costs and
  // a proxy error table: the formulation counts such layers (LayerCounts).
  bool identical_layers = false;
};

// Cost tables for a model of `stage_count` stages on `servers` servers.
inline cost::ModelCosts random_costs(Random& random, const std::string& name, std::size_t stage_count,
                                     const std::vector<double>& speeds, bool identical_layers = false) {
  cost::ModelCosts costs;
  costs.name = name;
  costs.source = "random";
  costs.request.prompt_tokens = static_cast<std::int64_t>(1 + random.index(64));
  costs.request.new_tokens = static_cast<std::int64_t>(1 + random.index(16));
  costs.activation_bytes = random.log_uniform(256.0, 16384.0);
  costs.token_id_bytes = 4.0;
  constexpr std::array<double, 4> size_ratio = {1.0, 0.5, 0.27, 0.15};
  for (std::size_t s = 0; s < stage_count; ++s) {
    cost::StageCosts stage;
    stage.name = s == 0 ? "embedding" : s + 1 == stage_count ? "head" : fmt::format("layer.{}", s - 1);
    stage.f32_weight_bytes = random.log_uniform(1e6, 1e7);
    stage.kv_cache_bytes = s == 0 || s + 1 == stage_count ? 0.0 : random.uniform(0.0, 0.1) * stage.f32_weight_bytes;
    double error = 0.0;
    for (std::size_t f = 0; f < 4; ++f) {
      // Errors grow with coarser formats; f32 is exact.
      if (f > 0) error += random.log_uniform(1e-4, 1e-2) * static_cast<double>(f * f);
      stage.formats[f] = cost::FormatCosts{stage.f32_weight_bytes * size_ratio[f] * random.uniform(0.95, 1.05), error};
    }
    const double prefill = random.log_uniform(1e-4, 1e-1), decode = prefill * random.uniform(0.01, 0.3);
    for (double speed : speeds) {
      std::array<std::optional<cost::StageTimes>, 4> times{};
      for (std::size_t f = 0; f < 4; ++f) {
        const double factor = random.uniform(0.6, 1.4) / speed;
        times[f] = cost::StageTimes{prefill * factor, decode * factor};
      }
      stage.times.push_back(times);
    }
    if (identical_layers && s > 1 && s + 1 < stage_count) {
      stage.times = costs.stages[1].times;
      stage.formats = costs.stages[1].formats;
      stage.f32_weight_bytes = costs.stages[1].f32_weight_bytes;
      stage.kv_cache_bytes = costs.stages[1].kv_cache_bytes;
    }
    costs.stages.push_back(std::move(stage));
  }
  return costs;
}

inline plan::Problem random_problem(std::uint64_t seed, const RandomShape& shape) {
  Random random(seed);
  plan::Problem problem;
  cost::Instance& instance = problem.instance;
  edge::Cluster& cluster = instance.cluster;
  cluster.name = fmt::format("random-{}", seed);

  std::vector<double> speeds;
  for (std::size_t j = 0; j < shape.servers; ++j) {
    edge::Server server;
    server.name = fmt::format("s{}", j);
    server.memory_bytes = 1.0;  // set below, relative to the models' sizes
    if (random.chance(0.3)) {
      server.formats.clear();
      for (quant::Format format : quant::all_formats) {
        if (random.chance(0.6)) server.formats.push_back(format);
      }
      if (server.formats.empty()) server.formats.push_back(quant::Format::int8);
    }
    speeds.push_back(random.log_uniform(0.2, 5.0));
    cluster.servers.push_back(std::move(server));
  }
  const bool separate_user = random.chance(0.4);
  cluster.user =
      separate_user ? edge::User{"user", false} : edge::User{cluster.servers[random.index(shape.servers)].name, true};
  auto random_link = [&] { return edge::Link{random.log_uniform(1e5, 1e9), random.log_uniform(1e-5, 1e-2)}; };
  for (std::size_t a = 0; a < shape.servers; ++a) {
    for (std::size_t b = a + 1; b < shape.servers; ++b) {
      if (random.chance(0.2)) continue;  // no link
      if (random.chance(0.2)) {
        cluster.links.push_back({cluster.servers[a].name, cluster.servers[b].name, random_link(), false});
        if (random.chance(0.5))
          cluster.links.push_back({cluster.servers[b].name, cluster.servers[a].name, random_link(), false});
      } else {
        cluster.links.push_back({cluster.servers[a].name, cluster.servers[b].name, random_link(), true});
      }
    }
    if (separate_user && (a == 0 || random.chance(0.6)))
      cluster.links.push_back({"user", cluster.servers[a].name, random_link(), true});
  }

  double total_f32 = 0.0;
  for (std::size_t m = 0; m < shape.models; ++m) {
    cost::Workload workload;
    workload.costs = random_costs(random, fmt::format("model{}", m), shape.stages, speeds, shape.identical_layers);
    for (std::size_t s = 0; s < shape.stages; ++s) {
      const auto& stage = workload.costs.stages[s];
      for (std::size_t j = 0; j < shape.servers; ++j) {
        for (quant::Format format : quant::all_formats) {
          if (!cluster.servers[j].runs(format)) workload.costs.stages[s].times[j][cost::format_index(format)].reset();
        }
      }
      total_f32 += stage.f32_weight_bytes + stage.kv_cache_bytes;
    }
    double worst_error = 0.0;
    for (const auto& stage : workload.costs.stages) worst_error += stage.formats[3]->error;
    const double budget_draw = random.uniform(0.0, 1.0);
    workload.accuracy_budget = budget_draw < 0.2   ? std::numeric_limits<double>::infinity()
                               : budget_draw < 0.3 ? 0.0
                                                   : worst_error * random.uniform(0.0, 1.1);
    workload.weight = shape.models > 1 ? random.uniform(0.5, 2.0) : 1.0;
    instance.workloads.push_back(std::move(workload));
  }
  // From tight (a mix of quantization and splitting is needed, or nothing
  // fits) to loose (one server holds everything in f32).
  const double tightness = random.uniform(0.12, 1.6);
  for (auto& server : cluster.servers) server.memory_bytes = total_f32 * tightness * random.uniform(0.5, 1.0);
  instance.objective = random.chance(0.25) ? cost::Objective::throughput : cost::Objective::latency;

  if (shape.options) {
    auto& options = problem.options;
    if (random.chance(0.2)) options.contiguous = true;
    if (random.chance(0.2)) options.max_servers = 1 + random.index(shape.servers);
    if (random.chance(0.15)) {
      const std::size_t m = random.index(shape.models);
      const auto& costs = instance.workloads[m].costs;
      plan::Pin pin{costs.name, costs.stages[random.index(costs.stages.size())].name,
                    cluster.servers[random.index(shape.servers)].name, std::nullopt};
      if (random.chance(0.5)) pin.format = quant::all_formats[random.index(4)];
      options.pins.push_back(pin);
    }
    if (random.chance(0.1)) options.formats = {quant::Format::f16, quant::Format::int8, quant::Format::int4};
    if (random.chance(0.1)) options.server_formats[cluster.servers[0].name] = {quant::Format::int4};
  }
  return problem;
}

}  // namespace dilemma::testing
