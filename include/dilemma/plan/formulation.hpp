#pragma once
// The DILEMMA integer program; docs/model.md states it in full.
//
//   x[m][s][j][f] ∈ {0,1}  stage s of model m runs on server j in format f
//   w[m][j][a][b] ∈ {0,1}  stages a..b of model m form one run on server j:
//                          the chain enters j at stage a and leaves after b
//   y[m][p][j][k] ≥ 0      the chain passes from a run on j ending at stage
//                          p − 1 to a run on k ≠ j starting at p
//   v[m][j][k]    ≥ 0      generated tokens go from the head's server j back
//                          to the embedding's server k (j = k allowed)
//
// Every stage takes one placement; each server's placements are covered by its
// runs; runs are chained by flow conservation (the runs ending at p − 1 on j
// leave through y[p][j][·], the runs starting at p on k arrive through
// y[p][·][k]). Whenever x is integral this makes w, y and v the runs and
// transfers of that placement, with no big-M constant; y and v need no
// integrality, w is declared binary only so that CBC derives cover cuts from
// the runs' memory. Only runs that fit in their server's memory at their
// smallest formats exist, and only linked pairs of servers get a y. Memory,
// the accuracy budget and the options are linear in x and w; the objective is
// the completion time of one request or, for throughput, a variable bounded
// below by every server's and every link's busy time per request.
//
// Why runs rather than one transfer variable per pair of consecutive stages:
// the relaxation of that simpler program spreads every stage thinly over all
// servers, fractional copies of the whole chain running side by side that fit
// the memory on average and never pay a transfer. Runs that must fit whole make
// each copy leave a full server and pay for it.
//
// Times are scaled so that a typical stage costs about 1000 units, above
// CBC's absolute tolerances (see ilp/cbc_solver.hpp).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/cost/messages.hpp"
#include "dilemma/error.hpp"
#include "dilemma/ilp/cbc_solver.hpp"
#include "dilemma/ilp/model.hpp"
#include "dilemma/plan/problem.hpp"

namespace dilemma::plan {

// What to minimize: the instance's objective, one model's accuracy error (the
// least error any plan reaches), or the number of servers used.
struct Goal {
  enum class Kind { delay, error, servers };
  Kind kind = Kind::delay;
  std::size_t model = 0;  // for Kind::error
};

// The placements of one stage and their x variables.
using StageVariables = std::vector<std::pair<cost::Placement, ilp::Variable>>;

// A model whose decoder layers are interchangeable (identical cost tables and
// placements: every model under the analytic costs and a proxy error table)
// is written with counts instead of one x per layer: how many layers each
// (server, format) takes, and the servers the layers' runs visit in order.
// Which layers a server holds does not matter, only how many and the order of
// the visits, so the copies of a plan that differ by relabelling layers are
// one solution here; docs/model.md has the rows.
struct LayerCounts {
  struct Arc {
    std::size_t from = 0, to = 0;
    ilp::Variable variable;
  };
  std::size_t layers = 0;  // stages 1 … layers, between the embedding and the head
  StageVariables counts;   // integer: the layers placed on each (server, format)
  std::vector<Arc> enter;  // binary: the embedding's server → the first run's (from == to: one server)
  std::vector<Arc> hops;   // integer: how often the chain passes from a run on `from` to one on `to`
  std::vector<Arc> leave;  // binary: the last run's server → the head's
};

struct Formulation {
  ilp::Model model;
  std::vector<std::vector<StageVariables>> x;            // [model][stage]; empty for a counted model's layers
  std::vector<std::optional<LayerCounts>> layer_counts;  // [model]
  std::vector<std::optional<ilp::Variable>> used;        // [server]: holds a stage (with max_servers)
  double objective_unit = 1.0;                           // the goal's natural unit (seconds, error) per solver unit
};

namespace detail {

inline bool same_tables(const cost::StageCosts& a, const cost::StageCosts& b) {
  if (a.kv_cache_bytes != b.kv_cache_bytes || a.times.size() != b.times.size()) return false;
  for (std::size_t f = 0; f < cost::format_count; ++f) {
    const auto &fa = a.formats[f], &fb = b.formats[f];
    if (fa.has_value() != fb.has_value() || (fa && (fa->weight_bytes != fb->weight_bytes || fa->error != fb->error))) {
      return false;
    }
    for (std::size_t j = 0; j < a.times.size(); ++j) {
      const auto &ta = a.times[j][f], &tb = b.times[j][f];
      if (ta.has_value() != tb.has_value() ||
          (ta && (ta->prefill_seconds != tb->prefill_seconds || ta->decode_seconds != tb->decode_seconds))) {
        return false;
      }
    }
  }
  return true;
}

inline bool same_placements(const StageVariables& a, const StageVariables& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const auto& left, const auto& right) { return left.first == right.first; });
}

