#pragma once
// Simulated annealing over assignments: a heuristic that improves a plan by
// moving stages between servers and formats. On bench_planner's largest
// instance (66 stages on 16 servers) CBC finds no plan in 30 s, and greedy's,
// the fallback until then, was 54 % slower than the best CBC found in a
// minute; annealing from greedy's finds a better one than that in half a
// second (docs/performance.md, "Annealing"). plan::solve anneals when the time
// limit stops CBC before it proves its incumbent optimal.
//
// The search scores an assignment in O(stages + servers) from tables laid out
// once (detail::AssignmentScorer). Constraints it may break on the way
// (memory, budgets, contiguity, max_servers, missing links) are penalized, so
// that it can pass through assignments that overfill a server; only those
// that break none are kept as the best, and make_plan checks the result with
// plan::evaluate, the reference, before it is returned.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/cost/messages.hpp"
#include "dilemma/error.hpp"
#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/plan/problem.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::plan {

struct AnnealingOptions {
  // Moves tried per stage of all models together: the search's length, so
  // that its result does not depend on the machine's speed.
  std::int64_t moves_per_stage = 20000;
  std::uint64_t seed = 1;
};

namespace detail {

// An assignment as one candidate index per stage of each model
// (candidate_set's order).
using CandidateChoice = std::vector<std::vector<std::uint32_t>>;

// How far an assignment is from the problem's constraints (0: it meets them
// all), and its objective with missing links counted as free.
struct Score {
  double objective = 0.0;
  double excess = 0.0;
  bool feasible() const { return excess == 0.0; }
};

// Scores assignments as cost::evaluate + option_violations would, from
// tables built once: per candidate its busy time, memory and error; per model
// and pair of nodes the seconds and link occupancy of each kind of message.
class AssignmentScorer {
 public:
  AssignmentScorer(const Problem& problem, const Candidates& candidates)
      : latency_(problem.instance.objective == cost::Objective::latency),
        servers_(problem.instance.cluster.servers.size()),
        nodes_(problem.instance.cluster.node_count()),
        user_(problem.instance.cluster.user_node()),
        contiguous_(problem.options.contiguous),
        max_servers_(problem.options.max_servers) {
    const cost::Instance& instance = problem.instance;
    const cost::LinkTable links(instance.cluster);
    for (const edge::Server& server : instance.cluster.servers) capacity_.push_back(server.memory_bytes);
    for (std::size_t m = 0; m < instance.workloads.size(); ++m) {
      const cost::Workload& workload = instance.workloads[m];
      const cost::ModelCosts& costs = workload.costs;
      ModelTables model;
      model.weight = workload.weight;
      model.budget = workload.accuracy_budget;
      double largest_error = 0.0;
      model.decodes = costs.request.decode_steps() > 0;
      for (std::size_t s = 0; s < costs.stages.size(); ++s) {
        std::vector<CandidateCosts>& stage = model.stages.emplace_back();
        std::vector<std::int32_t>& index = model.index.emplace_back(servers_ * formats, -1);
        for (const cost::Placement& p : candidates[m][s]) {
          index[p.server * formats + cost::format_index(p.format)] = static_cast<std::int32_t>(stage.size());
          stage.push_back({p, busy_seconds(costs, s, p), costs.memory_bytes(s, p.format), costs.error(s, p.format)});
          largest_error = std::max(largest_error, stage.back().error);
        }
      }
      model.budget_scale = model.budget > 0.0 ? model.budget : (largest_error > 0.0 ? largest_error : 1.0);

      // One message kind's cost per ordered pair of nodes.
      auto table = [&](const cost::Message& message) {
        LinkCosts result(nodes_ * nodes_);
        for (std::size_t a = 0; a < nodes_; ++a) {
          for (std::size_t b = 0; b < nodes_; ++b) result[a * nodes_ + b] = cost::link_cost(links, a, b, message);
        }
        return result;
      };
      // Boundary s → s + 1: the prefill's rows once, then one token's
      // activations in each decode step; the rows differ only into the head.
      for (std::size_t s = 0; s + 1 < costs.stages.size(); ++s) {
        const auto rows = static_cast<double>(costs.prefill_rows_into(s + 1));
        auto found = std::find(model.boundary_rows.begin(), model.boundary_rows.end(), rows);
        if (found == model.boundary_rows.end()) {
          model.boundary_rows.push_back(rows);
          LinkCosts& boundary = model.boundary_tables.emplace_back(nodes_ * nodes_);
          for (std::size_t a = 0; a < nodes_; ++a) {
            for (std::size_t b = 0; b < nodes_; ++b) {
              boundary[a * nodes_ + b] = cost::boundary_link_cost(links, costs, a, b, s + 1);
            }
          }
          found = model.boundary_rows.end() - 1;
        }
        model.boundary_table.push_back(static_cast<std::size_t>(found - model.boundary_rows.begin()));
      }
      model.prompt = table(cost::prompt_message(costs));
      model.feedback = table(cost::fed_back_token_message(costs));
      model.tokens_out = table(cost::generated_tokens_message(costs));
      models_.push_back(std::move(model));
    }
  }

