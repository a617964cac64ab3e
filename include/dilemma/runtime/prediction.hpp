#pragma once
// What the plan's cost model predicts for the request a run actually made:
// the plan's tables are for P₀ prompt and N₀ new tokens, a run's request may
// differ. Prefill times are rescaled by P / P₀ as measured_costs() does (the
// head, which computes one row, is not), decode times kept, activation bytes
// set to the run's wire format, and the deployment's assignment evaluated
// with cost::evaluate. When the run uses another cluster than the plan's,
// each server takes the times of the plan's server of the same name, scaled
// by their speed factors.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/runtime/deployment.hpp"
#include "dilemma/runtime/message.hpp"

namespace dilemma::runtime {

struct Prediction {
  cost::ModelCosts costs;  // the tables for this request, indexed by the deployment's servers
  cost::ModelEvaluation evaluation;
};

inline Prediction predict(const plan::Plan& plan, std::size_t model, const Deployment& deployment,
                          std::int64_t prompt_tokens, std::int64_t new_tokens, WireFormat wire) {
  const cost::Instance& planned = plan.problem.instance;
  cost::ModelCosts costs = planned.workloads.at(model).costs;
  const double prefill_scale =
      static_cast<double>(prompt_tokens) / static_cast<double>(costs.request.prompt_tokens);
  costs.request = {prompt_tokens, new_tokens, 1};
  costs.activation_bytes = static_cast<double>(deployment.config.hidden_size) * static_cast<double>(wire_value_bytes(wire));

  const edge::Cluster& cluster = deployment.cluster;
  for (std::size_t s = 0; s < costs.stages.size(); ++s) {
    cost::StageCosts& stage = costs.stages[s];
    const bool head = s + 1 == costs.stages.size();
    std::vector<std::array<std::optional<cost::StageTimes>, cost::format_count>> times(cluster.servers.size());
    for (std::size_t k = 0; k < cluster.servers.size(); ++k) {
      const auto j = planned.cluster.find_server(cluster.servers[k].name);
      if (!j) continue;
      const double speed = planned.cluster.servers[*j].speed_factor / cluster.servers[k].speed_factor;
      for (std::size_t f = 0; f < cost::format_count; ++f) {
        if (const auto& t = stage.times[*j][f]) {
          times[k][f] = cost::StageTimes{t->prefill_seconds * (head ? 1.0 : prefill_scale) * speed,
                                         t->decode_seconds * speed};
        }
      }
    }
    stage.times = std::move(times);
  }
  cost::Instance instance;
  instance.cluster = cluster;
  instance.objective = cost::Objective::latency;
  instance.workloads.push_back({costs, std::numeric_limits<double>::infinity(), 1.0});
  const std::vector<cost::Assignment> assignments{deployment.stages};
  cost::Evaluation evaluation = cost::evaluate(instance, assignments);
  return {std::move(costs), std::move(evaluation.models.front())};
}

}  // namespace dilemma::runtime
