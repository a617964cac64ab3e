#pragma once
// A planning problem: an instance (cluster, models with their cost tables,
// budgets, weights, objective) and the user's restrictions on the plan. Also
// the placements each stage may take once those restrictions are applied, the
// common starting point of the ILP, the baselines and the diagnostics.

#include <algorithm>
#include <cstddef>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/edge/units.hpp"
#include "dilemma/error.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::plan {

// Forces one stage onto one server (and, optionally, one format).
struct Pin {
  std::string model;  // empty: the instance's only model
  std::string stage;  // "embedding", "layer.<i>" or "head"
  std::string server;
  std::optional<quant::Format> format;
};

struct Options {
  // Formats any stage may use, on top of what each server can run.
  std::vector<quant::Format> formats{quant::all_formats.begin(), quant::all_formats.end()};
  // Further restrictions for individual servers, by name.
  std::map<std::string, std::vector<quant::Format>> server_formats;
  std::vector<Pin> pins;
  std::optional<std::size_t> max_servers;  // at most this many servers hold stages (all models together)
  bool contiguous = false;                 // each server holds one contiguous range of each model's stages

  nlohmann::json to_json() const;
  static Options from_json(const nlohmann::json& json, const std::string& what);
};

struct Problem {
  cost::Instance instance;
  Options options;

  // Checks the instance and that every name in the options resolves.
  void validate(const std::string& what = "problem") const;
};

// Constraint families to keep; the diagnosis of an infeasible problem drops
// some to find the culprit.
struct Relaxation {
  bool accuracy_budgets = true;
  bool memory = true;
  bool max_servers = true;
  bool contiguous = true;
};

// Placements allowed for each stage of each model: [model][stage].
using Candidates = std::vector<std::vector<std::vector<cost::Placement>>>;

// The candidates, and for each stage left without any, why.
struct CandidateSet {
  Candidates placements;
  std::vector<std::string> empty_reasons;
};

namespace detail {

// What a stage keeps its server busy per request: its prefill and every
// decode step. The placement must be one the stage has times for.
inline double busy_seconds(const cost::ModelCosts& costs, std::size_t stage, const cost::Placement& placement) {
  const auto& times = costs.stages[stage].time(placement.server, placement.format);
  return times->prefill_seconds + static_cast<double>(costs.request.decode_steps()) * times->decode_seconds;
}

inline std::size_t model_index(const cost::Instance& instance, const std::string& name, const std::string& what) {
  if (name.empty()) {
    if (instance.workloads.size() == 1) return 0;
    dilemma::detail::fail("{}: name the model (the instance has {})", what, instance.workloads.size());
  }
  for (std::size_t m = 0; m < instance.workloads.size(); ++m) {
    if (instance.workloads[m].costs.name == name) return m;
  }
  dilemma::detail::fail("{}: unknown model \"{}\"", what, name);
}

inline std::size_t stage_index(const cost::ModelCosts& costs, const std::string& name, const std::string& what) {
  for (std::size_t s = 0; s < costs.stages.size(); ++s) {
    if (costs.stages[s].name == name) return s;
  }
  dilemma::detail::fail("{}: model \"{}\" has no stage \"{}\" (it has embedding, layer.0 .. layer.{}, head)", what,
                        costs.name, name, costs.stages.size() >= 3 ? costs.stages.size() - 3 : 0);
}

inline bool contains(const std::vector<quant::Format>& formats, quant::Format format) {
  return std::find(formats.begin(), formats.end(), format) != formats.end();
}

inline std::string format_list(const std::vector<quant::Format>& formats) {
  std::string list;
  for (quant::Format format : formats) list += (list.empty() ? "" : ", ") + std::string(quant::format_name(format));
  return list.empty() ? "none" : list;
}

// Whether the options let stage `s` of model `m` use a placement.
class OptionFilter {
 public:
  explicit OptionFilter(const Problem& problem) : cluster_(problem.instance.cluster) {
    const auto& instance = problem.instance;
    pins_.resize(instance.workloads.size());
    for (std::size_t m = 0; m < instance.workloads.size(); ++m)
      pins_[m].resize(instance.workloads[m].costs.stages.size());
    for (const Pin& pin : problem.options.pins) {
      const std::string what = fmt::format("pin of stage {}", pin.stage);
      const std::size_t m = model_index(instance, pin.model, what);
      const std::size_t s = stage_index(instance.workloads[m].costs, pin.stage, what);
      if (pins_[m][s]) dilemma::detail::fail("{}: the stage is pinned twice", what);
      pins_[m][s] = ResolvedPin{cluster_.server_index(pin.server, what), pin.format};
    }
    server_formats_.resize(cluster_.servers.size(), problem.options.formats);
    for (const auto& [server, formats] : problem.options.server_formats) {
      auto& allowed = server_formats_[cluster_.server_index(server, "server_formats")];
      const auto& listed = formats;  // Clang before 16 cannot capture a structured binding
      std::erase_if(allowed, [&listed](quant::Format format) { return !contains(listed, format); });
    }
  }