  std::size_t models() const { return models_.size(); }
  std::size_t server_count() const { return servers_; }
  std::size_t stages(std::size_t m) const { return models_[m].stages.size(); }
  std::size_t candidates(std::size_t m, std::size_t s) const { return models_[m].stages[s].size(); }
  const cost::Placement& placement(std::size_t m, std::size_t s, std::uint32_t c) const {
    return models_[m].stages[s][c].placement;
  }
  // The candidate index of (server, format) for stage s of model m, if the
  // stage may take it.
  std::optional<std::uint32_t> find(std::size_t m, std::size_t s, std::size_t server, quant::Format format) const {
    const std::int32_t c = models_[m].index[s][server * formats + cost::format_index(format)];
    if (c < 0) return std::nullopt;
    return static_cast<std::uint32_t>(c);
  }

  Score score(const CandidateChoice& choice) {
    Score result;
    memory_.assign(servers_, 0.0);
    server_busy_.assign(servers_, 0.0);
    for (std::size_t k : touched_links_) link_busy_[k] = 0.0;
    touched_links_.clear();
    if (link_busy_.empty()) link_busy_.assign(nodes_ * nodes_, 0.0);
    used_.assign(servers_, false);

    for (std::size_t m = 0; m < models_.size(); ++m) {
      const ModelTables& model = models_[m];
      const std::vector<std::uint32_t>& stages = choice[m];
      double completion = 0.0, error = 0.0;
      if (contiguous_) entries_.assign(servers_, 0);
      std::size_t previous = user_;
      for (std::size_t s = 0; s < stages.size(); ++s) {
        const CandidateCosts& c = model.stages[s][stages[s]];
        const std::size_t j = c.placement.server;
        completion += c.busy_seconds;
        server_busy_[j] += model.weight * c.busy_seconds;
        memory_[j] += c.memory_bytes;
        error += c.error;
        used_[j] = true;
        if (s > 0 && previous != j) {
          send(model.boundary_tables[model.boundary_table[s - 1]], previous, j, model.weight, completion, result);
        }
        if (contiguous_ && (s == 0 || previous != j) && ++entries_[j] > 1) result.excess += 1.0;
        previous = j;
      }
      const std::size_t first = model.stages.front()[stages.front()].placement.server;
      send(model.prompt, user_, first, model.weight, completion, result);
      if (model.decodes) send(model.feedback, previous, first, model.weight, completion, result);
      send(model.tokens_out, previous, user_, model.weight, completion, result);
      result.excess += std::max(0.0, error - model.budget * (1.0 + cost::feasibility_tolerance)) / model.budget_scale;
      if (latency_) result.objective += model.weight * completion;
    }
    std::size_t used = 0;
    for (std::size_t j = 0; j < servers_; ++j) {
      used += used_[j] ? 1 : 0;
      result.excess += std::max(0.0, memory_[j] - capacity_[j] * (1.0 + cost::feasibility_tolerance)) / capacity_[j];
      if (!latency_) result.objective = std::max(result.objective, server_busy_[j]);
    }
    if (!latency_) {
      for (std::size_t k : touched_links_) result.objective = std::max(result.objective, link_busy_[k]);
    }
    if (max_servers_ && used > *max_servers_) result.excess += static_cast<double>(used - *max_servers_);
    return result;
  }