// Whether a model's decoder layers, every stage but the first and the last,
// may be written with counts (LayerCounts): at least two of them, all with
// identical tables and placements. Transfers between them then cost the same
// wherever they happen, since every decoder layer receives the prompt's rows.
inline bool interchangeable_layers(const cost::ModelCosts& costs,
                                   const std::vector<std::vector<cost::Placement>>& candidates) {
  const std::size_t stage_count = costs.stages.size();
  if (stage_count < 4) return false;
  for (std::size_t s = 1; s + 2 < stage_count; ++s) {
    if (!same_tables(costs.stages[s], costs.stages[s + 1]) || candidates[s] != candidates[s + 1]) return false;
  }
  return true;
}

// Consecutive stages with identical cost tables and placements (a model's
// decoder layers, under the analytic costs) can trade formats on a shared
// server without changing anything, so every plan has many copies that branch
// and bound would otherwise explore one by one. Two remedies:
//  - such neighbours on one server take formats in the order f32, f16, int8,
//    int4: for each server j and format t, stage s on j in a format ≥ t and
//    stage s+1 on j in a format < t exclude each other;
//  - integer counts of each group's placements per format and per (server,
//    format), on which CBC can branch instead of on one twin at a time.
inline void break_layer_symmetry(ilp::Model& model, const cost::ModelCosts& costs, const std::vector<StageVariables>& x,
                                 std::size_t m) {
  auto twins = [&](std::size_t s) {
    return same_tables(costs.stages[s], costs.stages[s + 1]) && same_placements(x[s], x[s + 1]);
  };
  for (std::size_t s = 0; s + 1 < x.size(); ++s) {
    if (!twins(s)) continue;
    for (const auto& [placement, variable] : x[s]) {
      if (placement.format == quant::Format::f32) continue;  // no format is below f32
      ilp::LinearExpr exclusive;
      for (const auto& [other, earlier] : x[s]) {
        if (other.server == placement.server && other.format >= placement.format) exclusive.add(earlier, 1.0);
      }
      for (const auto& [other, later] : x[s + 1]) {
        if (other.server == placement.server && other.format < placement.format) exclusive.add(later, 1.0);
      }
      model.add_constraint(
          fmt::format("order[{}][{}][{}][{}]", m, s, placement.server, quant::format_name(placement.format)), exclusive,
          ilp::Sense::less_equal, 1.0);
    }
  }
  std::size_t first = 0;
  for (std::size_t s = 0; s < x.size(); ++s) {
    if (s + 1 < x.size() && twins(s)) continue;
    if (s - first + 1 >= 3) {  // a group of two gains little from counts
      std::map<std::pair<std::size_t, quant::Format>, ilp::LinearExpr> per_server;
      std::map<quant::Format, ilp::LinearExpr> per_format;
      for (std::size_t t = first; t <= s; ++t) {
        for (const auto& [placement, variable] : x[t]) {
          per_server[{placement.server, placement.format}].add(variable, 1.0);
          per_format[placement.format].add(variable, 1.0);
        }
      }
      auto add_count = [&](const std::string& name, const ilp::LinearExpr& sum) {
        const ilp::Variable count =
            model.add_variable(name, 0.0, static_cast<double>(s - first + 1), ilp::VariableKind::integer);
        model.add_constraint(name, sum, ilp::Sense::equal, count);
      };
      for (const auto& [format, sum] : per_format)
        add_count(fmt::format("count[{}][{}][{}]", m, first, quant::format_name(format)), sum);
      for (const auto& [key, sum] : per_server) {
        add_count(fmt::format("count[{}][{}][{}][{}]", m, first, key.first, quant::format_name(key.second)), sum);
      }
    }
    first = s + 1;
  }
}