  bool format_allowed(std::size_t server, quant::Format format) const {
    return contains(server_formats_[server], format);
  }
  bool pin_allows(std::size_t m, std::size_t s, const cost::Placement& placement) const {
    const auto& pin = pins_[m][s];
    return !pin || (pin->server == placement.server && (!pin->format || *pin->format == placement.format));
  }
  std::string pin_text(std::size_t m, std::size_t s) const {
    const auto& pin = pins_[m][s];
    if (!pin) return "no server";
    return fmt::format("server \"{}\"{}", cluster_.servers[pin->server].name,
                       pin->format ? fmt::format(" in {}", quant::format_name(*pin->format)) : "");
  }

 private:
  struct ResolvedPin {
    std::size_t server;
    std::optional<quant::Format> format;
  };
  const edge::Cluster& cluster_;
  std::vector<std::vector<std::optional<ResolvedPin>>> pins_;
  std::vector<std::vector<quant::Format>> server_formats_;
};

}  // namespace detail

inline void Problem::validate(const std::string& what) const {
  instance.validate(what);
  if (options.formats.empty()) dilemma::detail::fail("{}: options.formats is empty: no stage could run", what);
  if (options.max_servers && *options.max_servers == 0) dilemma::detail::fail("{}: max_servers must be >= 1", what);
  static_cast<void>(detail::OptionFilter(*this));  // resolves every name, or throws
}