 private:
  struct CandidateCosts {
    cost::Placement placement;
    double busy_seconds = 0.0;  // prefill + decode steps
    double memory_bytes = 0.0;
    double error = 0.0;
  };
  using LinkCosts = std::vector<std::optional<cost::LinkCost>>;
  static constexpr std::size_t formats = quant::all_formats.size();
  struct ModelTables {
    double weight = 1.0, budget = 0.0, budget_scale = 1.0;
    bool decodes = true;  // more than one new token: tokens go back to the embedding
    std::vector<std::vector<CandidateCosts>> stages;
    std::vector<std::vector<std::int32_t>> index;  // per stage, [server · formats + format] → candidate or −1
    std::vector<double> boundary_rows;
    std::vector<LinkCosts> boundary_tables;
    std::vector<std::size_t> boundary_table;  // per boundary s → s + 1
    LinkCosts prompt, feedback, tokens_out;
  };

  // A message kind from node a to node b (nothing on one node; a missing link
  // is one unit of excess).
  void send(const LinkCosts& table, std::size_t a, std::size_t b, double weight, double& completion, Score& score) {
    if (a == b) return;
    const std::size_t k = a * nodes_ + b;
    const auto& cost = table[k];
    if (!cost) {
      score.excess += 1.0;
      return;
    }
    completion += cost->seconds;
    if (latency_) return;  // link occupancy only matters to the throughput objective
    if (link_busy_[k] == 0.0) touched_links_.push_back(k);
    link_busy_[k] += weight * cost->busy;
  }

  bool latency_;
  std::size_t servers_, nodes_, user_;
  bool contiguous_;
  std::optional<std::size_t> max_servers_;
  std::vector<double> capacity_;
  std::vector<ModelTables> models_;
  // Scratch space of score(), kept to avoid allocations.
  std::vector<double> memory_, server_busy_, link_busy_;
  std::vector<std::size_t> touched_links_;
  std::vector<bool> used_;
  std::vector<int> entries_;
};

// One annealing run from `choice`: returns the best assignment that meets
// every constraint, if the search met one.
//
// Energy = objective + penalty · reference · excess, where reference is the
// start's objective: an assignment 10 % over a server's memory pays as much
// as a plan 10 % · penalty slower. The temperature falls geometrically from
// a tenth of the reference to a millionth of it. Starting at 3 % instead gave
// worse plans on bench_planner's opt-350m-10 (2.20-2.32 s against 2.18-2.20 s
// over five seeds) and about the same on opt-350m-5 (docs/performance.md,
// "Annealing").
class Annealer {
 public:
  Annealer(AssignmentScorer& scorer, std::uint64_t seed) : scorer_(scorer), engine_(seed) {
    for (std::size_t m = 0; m < scorer.models(); ++m) total_stages_ += scorer.stages(m);
  }

  std::optional<CandidateChoice> run(CandidateChoice choice, std::int64_t moves) {
    Score current = scorer_.score(choice);
    const double reference = current.objective > 0.0 ? current.objective : 1.0;
    std::optional<CandidateChoice> best;
    double best_objective = std::numeric_limits<double>::infinity();
    auto remember = [&](const Score& score) {
      if (score.feasible() && score.objective < best_objective) {
        best_objective = score.objective;
        best = choice;
      }
    };
    remember(current);
    const double start_temperature = 0.1 * reference, end_temperature = 1e-6 * reference;
    const double cooling =
        std::pow(end_temperature / start_temperature, 1.0 / static_cast<double>(std::max<std::int64_t>(moves, 1)));
    double temperature = start_temperature;
    auto energy = [&](const Score& score) { return score.objective + penalty * reference * score.excess; };
    for (std::int64_t move = 0; move < moves; ++move, temperature *= cooling) {
      changed_.clear();
      if (!propose(choice)) continue;
      const Score next = scorer_.score(choice);
      const double delta = energy(next) - energy(current);
      if (delta <= 0.0 || uniform() < std::exp(-delta / temperature)) {
        current = next;
        remember(current);
      } else {
        for (auto it = changed_.rbegin(); it != changed_.rend(); ++it) choice[it->model][it->stage] = it->before;
      }
    }
    return best;
  }