// Builds the program one model at a time into shared rows (memory, busy
// times, the objective).
class Builder {
 public:
  Builder(const Problem& problem, const Candidates& candidates, const Relaxation& keep, const Goal& goal)
      : problem_(problem),
        instance_(problem.instance),
        cluster_(instance_.cluster),
        candidates_(candidates),
        keep_(keep),
        goal_(goal),
        links_(cluster_),
        servers_(cluster_.servers.size()),
        user_(cluster_.user_node()),
        throughput_(instance_.objective == cost::Objective::throughput),
        memory_(servers_),
        memory_worst_case_(servers_, 0.0),
        server_runs_(servers_),
        server_busy_(servers_),
        on_server_(candidates.size()) {
    choose_units();
  }

  Formulation build() {
    formulation_.x.resize(candidates_.size());
    formulation_.layer_counts.resize(candidates_.size());
    formulation_.used.resize(servers_);
    for (std::size_t m = 0; m < candidates_.size(); ++m) add_model(m);
    add_memory();
    add_servers_used();
    add_objective();
    return std::move(formulation_);
  }

 private:
  // Seconds per solver unit: a thousandth of the average cheapest stage.
  void choose_units() {
    double typical = 0.0, largest_error = 0.0;
    std::size_t stages = 0;
    for (std::size_t m = 0; m < candidates_.size(); ++m) {
      const cost::ModelCosts& costs = instance_.workloads[m].costs;
      for (std::size_t s = 0; s < candidates_[m].size(); ++s) {
        double cheapest = std::numeric_limits<double>::infinity();
        for (const auto& placement : candidates_[m][s]) {
          cheapest = std::min(cheapest, busy_seconds(costs, s, placement));
          largest_error = std::max(largest_error, costs.error(s, placement.format));
        }
        if (std::isfinite(cheapest)) {
          typical += cheapest;
          ++stages;
        }
      }
    }
    seconds_per_unit_ = stages > 0 && typical > 0.0 ? typical / static_cast<double>(stages) / 1000.0 : 1e-3;
    switch (goal_.kind) {
      case Goal::Kind::delay:
        formulation_.objective_unit = seconds_per_unit_;
        break;
      case Goal::Kind::error:
        formulation_.objective_unit = largest_error > 0.0 ? largest_error / 1000.0 : 1.0;
        break;
      case Goal::Kind::servers:
        formulation_.objective_unit = 1.0;
        break;
    }
  }

  // Latency: weighted seconds into the objective. Throughput: busy seconds
  // of the link from `from` to `to`.
  void add_transfer(ilp::Variable variable, std::size_t from, std::size_t to, double weight,
                    const cost::LinkCost& price) {
    if (throughput_) {
      link_busy_[{from, to}].add(variable, weight * price.busy / seconds_per_unit_);
    } else {
      delay_.add(variable, weight * price.seconds / seconds_per_unit_);
    }
  }
  // A request's messages of one kind; the candidates have their links.
  void add_transfer(ilp::Variable variable, std::size_t from, std::size_t to, double weight,
                    const cost::Message& message) {
    add_transfer(variable, from, to, weight, *cost::link_cost(links_, from, to, message));
  }

  // The chain's activations passing from `from` to `to` into stage `stage`.
  void add_chain_transfer(ilp::Variable variable, std::size_t m, std::size_t from, std::size_t to,
                          std::size_t stage) {
    const cost::Workload& workload = instance_.workloads[m];
    add_transfer(variable, from, to, workload.weight, cost::boundary_cost(links_, workload.costs, from, to, stage));
  }