// Filters each stage's placements, in order: what the cost tables allow (the
// server runs the format and the format has data), the options (formats,
// pins), the server's memory (a stage larger than its server alone can never
// fit), the budget (a stage whose own error exceeds it), and the user's links
// (the embedding receives the prompt from the user, the head returns tokens).
// A stage left with nothing gets the reason of the filter that emptied it.
inline CandidateSet candidate_set(const Problem& problem, const Relaxation& keep = {}) {
  const cost::Instance& instance = problem.instance;
  const edge::Cluster& cluster = instance.cluster;
  const detail::OptionFilter filter(problem);
  const cost::LinkTable links(cluster);
  const std::size_t user = cluster.user_node();
  CandidateSet result;
  result.placements.resize(instance.workloads.size());
  for (std::size_t m = 0; m < instance.workloads.size(); ++m) {
    const cost::Workload& workload = instance.workloads[m];
    const cost::ModelCosts& costs = workload.costs;
    const std::size_t stage_count = costs.stages.size();
    result.placements[m].resize(stage_count);
    for (std::size_t s = 0; s < stage_count; ++s) {
      const cost::StageCosts& stage = costs.stages[s];
      const std::string who = fmt::format("{}: stage {}", costs.name, stage.name);
      std::vector<cost::Placement> placements;
      for (std::size_t j = 0; j < cluster.servers.size(); ++j) {
        for (quant::Format format : quant::all_formats) {
          if (stage.time(j, format)) placements.push_back({j, format});
        }
      }
      std::string reason;
      auto retain = [&](auto predicate, auto explain) {
        if (placements.empty()) return;
        std::vector<cost::Placement> kept;
        for (const auto& placement : placements) {
          if (predicate(placement)) kept.push_back(placement);
        }
        if (kept.empty()) reason = explain();
        placements = std::move(kept);
      };
      if (placements.empty()) reason = fmt::format("{} has no costs for any server and format", who);
      retain([&](const cost::Placement& p) { return filter.format_allowed(p.server, p.format); },
             [&] {
               return fmt::format("{} can run on no server in a format the options allow ({})", who,
                                  detail::format_list(problem.options.formats));
             });
      retain([&](const cost::Placement& p) { return filter.pin_allows(m, s, p); },
             [&] {
               return fmt::format("{} is pinned to {}, which cannot run it in any allowed format", who,
                                  filter.pin_text(m, s));
             });
      const std::vector<cost::Placement> before_memory = placements;
      if (keep.memory) {
        retain(
            [&](const cost::Placement& p) {
              return costs.memory_bytes(s, p.format) <=
                     cluster.servers[p.server].memory_bytes * (1.0 + cost::feasibility_tolerance);
            },
            [&] {
              const cost::Placement* smallest = &before_memory.front();
              const edge::Server* largest = &cluster.servers[before_memory.front().server];
              for (const auto& p : before_memory) {
                if (costs.memory_bytes(s, p.format) < costs.memory_bytes(s, smallest->format)) smallest = &p;
                if (cluster.servers[p.server].memory_bytes > largest->memory_bytes)
                  largest = &cluster.servers[p.server];
              }
              return fmt::format(
                  "{} needs at least {} (in {}, weights and KV cache) but the largest server that may "
                  "hold it, \"{}\", has {}",
                  who, edge::format_bytes(costs.memory_bytes(s, smallest->format)),
                  quant::format_name(smallest->format), largest->name, edge::format_bytes(largest->memory_bytes));
            });
      }
      const std::vector<cost::Placement> before_budget = placements;
      if (keep.accuracy_budgets) {
        retain(
            [&](const cost::Placement& p) {
              return costs.error(s, p.format) <= workload.accuracy_budget * (1.0 + cost::feasibility_tolerance);
            },
            [&] {
              double least = costs.error(s, before_budget.front().format);
              for (const auto& p : before_budget) least = std::min(least, costs.error(s, p.format));
              return fmt::format(
                  "{}: every format that fits has an error above the accuracy budget {:.6g} (the least "
                  "is {:.6g})",
                  who, workload.accuracy_budget, least);
            });
      }
      if (s == 0) {
        retain([&](const cost::Placement& p) { return links.connected(user, p.server); },
               [&] {
                 return fmt::format("{} must receive the prompt, but no server that can hold it has a link from {}",
                                    who, cluster.user_label());
               });
      }
      if (s + 1 == stage_count) {
        retain([&](const cost::Placement& p) { return links.connected(p.server, user); },
               [&] {
                 return fmt::format("{} must send tokens to the user, but no server that can hold it has a link to {}",
                                    who, cluster.user_label());
               });
      }
      if (placements.empty()) result.empty_reasons.push_back(reason);
      result.placements[m][s] = std::move(placements);
    }
  }
  return result;
}

// What the options forbid in `assignments` (the cost model's own constraints
// are cost::evaluate's business).
inline std::vector<std::string> option_violations(const Problem& problem,
                                                  std::span<const cost::Assignment> assignments) {
  const cost::Instance& instance = problem.instance;
  const edge::Cluster& cluster = instance.cluster;
  const detail::OptionFilter filter(problem);
  std::vector<std::string> violations;
  std::vector<bool> used(cluster.servers.size(), false);
  for (std::size_t m = 0; m < assignments.size() && m < instance.workloads.size(); ++m) {
    const cost::ModelCosts& costs = instance.workloads[m].costs;
    const cost::Assignment& assignment = assignments[m];
    std::vector<int> entries(cluster.servers.size(), 0);
    for (std::size_t s = 0; s < assignment.size() && s < costs.stages.size(); ++s) {
      const cost::Placement& p = assignment[s];
      if (p.server >= cluster.servers.size()) continue;  // cost::evaluate reports it
      used[p.server] = true;
      const std::string& server = cluster.servers[p.server].name;
      if (!filter.format_allowed(p.server, p.format)) {
        violations.push_back(fmt::format("{}: stage {} on \"{}\" uses {}, which the options do not allow there",
                                         costs.name, costs.stages[s].name, server, quant::format_name(p.format)));
      }
      if (!filter.pin_allows(m, s, p)) {
        violations.push_back(
            fmt::format("{}: stage {} is pinned to {}", costs.name, costs.stages[s].name, filter.pin_text(m, s)));
      }
      if (s == 0 || assignment[s - 1].server != p.server) ++entries[p.server];
    }
    if (problem.options.contiguous) {
      for (std::size_t j = 0; j < entries.size(); ++j) {
        if (entries[j] > 1) {
          violations.push_back(
              fmt::format("{}: server \"{}\" holds {} separate ranges of stages, but the options ask "
                          "for contiguous ranges",
                          costs.name, cluster.servers[j].name, entries[j]));
        }
      }
    }
  }
  const auto count = static_cast<std::size_t>(std::count(used.begin(), used.end(), true));
  if (problem.options.max_servers && count > *problem.options.max_servers) {
    violations.push_back(
        fmt::format("the plan uses {} servers, more than max_servers = {}", count, *problem.options.max_servers));
  }
  return violations;
}

