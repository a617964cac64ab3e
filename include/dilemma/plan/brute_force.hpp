#pragma once
// Exact planning by enumeration: every (server, format) the cost tables allow
// for every stage of every model, checked against every constraint, with the
// objective accumulated stage by stage and branches cut once they violate a
// constraint or cannot beat the best plan so far. Exponential, for small
// instances: it is the reference the ILP is tested against, so it computes the
// objective on its own instead of reusing the formulation or the candidates.

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/cost/messages.hpp"
#include "dilemma/error.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/plan/problem.hpp"

namespace dilemma::plan {

namespace detail {

class Enumerator {
 public:
  explicit Enumerator(const Problem& problem)
      : problem_(problem),
        instance_(problem.instance),
        cluster_(instance_.cluster),
        links_(cluster_),
        filter_(problem),
        user_(cluster_.user_node()),
        throughput_(instance_.objective == cost::Objective::throughput) {
    for (std::size_t m = 0; m < instance_.workloads.size(); ++m) {
      const auto& costs = instance_.workloads[m].costs;
      for (std::size_t s = 0; s < costs.stages.size(); ++s) {
        std::vector<cost::Placement> options;
        for (std::size_t j = 0; j < cluster_.servers.size(); ++j) {
          for (quant::Format format : quant::all_formats) {
            const cost::Placement placement{j, format};
            if (costs.stages[s].time(j, format) && filter_.format_allowed(j, format) &&
                filter_.pin_allows(m, s, placement)) {
              options.push_back(placement);
            }
          }
        }
        positions_.push_back({m, s, std::move(options)});
      }
    }
    memory_.assign(cluster_.servers.size(), 0.0);
    server_load_.assign(cluster_.servers.size(), 0.0);
    link_load_.assign(links_.nodes() * links_.nodes(), 0.0);
    users_.assign(cluster_.servers.size(), 0);
    entries_.assign(cluster_.servers.size(), 0);
    errors_.assign(instance_.workloads.size(), 0.0);
    current_.resize(instance_.workloads.size());
    for (std::size_t m = 0; m < instance_.workloads.size(); ++m) {
      current_[m].resize(instance_.workloads[m].costs.stages.size());
    }
  }

  double count() const {
    double total = 1.0;
    for (const auto& position : positions_) total *= static_cast<double>(position.options.size());
    return total;
  }

  void run() { visit(0, 0.0); }
  bool found() const { return std::isfinite(best_); }
  const std::vector<cost::Assignment>& best() const { return best_assignments_; }
  double best_objective() const { return best_; }
  std::uint64_t leaves() const { return leaves_; }

 private:
  struct Position {
    std::size_t model, stage;
    std::vector<cost::Placement> options;
  };

  double bound(double partial) const {
    if (!throughput_) return partial;
    double load = 0.0;
    for (double value : server_load_) load = std::max(load, value);
    for (double value : link_load_) load = std::max(load, value);
    return load;
  }

  // Adds what a request's messages cost on the link from `from` to `to` to
  // its load or to the completion time. Returns false without a link.
  bool transfer(std::size_t from, std::size_t to, const std::optional<cost::LinkCost>& price, double weight,
                double& partial) {
    if (!price) return false;
    if (throughput_) {
      link_load_[from * links_.nodes() + to] += weight * price->busy;
    } else {
      partial += weight * price->seconds;
    }
    return true;
  }
  bool transfer(std::size_t from, std::size_t to, const cost::Message& message, double weight, double& partial) {
    return transfer(from, to, cost::link_cost(links_, from, to, message), weight, partial);
  }