  void add_model(std::size_t m) {
    const cost::Workload& workload = instance_.workloads[m];
    const cost::ModelCosts& costs = workload.costs;
    const std::size_t stage_count = costs.stages.size();
    on_server_[m].assign(stage_count, std::vector<ilp::LinearExpr>(servers_));
    least_memory_.assign(stage_count, std::vector<double>(servers_, std::numeric_limits<double>::infinity()));
    if (interchangeable_layers(costs, candidates_[m])) {
      formulation_.layer_counts[m].emplace().layers = stage_count - 2;
      add_placements(m);
      add_layer_chain(m);
    } else {
      add_placements(m);
      break_layer_symmetry(formulation_.model, costs, formulation_.x[m], m);
      add_runs_and_transfers(m);
    }
    add_feedback(m);
  }

  void add_placements(std::size_t m) {
    ilp::Model& model = formulation_.model;
    const cost::Workload& workload = instance_.workloads[m];
    const cost::ModelCosts& costs = workload.costs;
    const std::size_t stage_count = costs.stages.size();
    ilp::LinearExpr error;
    double worst_error = 0.0;
    formulation_.x[m].resize(stage_count);
    LayerCounts* counted = formulation_.layer_counts[m] ? &*formulation_.layer_counts[m] : nullptr;
    for (std::size_t s = 0; s < stage_count; ++s) {
      // A counted model's stage 1 stands for all its layers, each count for
      // that many copies of one placement.
      const bool layer = counted && s > 0 && s + 1 < stage_count;
      if (layer && s > 1) continue;
      const double copies = layer ? static_cast<double>(counted->layers) : 1.0;
      ilp::LinearExpr assigned;
      double stage_worst_error = 0.0;
      std::vector<double> stage_worst_memory(servers_, 0.0);
      for (const cost::Placement& placement : candidates_[m][s]) {
        const std::size_t j = placement.server;
        const std::string_view format = quant::format_name(placement.format);
        const ilp::Variable x =
            layer ? model.add_variable(fmt::format("count[{}][{}][{}]", m, j, format), 0.0, copies,
                                       ilp::VariableKind::integer)
                  : model.add_binary(fmt::format("x[{}][{}][{}][{}]", m, s, j, format));
        (layer ? counted->counts : formulation_.x[m][s]).emplace_back(placement, x);
        assigned.add(x, 1.0);
        on_server_[m][s][j].add(x, 1.0 / copies);
        (throughput_ ? server_busy_[j] : delay_)
            .add(x, workload.weight * busy_seconds(costs, s, placement) / seconds_per_unit_);
        const double bytes = costs.memory_bytes(s, placement.format);
        memory_[j].add(x, bytes / cluster_.servers[j].memory_bytes);
        stage_worst_memory[j] = std::max(stage_worst_memory[j], bytes);
        least_memory_[s][j] = std::min(least_memory_[s][j], bytes);
        error.add(x, costs.error(s, placement.format));
        stage_worst_error = std::max(stage_worst_error, costs.error(s, placement.format));
        // The prompt reaches the embedding from the user; every token leaves the head for the user.
        if (s == 0 && j != user_) add_transfer(x, user_, j, workload.weight, cost::prompt_message(costs));
        if (s + 1 == stage_count && j != user_) {
          add_transfer(x, j, user_, workload.weight, cost::generated_tokens_message(costs));
        }
      }
      model.add_constraint(layer ? fmt::format("assign[{}][layers]", m) : fmt::format("assign[{}][{}]", m, s), assigned,
                           ilp::Sense::equal, copies);
      worst_error += copies * stage_worst_error;
      for (std::size_t j = 0; j < servers_; ++j) memory_worst_case_[j] += copies * stage_worst_memory[j];
    }
    const double budget = workload.accuracy_budget;
    if (keep_.accuracy_budgets && std::isfinite(budget) && budget > 0.0 && worst_error > budget) {
      model.add_constraint(fmt::format("budget[{}]", m), error * (1.0 / budget), ilp::Sense::less_equal, 1.0);
    }
    if (goal_.kind == Goal::Kind::error && goal_.model == m) goal_error_ = error * (1.0 / formulation_.objective_unit);
  }