// cost::evaluate plus the options' restrictions: the full check of a plan.
inline cost::Evaluation evaluate(const Problem& problem, std::span<const cost::Assignment> assignments) {
  cost::Evaluation evaluation = cost::evaluate(problem.instance, assignments);
  for (auto& violation : option_violations(problem, assignments)) evaluation.violations.push_back(std::move(violation));
  return evaluation;
}

inline nlohmann::json Options::to_json() const {
  auto names = [](const std::vector<quant::Format>& list) {
    nlohmann::json json = nlohmann::json::array();
    for (quant::Format format : list) json.push_back(quant::format_name(format));
    return json;
  };
  nlohmann::json json{{"formats", names(formats)}, {"contiguous", contiguous}};
  json["server_formats"] = nlohmann::json::object();
  for (const auto& [server, list] : server_formats) json["server_formats"][server] = names(list);
  json["pins"] = nlohmann::json::array();
  for (const Pin& pin : pins) {
    json["pins"].push_back(
        {{"model", pin.model},
         {"stage", pin.stage},
         {"server", pin.server},
         {"format", pin.format ? nlohmann::json(quant::format_name(*pin.format)) : nlohmann::json(nullptr)}});
  }
  json["max_servers"] = max_servers ? nlohmann::json(*max_servers) : nlohmann::json(nullptr);
  return json;
}

inline Options Options::from_json(const nlohmann::json& json, const std::string& what) {
  using dilemma::detail::fail;
  if (!json.is_object()) fail("{}: expected an object, got {}", what, json.type_name());
  edge::detail::check_keys(json, {"formats", "server_formats", "pins", "max_servers", "contiguous"}, what);
  auto formats = [&](const nlohmann::json& list, const std::string& where) {
    if (!list.is_array()) fail("{}: expected an array of format names, got {}", where, list.dump());
    std::vector<quant::Format> result;
    for (const auto& name : list) {
      if (!name.is_string()) fail("{}: expected format names, got {}", where, name.dump());
      result.push_back(quant::parse_format(name.get<std::string>(), where));
    }
    return result;
  };
  Options options;
  if (auto it = json.find("formats"); it != json.end()) options.formats = formats(*it, what + ".formats");
  if (auto it = json.find("server_formats"); it != json.end()) {
    if (!it->is_object()) fail("{}.server_formats: expected an object", what);
    for (const auto& item : it->items())
      options.server_formats[item.key()] = formats(item.value(), what + ".server_formats." + item.key());
  }
  if (auto it = json.find("pins"); it != json.end()) {
    if (!it->is_array()) fail("{}.pins: expected an array", what);
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& entry = (*it)[i];
      const std::string where = fmt::format("{}.pins[{}]", what, i);
      if (!entry.is_object()) fail("{}: expected an object, got {}", where, entry.dump());
      edge::detail::check_keys(entry, {"model", "stage", "server", "format"}, where);
      Pin pin;
      if (auto model = entry.find("model"); model != entry.end() && !model->is_null()) {
        if (!model->is_string()) fail("{}.model: expected a string", where);
        pin.model = model->get<std::string>();
      }
      pin.stage = edge::detail::require_string(entry, "stage", where);
      pin.server = edge::detail::require_string(entry, "server", where);
      if (auto format = entry.find("format"); format != entry.end() && !format->is_null()) {
        if (!format->is_string()) fail("{}.format: expected a format name", where);
        pin.format = quant::parse_format(format->get<std::string>(), where + ".format");
      }
      options.pins.push_back(std::move(pin));
    }
  }
  if (auto it = json.find("max_servers"); it != json.end() && !it->is_null()) {
    if (!it->is_number_unsigned()) fail("{}.max_servers: expected a positive integer, got {}", what, it->dump());
    options.max_servers = it->get<std::size_t>();
  }
  if (auto it = json.find("contiguous"); it != json.end()) {
    if (!it->is_boolean()) fail("{}.contiguous: expected true or false, got {}", what, it->dump());
    options.contiguous = it->get<bool>();
  }
  return options;
}

}  // namespace dilemma::plan