  void visit(std::size_t index, double partial) {
    if (index == positions_.size()) {
      ++leaves_;
      const double objective = bound(partial);
      if (objective < best_) {
        best_ = objective;
        best_assignments_ = current_;
      }
      return;
    }
    const Position& position = positions_[index];
    const std::size_t m = position.model, s = position.stage;
    const cost::Workload& workload = instance_.workloads[m];
    const cost::ModelCosts& costs = workload.costs;
    const std::size_t last = costs.stages.size() - 1;
    const double weight = workload.weight;
    const std::size_t previous = s > 0 ? current_[m][s - 1].server : user_;

    for (const cost::Placement& placement : position.options) {
      const std::size_t j = placement.server;
      const double memory = costs.memory_bytes(s, placement.format);
      const double error = costs.error(s, placement.format);
      if (memory_[j] + memory > cluster_.servers[j].memory_bytes * (1.0 + cost::feasibility_tolerance)) continue;
      if (errors_[m] + error > workload.accuracy_budget * (1.0 + cost::feasibility_tolerance)) continue;
      const bool enters = s == 0 || previous != j;
      if (problem_.options.contiguous && enters && entries_[j] > 0) continue;
      const bool new_server = users_[j] == 0;
      if (problem_.options.max_servers && new_server && servers_used_ + 1 > *problem_.options.max_servers) continue;

      // Snapshot the loads a throughput branch changes, to undo them.
      const std::vector<double> saved_links = throughput_ ? link_load_ : std::vector<double>();
      const double saved_server = server_load_[j];
      const double busy = busy_seconds(costs, s, placement);
      double cost = partial;
      bool linked;
      if (throughput_) {
        server_load_[j] += weight * busy;
      } else {
        cost += weight * busy;
      }
      if (s == 0) {
        linked = transfer(user_, j, cost::prompt_message(costs), weight, cost);
      } else {
        linked = transfer(previous, j, cost::boundary_link_cost(links_, costs, previous, j, s), weight, cost);
      }
      if (linked && s == last) {
        const std::size_t first = s == 0 ? j : current_[m][0].server;
        linked = transfer(j, first, cost::fed_back_token_message(costs), weight, cost) &&
                 transfer(j, user_, cost::generated_tokens_message(costs), weight, cost);
      }
      if (linked && bound(cost) < best_) {
        current_[m][s] = placement;
        memory_[j] += memory;
        errors_[m] += error;
        if (enters) ++entries_[j];
        if (new_server) ++servers_used_;
        ++users_[j];
        // A model's entries reset when the next model starts: contiguity is per model.
        std::vector<int> saved_entries;
        if (s == last) {
          saved_entries = entries_;
          std::fill(entries_.begin(), entries_.end(), 0);
        }
        visit(index + 1, cost);
        if (s == last) entries_ = saved_entries;
        --users_[j];
        if (new_server) --servers_used_;
        if (enters) --entries_[j];
        errors_[m] -= error;
        memory_[j] -= memory;
      }
      server_load_[j] = saved_server;
      if (throughput_) link_load_ = saved_links;
    }
  }

  const Problem& problem_;
  const cost::Instance& instance_;
  const edge::Cluster& cluster_;
  const cost::LinkTable links_;
  const OptionFilter filter_;
  const std::size_t user_;
  const bool throughput_;
  std::vector<Position> positions_;
  std::vector<double> memory_, server_load_, link_load_, errors_;
  std::vector<int> users_, entries_;
  std::size_t servers_used_ = 0;
  std::vector<cost::Assignment> current_, best_assignments_;
  double best_ = std::numeric_limits<double>::infinity();
  std::uint64_t leaves_ = 0;
};

}  // namespace detail

// Throws if the search space holds more than `max_assignments` assignments.
inline Plan brute_force(const Problem& problem, double max_assignments = 1e8) {
  problem.validate();
  const auto start = std::chrono::steady_clock::now();
  detail::Enumerator enumerator(problem);
  if (enumerator.count() > max_assignments) {
    dilemma::detail::fail("brute force: {:.3g} assignments exceed the limit of {:.3g}", enumerator.count(),
                          max_assignments);
  }
  enumerator.run();
  SolverReport report;
  report.solver = "enumeration";
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.nodes = static_cast<std::int64_t>(enumerator.leaves());
  if (!enumerator.found()) {
    report.status = "infeasible";
    return no_plan("brute-force", Status::infeasible, problem,
                   {fmt::format("none of the {:.0f} assignments satisfies every constraint", enumerator.count())},
                   report);
  }
  report.status = "optimal";
  report.objective = enumerator.best_objective();
  return make_plan("brute-force", Status::optimal, problem, enumerator.best(), report);
}

}  // namespace dilemma::plan