  void add_runs_and_transfers(std::size_t m) {
    ilp::Model& model = formulation_.model;
    const cost::ModelCosts& costs = instance_.workloads[m].costs;
    const std::size_t stage_count = costs.stages.size();
    whole_model_run_.assign(servers_, std::nullopt);
    // [stage][server]: the runs starting at, ending at and covering a stage.
    std::vector<std::vector<ilp::LinearExpr>> starts(stage_count, std::vector<ilp::LinearExpr>(servers_));
    std::vector<std::vector<ilp::LinearExpr>> ends = starts, covers = starts;
    std::vector<ilp::LinearExpr> runs(servers_), run_memory(servers_);
    for (std::size_t j = 0; j < servers_; ++j) {
      const double capacity = cluster_.servers[j].memory_bytes;
      for (std::size_t a = 0; a < stage_count; ++a) {
        double least = 0.0;
        for (std::size_t b = a; b < stage_count; ++b) {
          least += least_memory_[b][j];
          if (!std::isfinite(least) || (keep_.memory && least > capacity * (1.0 + cost::feasibility_tolerance))) break;
          const ilp::Variable w = model.add_binary(fmt::format("w[{}][{}][{}][{}]", m, j, a, b));
          starts[a][j].add(w, 1.0);
          ends[b][j].add(w, 1.0);
          for (std::size_t s = a; s <= b; ++s) covers[s][j].add(w, 1.0);
          runs[j].add(w, 1.0);
          run_memory[j].add(w, least / capacity);
          server_runs_[j].add(w, 1.0);
          if (a == 0 && b + 1 == stage_count) whole_model_run_[j] = w;
        }
      }
    }
    for (std::size_t s = 0; s < stage_count; ++s) {
      for (std::size_t j = 0; j < servers_; ++j) {
        if (on_server_[m][s][j].terms().empty() && covers[s][j].terms().empty()) continue;
        model.add_constraint(fmt::format("cover[{}][{}][{}]", m, s, j), on_server_[m][s][j], ilp::Sense::equal,
                             covers[s][j]);
      }
    }
    for (std::size_t p = 1; p < stage_count; ++p) {
      std::vector<ilp::LinearExpr> out(servers_), in(servers_);
      for (std::size_t j = 0; j < servers_; ++j) {
        if (ends[p - 1][j].terms().empty()) continue;
        for (std::size_t k = 0; k < servers_; ++k) {
          if (k == j || starts[p][k].terms().empty() || !links_.connected(j, k)) continue;
          const ilp::Variable y = model.add_variable(fmt::format("y[{}][{}][{}][{}]", m, p, j, k), 0.0, 1.0);
          out[j].add(y, 1.0);
          in[k].add(y, 1.0);
          add_chain_transfer(y, m, j, k, p);
        }
      }
      for (std::size_t j = 0; j < servers_; ++j) {
        if (!ends[p - 1][j].terms().empty()) {
          model.add_constraint(fmt::format("leave[{}][{}][{}]", m, p, j), ends[p - 1][j], ilp::Sense::equal, out[j]);
        }
        if (!starts[p][j].terms().empty()) {
          model.add_constraint(fmt::format("enter[{}][{}][{}]", m, p, j), starts[p][j], ilp::Sense::equal, in[j]);
        }
      }
    }
    for (std::size_t j = 0; j < servers_; ++j) {
      if (problem_.options.contiguous && keep_.contiguous && !runs[j].terms().empty()) {
        model.add_constraint(fmt::format("contiguous[{}][{}]", m, j), runs[j], ilp::Sense::less_equal, 1.0);
      }
      // Implied by the memory rows, but over binary runs: CBC's cover cuts
      // from it forbid runs on one server that do not fit together.
      if (keep_.memory && run_memory[j].terms().size() > 1) {
        model.add_constraint(fmt::format("run_memory[{}][{}]", m, j), run_memory[j], ilp::Sense::less_equal, 1.0);
      }
    }
  }

