#pragma once
// One planning instance: a cluster, the models to place on it (each with its
// cost tables, accuracy budget and weight), and what to minimize. Everything
// the objective and the constraints of any assignment depend on, and nothing
// else: a plan file stores its instance so that the plan can be re-checked.

#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/cost/model_costs.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/error.hpp"

namespace dilemma::cost {

enum class Objective {
  latency,     // completion time of one request (P prompt tokens, N new tokens), batch 1
  throughput,  // busy time of the busiest server or link per request, with requests pipelined
};

inline std::string_view objective_name(Objective objective) {
  return objective == Objective::latency ? "latency" : "throughput";
}

inline Objective parse_objective(std::string_view name, std::string_view what = "objective") {
  if (name == "latency") return Objective::latency;
  if (name == "throughput") return Objective::throughput;
  dilemma::detail::fail("{}: unknown objective \"{}\" (expected latency or throughput)", what, name);
}

struct Workload {
  ModelCosts costs;
  // ε: Σ_stages E[stage][format] must not exceed it; infinity = no budget.
  double accuracy_budget = std::numeric_limits<double>::infinity();
  // Latency: the weight of this model's completion time in the objective's
  // sum. Throughput: its share of the requests in the stream.
  double weight = 1.0;
};

struct Instance {
  edge::Cluster cluster;
  std::vector<Workload> workloads;
  Objective objective = Objective::latency;

  void validate(const std::string& what = "instance") const;
  nlohmann::json to_json() const;
  static Instance from_json(const nlohmann::json& json, const std::string& what = "instance");
};

// The cluster's links as a dense node × node table, looked up in the inner
// loops of evaluation, formulation and enumeration.
class LinkTable {
 public:
  explicit LinkTable(const edge::Cluster& cluster) : nodes_(cluster.node_count()), links_(nodes_ * nodes_) {
    for (std::size_t a = 0; a < nodes_; ++a) {
      for (std::size_t b = 0; b < nodes_; ++b) {
        if (a != b) links_[a * nodes_ + b] = cluster.link(a, b);
      }
    }
  }
  std::size_t nodes() const { return nodes_; }
  // Messages between stages on one node cost nothing.
  bool connected(std::size_t from, std::size_t to) const {
    return from == to || links_[from * nodes_ + to].has_value();
  }
  // Latency + bytes / bandwidth, 0 on one node; nullopt without a link.
  std::optional<double> transfer_seconds(std::size_t from, std::size_t to, double bytes) const {
    if (from == to) return 0.0;
    const auto& link = links_[from * nodes_ + to];
    if (!link) return std::nullopt;
    return link->transfer_seconds(bytes);
  }
  // How long the link is occupied: bytes / bandwidth (latency is propagation,
  // during which the link can carry other messages).
  std::optional<double> busy_seconds(std::size_t from, std::size_t to, double bytes) const {
    if (from == to) return 0.0;
    const auto& link = links_[from * nodes_ + to];
    if (!link) return std::nullopt;
    return bytes / link->bandwidth;
  }

 private:
  std::size_t nodes_;
  std::vector<std::optional<edge::Link>> links_;
};

inline void Instance::validate(const std::string& what) const {
  using dilemma::detail::fail;
  cluster.validate(what + ": cluster");
  if (workloads.empty()) fail("{}: no models to place", what);
  for (std::size_t m = 0; m < workloads.size(); ++m) {
    const Workload& workload = workloads[m];
    const std::string model = fmt::format("{}: model {} (\"{}\")", what, m, workload.costs.name);
    workload.costs.validate(cluster.servers.size(), model);
    if (!(workload.accuracy_budget >= 0.0))
      fail("{}: the accuracy budget must be >= 0, got {}", model, workload.accuracy_budget);
    if (!(workload.weight > 0.0) || !std::isfinite(workload.weight)) {
      fail("{}: the weight must be positive and finite, got {}", model, workload.weight);
    }
    for (std::size_t other = 0; other < m; ++other) {
      if (workloads[other].costs.name == workload.costs.name) {
        fail("{}: two models are named \"{}\"; give copies distinct names", what, workload.costs.name);
      }
    }
  }
}

inline nlohmann::json Instance::to_json() const {
  nlohmann::json models = nlohmann::json::array();
  for (const Workload& workload : workloads) {
    models.push_back(
        {{"accuracy_budget",
          std::isfinite(workload.accuracy_budget) ? nlohmann::json(workload.accuracy_budget) : nlohmann::json(nullptr)},
         {"weight", workload.weight},
         {"costs", workload.costs.to_json()}});
  }
  return {{"objective", objective_name(objective)}, {"cluster", cluster.to_json()}, {"models", models}};
}

inline Instance Instance::from_json(const nlohmann::json& json, const std::string& what) {
  using dilemma::detail::fail;
  if (!json.is_object()) fail("{}: expected an object, got {}", what, json.type_name());
  Instance instance;
  instance.objective = parse_objective(edge::detail::require_string(json, "objective", what), what + ".objective");
  instance.cluster = edge::Cluster::from_json(edge::detail::require(json, "cluster", what), what + ".cluster");
  const auto& models = edge::detail::require(json, "models", what);
  if (!models.is_array()) fail("{}.models: expected an array", what);
  for (std::size_t m = 0; m < models.size(); ++m) {
    const std::string where = fmt::format("{}.models[{}]", what, m);
    Workload workload;
    if (!models[m].is_object()) fail("{}: expected an object, got {}", where, models[m].dump());
    if (auto it = models[m].find("accuracy_budget"); it != models[m].end() && !it->is_null()) {
      if (!it->is_number()) fail("{}.accuracy_budget: expected a number or null, got {}", where, it->dump());
      workload.accuracy_budget = it->get<double>();
    }
    const auto& weight = edge::detail::require(models[m], "weight", where);
    if (!weight.is_number()) fail("{}.weight: expected a number, got {}", where, weight.dump());
    workload.weight = weight.get<double>();
    workload.costs = ModelCosts::from_json(edge::detail::require(models[m], "costs", where), where + ".costs");
    instance.workloads.push_back(std::move(workload));
  }
  instance.validate(what);
  return instance;
}

}  // namespace dilemma::cost
