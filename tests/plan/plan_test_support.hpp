#pragma once
// Planning problems for the bundled tiny-opt on the example clusters, and
// helpers the planning tests share.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/plan/problem.hpp"
#include "test_support.hpp"

namespace dilemma::testing {

inline std::filesystem::path example_cluster(const std::string& name) {
  return assets_dir().parent_path() / "examples" / "clusters" / (name + ".json");
}

inline model::OptConfig tiny_opt_config() { return model::OptConfig::load(model_dir("tiny-opt") / "config.json"); }

// The sum of every stage's error in `format`: the error of quantizing the whole model.
inline double whole_model_error(const cost::ErrorTable& errors, quant::Format format) {
  double sum = 0.0;
  for (std::size_t s = 0; s < errors.errors.size(); ++s) sum += *errors.error(s, format);
  return sum;
}

// tiny-opt with analytic costs and proxy errors, 128 prompt + 32 new tokens.
// Its embedding and head are 96 columns wide: integer formats can store them
// with groups of 32, not with the default 64.
inline plan::Problem tiny_opt_problem(const edge::Cluster& cluster, double accuracy_budget,
                                      const quant::QuantScheme& scheme = {}) {
  const model::OptConfig config = tiny_opt_config();
  plan::Problem problem;
  problem.instance.cluster = cluster;
  problem.instance.workloads.push_back(
      {cost::analytic_costs(config, cluster, {128, 32, 1}, cost::proxy_error_table(config, scheme), {scheme},
                            "tiny-opt"),
       accuracy_budget, 1.0});
  return problem;
}

// The OPT-350m shape on its smart-city cluster (analytic costs, proxy errors,
// 128 prompt + 32 new tokens), with a budget of `budget_share` of the
// all-int4 error.
inline plan::Problem opt_350m_city_problem(double budget_share) {
  const edge::Cluster city = edge::Cluster::load(example_cluster("smart-city-opt350m"));
  const model::OptConfig config = model::opt_350m_config();
  const cost::ErrorTable errors = cost::proxy_error_table(config);
  plan::Problem problem;
  problem.instance.cluster = city;
  problem.instance.workloads.push_back({cost::analytic_costs(config, city, {128, 32, 1}, errors, {}, "opt-350m"),
                                        budget_share * whole_model_error(errors, quant::Format::int4), 1.0});
  return problem;
}

// |a - b| relative to |b|: objectives of equal plans agree to rounding.
inline double relative_difference(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

// Whether the chain of one model returns to a server it left: two runs there.
inline bool revisits_a_server(const cost::Assignment& assignment, std::size_t servers) {
  std::vector<int> runs(servers, 0);
  for (std::size_t s = 0; s < assignment.size(); ++s) {
    runs[assignment[s].server] += s == 0 || assignment[s - 1].server != assignment[s].server;
  }
  return *std::max_element(runs.begin(), runs.end()) > 1;
}

}  // namespace dilemma::testing