  // A counted model's chain: from the embedding's server through the runs of
  // layers to the head's, a walk over the servers in which `hops` counts how
  // often it passes from one to another (a server may hold several runs).
  // Conservation at every server makes it a walk. A flow of the layers
  // themselves, all entering at the first run and each server keeping its
  // own, makes it one connected walk: without it, runs could close a cycle of
  // their own, apart from the chain. Every run holds at least one layer.
  void add_layer_chain(std::size_t m) {
    ilp::Model& model = formulation_.model;
    LayerCounts& counted = *formulation_.layer_counts[m];
    const double layers = static_cast<double>(counted.layers);
    const std::size_t head = on_server_[m].size() - 1;
    const auto& embeddings = on_server_[m].front();
    const auto& heads = on_server_[m].back();
    std::vector<ilp::LinearExpr> held(servers_), arrive(servers_), depart(servers_), kept(servers_);
    for (const auto& [placement, count] : counted.counts) held[placement.server].add(count, 1.0);
    std::vector<std::optional<ilp::Variable>> enter_here(servers_), leave_here(servers_);
    for (std::size_t i = 0; i < servers_; ++i) {
      if (embeddings[i].terms().empty()) continue;
      ilp::LinearExpr out;
      for (std::size_t k = 0; k < servers_; ++k) {
        if (held[k].terms().empty() || !links_.connected(i, k)) continue;
        const ilp::Variable enter = model.add_binary(fmt::format("enter[{}][{}][{}]", m, i, k));
        counted.enter.push_back({i, k, enter});
        out.add(enter, 1.0);
        arrive[k].add(enter, 1.0);
        kept[k].add(enter, layers);
        if (i == k) {
          enter_here[k] = enter;
        } else {
          add_chain_transfer(enter, m, i, k, 1);
        }
      }
      model.add_constraint(fmt::format("enter[{}][{}]", m, i), out, ilp::Sense::equal, embeddings[i]);
    }
    for (std::size_t i = 0; i < servers_; ++i) {
      if (heads[i].terms().empty()) continue;
      ilp::LinearExpr in;
      for (std::size_t k = 0; k < servers_; ++k) {
        if (held[k].terms().empty() || !links_.connected(k, i)) continue;
        const ilp::Variable leave = model.add_binary(fmt::format("leave[{}][{}][{}]", m, k, i));
        counted.leave.push_back({k, i, leave});
        in.add(leave, 1.0);
        depart[k].add(leave, 1.0);
        if (i == k) {
          leave_here[k] = leave;
        } else {
          add_chain_transfer(leave, m, k, i, head);
        }
      }
      model.add_constraint(fmt::format("leave[{}][{}]", m, i), in, ilp::Sense::equal, heads[i]);
    }
    for (std::size_t j = 0; j < servers_; ++j) {
      for (std::size_t k = 0; k < servers_; ++k) {
        if (j == k || held[j].terms().empty() || held[k].terms().empty() || !links_.connected(j, k)) continue;
        const ilp::Variable hop =
            model.add_variable(fmt::format("hops[{}][{}][{}]", m, j, k), 0.0, layers - 1.0, ilp::VariableKind::integer);
        const ilp::Variable flow = model.add_variable(fmt::format("flow[{}][{}][{}]", m, j, k), 0.0, ilp::infinity);
        // Each pass carries at most the layers still to come.
        model.add_constraint(fmt::format("flow[{}][{}][{}]", m, j, k), flow, ilp::Sense::less_equal,
                             ilp::LinearExpr().add(hop, layers - 1.0));
        counted.hops.push_back({j, k, hop});
        depart[j].add(hop, 1.0);
        arrive[k].add(hop, 1.0);
        kept[k].add(flow, 1.0);
        kept[j].add(flow, -1.0);
        add_chain_transfer(hop, m, j, k, 2);
      }
    }
    for (std::size_t j = 0; j < servers_; ++j) {
      if (!held[j].terms().empty()) {
        model.add_constraint(fmt::format("runs[{}][{}]", m, j), arrive[j], ilp::Sense::equal, depart[j]);
        model.add_constraint(fmt::format("run_layers[{}][{}]", m, j), arrive[j], ilp::Sense::less_equal, held[j]);
        // A server with layers is visited at least once. For the relaxation:
        // without this row, a blend of plans pays a fraction of a transfer
        // for a whole server's layers.
        model.add_constraint(fmt::format("visited[{}][{}]", m, j), held[j], ilp::Sense::less_equal,
                             arrive[j] * layers_that_fit(m, j));
        model.add_constraint(fmt::format("layer_flow[{}][{}]", m, j), kept[j], ilp::Sense::equal, held[j]);
      }
      // The model's ranges of consecutive stages on j: its runs of layers,
      // and the embedding and the head unless a run continues them.
      ilp::LinearExpr ranges = arrive[j];
      ranges += embeddings[j];
      ranges += heads[j];
      if (enter_here[j]) ranges.add(*enter_here[j], -1.0);
      if (leave_here[j]) ranges.add(*leave_here[j], -1.0);
      if (ranges.terms().empty()) continue;
      server_runs_[j] += ranges;
      if (problem_.options.contiguous && keep_.contiguous) {
        model.add_constraint(fmt::format("contiguous[{}][{}]", m, j), ranges, ilp::Sense::less_equal, 1.0);
      }
    }
  }