 private:
  static constexpr double penalty = 10.0;

  struct Change {
    std::size_t model, stage;
    std::uint32_t before;
  };

  std::size_t below(std::size_t n) { return static_cast<std::size_t>(engine_() % n); }
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  void set(CandidateChoice& choice, std::size_t m, std::size_t s, std::uint32_t c) {
    if (choice[m][s] == c) return;
    changed_.push_back({m, s, choice[m][s]});
    choice[m][s] = c;
  }

  // Stage s onto `server`, in its current format if it may run there, else
  // in a random one; false if it cannot run there at all.
  bool move_to(CandidateChoice& choice, std::size_t m, std::size_t s, std::size_t server) {
    const cost::Placement& now = scorer_.placement(m, s, choice[m][s]);
    if (auto c = scorer_.find(m, s, server, now.format)) {
      set(choice, m, s, *c);
      return true;
    }
    const std::size_t first = below(quant::all_formats.size());
    for (std::size_t k = 0; k < quant::all_formats.size(); ++k) {
      if (auto c = scorer_.find(m, s, server, quant::all_formats[(first + k) % quant::all_formats.size()])) {
        set(choice, m, s, *c);
        return true;
      }
    }
    return false;
  }

  std::size_t server_of(const CandidateChoice& choice, std::size_t m, std::size_t s) const {
    return scorer_.placement(m, s, choice[m][s]).server;
  }

  // Changes `choice` by one random move, recording what it changed; false if
  // the move drawn changed nothing.
  bool propose(CandidateChoice& choice) {
    // A stage drawn uniformly over all models' stages.
    std::size_t s = below(total_stages_), m = 0;
    while (s >= scorer_.stages(m)) s -= scorer_.stages(m++);
    const std::size_t n = scorer_.stages(m);
    const double kind = uniform();
    if (kind < 0.4) {  // the stage to any placement it may take
      const std::size_t count = scorer_.candidates(m, s);
      if (count < 2) return false;
      const auto c = static_cast<std::uint32_t>(below(count - 1));
      set(choice, m, s, c >= choice[m][s] ? c + 1 : c);
    } else if (kind < 0.65) {  // the boundary after s one stage earlier or later
      if (s + 1 >= n || server_of(choice, m, s) == server_of(choice, m, s + 1)) return false;
      if (uniform() < 0.5) {
        move_to(choice, m, s, server_of(choice, m, s + 1));
      } else {
        move_to(choice, m, s + 1, server_of(choice, m, s));
      }
    } else if (kind < 0.85) {  // the start or end of s's run to another server
      const std::size_t from = server_of(choice, m, s);
      std::size_t begin = s, end = s + 1;
      while (begin > 0 && server_of(choice, m, begin - 1) == from) --begin;
      while (end < n && server_of(choice, m, end) == from) ++end;
      const std::size_t length = 1 + below(end - begin);
      if (uniform() < 0.5) {
        end = begin + length;
      } else {
        begin = end - length;
      }
      const std::size_t servers = scorer_.server_count();
      if (servers < 2) return false;
      std::size_t to = below(servers - 1);
      if (to >= from) ++to;
      for (std::size_t t = begin; t < end; ++t) {
        if (!move_to(choice, m, t, to)) return !changed_.empty();
      }
    } else {  // two stages exchange their formats
      const std::size_t t = below(n);
      const cost::Placement a = scorer_.placement(m, s, choice[m][s]);
      const cost::Placement b = scorer_.placement(m, t, choice[m][t]);
      if (a.format == b.format) return false;
      const auto to_a = scorer_.find(m, s, a.server, b.format);
      const auto to_b = scorer_.find(m, t, b.server, a.format);
      if (!to_a || !to_b) return false;
      set(choice, m, s, *to_a);
      set(choice, m, t, *to_b);
    }
    return !changed_.empty();
  }