  // The most layers of counted model m that server j holds, alone, at their
  // smallest format.
  double layers_that_fit(std::size_t m, std::size_t j) const {
    const LayerCounts& counted = *formulation_.layer_counts[m];
    const cost::ModelCosts& costs = instance_.workloads[m].costs;
    double least = std::numeric_limits<double>::infinity();
    for (const auto& [placement, count] : counted.counts) {
      if (placement.server == j) least = std::min(least, costs.memory_bytes(1, placement.format));
    }
    const double layers = static_cast<double>(counted.layers);
    if (!keep_.memory || least <= 0.0) return layers;
    return std::clamp(std::floor(cluster_.servers[j].memory_bytes * (1.0 + cost::feasibility_tolerance) / least), 1.0,
                      layers);
  }

  // Each decode step starts with the last token going from the head's server
  // back to the embedding's.
  void add_feedback(std::size_t m) {
    ilp::Model& model = formulation_.model;
    const cost::Workload& workload = instance_.workloads[m];
    const cost::ModelCosts& costs = workload.costs;
    if (costs.request.decode_steps() == 0) return;
    const auto& heads = on_server_[m].back();
    const auto& embeddings = on_server_[m].front();
    std::vector<ilp::LinearExpr> out(servers_), in(servers_);
    for (std::size_t j = 0; j < servers_; ++j) {
      if (heads[j].terms().empty()) continue;
      for (std::size_t k = 0; k < servers_; ++k) {
        if (embeddings[k].terms().empty() || !links_.connected(j, k)) continue;
        const ilp::Variable v = model.add_variable(fmt::format("v[{}][{}][{}]", m, j, k), 0.0, 1.0);
        out[j].add(v, 1.0);
        in[k].add(v, 1.0);
        if (j == k) {
          // The embedding's and the head's runs on one server hold it once
          // (one run, if it holds the whole model). A counted model's ranges
          // are exact already.
          if (formulation_.layer_counts[m]) continue;
          server_runs_[j].add(v, -1.0);
          if (whole_model_run_[j]) server_runs_[j].add(*whole_model_run_[j], 1.0);
        } else {
          add_transfer(v, j, k, workload.weight, cost::fed_back_token_message(costs));
        }
      }
    }
    for (std::size_t j = 0; j < servers_; ++j) {
      if (!heads[j].terms().empty()) {
        model.add_constraint(fmt::format("feedback_out[{}][{}]", m, j), out[j], ilp::Sense::equal, heads[j]);
      }
      if (!embeddings[j].terms().empty()) {
        model.add_constraint(fmt::format("feedback_in[{}][{}]", m, j), in[j], ilp::Sense::equal, embeddings[j]);
      }
    }
  }

  void add_memory() {
    if (!keep_.memory) return;
    for (std::size_t j = 0; j < servers_; ++j) {
      if (memory_worst_case_[j] > cluster_.servers[j].memory_bytes) {
        formulation_.model.add_constraint(fmt::format("memory[{}]", j), memory_[j], ilp::Sense::less_equal, 1.0);
        // Valid because server_runs_ is at least 1 wherever a stage is; it
        // keeps the relaxation's blend of plans from lending the capacity of
        // a server, unused by some of them, to those that overfill it.
        formulation_.model.add_constraint(fmt::format("memory_in_use[{}]", j), memory_[j], ilp::Sense::less_equal,
                                          server_runs_[j]);
      }
    }
  }