  AssignmentScorer& scorer_;
  std::mt19937_64 engine_;
  std::size_t total_stages_ = 0;
  std::vector<Change> changed_;
};

}  // namespace detail

// The best plan found by annealing from `start`: one assignment per model,
// e.g. greedy's, or none, in which case every stage starts on its first
// candidate, as do stages whose placement the options forbid. Status
// feasible, or no_plan if the search met no assignment that satisfies every
// constraint.
inline Plan anneal(const Problem& problem, std::span<const cost::Assignment> start,
                   const AnnealingOptions& options = {}) {
  problem.validate();
  const auto started = std::chrono::steady_clock::now();
  const CandidateSet candidates = candidate_set(problem);
  if (!candidates.empty_reasons.empty()) {
    return no_plan("annealing", Status::no_plan, problem, candidates.empty_reasons,
                   detail::heuristic_report("annealing", "no_plan", started));
  }
  detail::AssignmentScorer scorer(problem, candidates.placements);
  if (!start.empty() && start.size() != scorer.models()) {
    dilemma::detail::fail("anneal: a start of {} assignments for {} models", start.size(), scorer.models());
  }
  detail::CandidateChoice choice(scorer.models());
  for (std::size_t m = 0; m < scorer.models(); ++m) {
    choice[m].assign(scorer.stages(m), 0);
    if (start.empty()) continue;
    if (start[m].size() != scorer.stages(m)) {
      dilemma::detail::fail("anneal: the start of model \"{}\" has {} stages, the model has {}",
                            problem.instance.workloads[m].costs.name, start[m].size(), scorer.stages(m));
    }
    for (std::size_t s = 0; s < scorer.stages(m); ++s) {
      const cost::Placement& p = start[m][s];
      if (p.server >= problem.instance.cluster.servers.size()) continue;
      if (auto c = scorer.find(m, s, p.server, p.format)) choice[m][s] = *c;
    }
  }
  std::int64_t stages = 0;
  for (std::size_t m = 0; m < scorer.models(); ++m) stages += static_cast<std::int64_t>(scorer.stages(m));
  detail::Annealer annealer(scorer, options.seed);
  const std::optional<detail::CandidateChoice> best = annealer.run(std::move(choice), options.moves_per_stage * stages);
  if (!best) {
    return no_plan("annealing", Status::no_plan, problem,
                   {"annealing found no assignment that meets every constraint, which does not prove that none "
                    "exists (plan::solve, `dilemma plan --method dilemma`, proves it and says why)"},
                   detail::heuristic_report("annealing", "no_plan", started));
  }
  std::vector<cost::Assignment> assignments(scorer.models());
  for (std::size_t m = 0; m < scorer.models(); ++m) {
    for (std::size_t s = 0; s < scorer.stages(m); ++s) assignments[m].push_back(scorer.placement(m, s, (*best)[m][s]));
  }
  SolverReport report = detail::heuristic_report("annealing", "done", started);
  report.objective = evaluate(problem, assignments).objective;
  return make_plan("annealing", Status::feasible, problem, std::move(assignments), report);
}

// Annealing from greedy's plan, or, when greedy finds none, from every
// stage's first candidate.
inline Plan anneal(const Problem& problem, const AnnealingOptions& options = {}) {
  const Plan start = greedy(problem);
  Plan annealed = anneal(problem, start.assignments, options);
  annealed.solver.seconds += start.solver.seconds;
  return annealed;
}

}  // namespace dilemma::plan