  void add_servers_used() {
    const bool limit = problem_.options.max_servers && keep_.max_servers;
    if (!limit && goal_.kind != Goal::Kind::servers) return;
    ilp::Model& model = formulation_.model;
    for (std::size_t j = 0; j < servers_; ++j) {
      std::optional<ilp::Variable> used;
      for (std::size_t m = 0; m < on_server_.size(); ++m) {
        for (std::size_t s = 0; s < on_server_[m].size(); ++s) {
          const ilp::LinearExpr& here = on_server_[m][s][j];
          if (here.terms().empty()) continue;
          if (!used) used = model.add_binary(fmt::format("used[{}]", j));
          model.add_constraint(fmt::format("uses[{}][{}][{}]", m, s, j), here, ilp::Sense::less_equal, *used);
        }
      }
      if (used) servers_used_.add(*used, 1.0);
      formulation_.used[j] = used;
    }
    if (limit) {
      model.add_constraint("max_servers", servers_used_, ilp::Sense::less_equal,
                           static_cast<double>(*problem_.options.max_servers));
    }
  }

  void add_objective() {
    ilp::Model& model = formulation_.model;
    switch (goal_.kind) {
      case Goal::Kind::delay:
        if (!throughput_) {
          model.minimize(delay_);
          return;
        }
        {
          const ilp::Variable bottleneck = model.add_variable("bottleneck", 0.0, ilp::infinity);
          for (std::size_t j = 0; j < servers_; ++j) {
            if (!server_busy_[j].terms().empty()) {
              model.add_constraint(fmt::format("busy[{}]", j), server_busy_[j], ilp::Sense::less_equal, bottleneck);
            }
          }
          for (const auto& [pair, busy] : link_busy_) {
            model.add_constraint(fmt::format("link_busy[{}][{}]", pair.first, pair.second), busy,
                                 ilp::Sense::less_equal, bottleneck);
          }
          model.minimize(bottleneck);
        }
        return;
      case Goal::Kind::error:
        model.minimize(goal_error_);
        return;
      case Goal::Kind::servers:
        model.minimize(servers_used_);
        return;
    }
  }

  const Problem& problem_;
  const cost::Instance& instance_;
  const edge::Cluster& cluster_;
  const Candidates& candidates_;
  const Relaxation keep_;
  const Goal goal_;
  const cost::LinkTable links_;
  const std::size_t servers_;
  const std::size_t user_;
  const bool throughput_;
  Formulation formulation_;
  double seconds_per_unit_ = 1e-3;
  ilp::LinearExpr delay_;                // latency: Σ_m weight · completion, in solver units
  std::vector<ilp::LinearExpr> memory_;  // [server]: memory used, as a fraction of capacity
  std::vector<double> memory_worst_case_;
  // [server]: Σ over models of the runs on it, a model's embedding and head
  // counted once together: 0 on a server that holds nothing, ≥ 1 otherwise.
  std::vector<ilp::LinearExpr> server_runs_;
  std::vector<std::optional<ilp::Variable>> whole_model_run_;  // current model, [server]
  std::vector<ilp::LinearExpr> server_busy_;
  std::map<std::pair<std::size_t, std::size_t>, ilp::LinearExpr> link_busy_;
  std::vector<std::vector<std::vector<ilp::LinearExpr>>> on_server_;  // [model][stage][server]: Σ_f x
  std::vector<std::vector<double>> least_memory_;                     // current model, [stage][server]
  ilp::LinearExpr goal_error_;
  ilp::LinearExpr servers_used_;
};

}  // namespace detail

inline Formulation formulate(const Problem& problem, const Candidates& candidates, const Relaxation& keep = {},
                             const Goal& goal = {}) {
  return detail::Builder(problem, candidates, keep, goal).build();
}

}  // namespace dilemma::plan
