#pragma once
// A plan: where each stage runs and in which format, what the cost model
// predicts for it, how it was found, and the complete problem it answers (the
// cost tables included), so that the file alone is enough to recompute the
// objective and check every constraint (docs/model.md). Reading a plan
// re-evaluates it and rejects a file whose stored numbers disagree with its
// own tables.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/error.hpp"
#include "dilemma/io/json_file.hpp"
#include "dilemma/plan/problem.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::plan {

enum class Status {
  optimal,     // proven best under the cost model (for the method that produced it)
  feasible,    // a valid plan without a proof of optimality (time limit, heuristic)
  infeasible,  // proven: no plan satisfies the constraints; `reasons` says why
  no_plan,     // none found, none ruled out (time limit, or a heuristic gave up)
};

inline std::string_view status_name(Status status) {
  switch (status) {
    case Status::optimal:
      return "optimal";
    case Status::feasible:
      return "feasible";
    case Status::infeasible:
      return "infeasible";
    case Status::no_plan:
      return "no_plan";
  }
  return "no_plan";
}

inline Status parse_status(std::string_view name, std::string_view what) {
  for (Status status : {Status::optimal, Status::feasible, Status::infeasible, Status::no_plan}) {
    if (status_name(status) == name) return status;
  }
  dilemma::detail::fail("{}: unknown plan status \"{}\"", what, name);
}

// How the plan was found. Objective values are in the objective's units
// (seconds); `nodes` and the bounds are the ILP's, absent for other methods.
struct SolverReport {
  std::string solver;  // "cbc <version>", "dynamic programming", "greedy", "enumeration"
  std::string status;  // the solver's own status
  double seconds = 0.0;
  std::optional<double> objective;
  std::optional<double> best_bound;
  std::optional<double> gap;         // relative, (objective − best_bound) / objective
  std::optional<double> root_bound;  // LP relaxation at the root
  std::optional<double> root_gap;    // relative, (objective − root_bound) / objective
  std::int64_t nodes = 0;
  std::int64_t variables = 0;
  std::int64_t constraints = 0;
};

struct Plan {
  std::string method;  // "dilemma", "single-server-f32", "uniform-int8", ...
  Status status = Status::no_plan;
  std::vector<std::string> reasons;  // why there is no plan
  Problem problem;
  std::vector<cost::Assignment> assignments;  // one per model; empty without a plan
  cost::Evaluation evaluation;                // of `assignments` under `problem`
  SolverReport solver;

  bool has_plan() const { return !assignments.empty(); }
  double objective() const { return evaluation.objective; }

  nlohmann::json to_json() const;
  static Plan from_json(const nlohmann::json& json, const std::string& source = "plan.json");
  static Plan load(const std::filesystem::path& path);
  void save(const std::filesystem::path& path) const;
};

// A plan for `assignments`, evaluated; throws if they violate the problem,
// since a method that returns an invalid plan is broken.
inline Plan make_plan(std::string method, Status status, const Problem& problem,
                      std::vector<cost::Assignment> assignments, SolverReport solver) {
  Plan plan;
  plan.method = std::move(method);
  plan.status = status;
  plan.problem = problem;
  plan.assignments = std::move(assignments);
  plan.solver = std::move(solver);
  plan.evaluation = evaluate(problem, plan.assignments);
  if (!plan.evaluation.feasible()) {
    std::string violations;
    for (const auto& violation : plan.evaluation.violations) violations += "\n  " + violation;
    dilemma::detail::fail("plan: the {} method produced an assignment that violates the problem:{}", plan.method,
                          violations);
  }
  if (plan.solver.objective && plan.solver.root_bound && *plan.solver.objective != 0.0) {
    plan.solver.root_gap = (*plan.solver.objective - *plan.solver.root_bound) / std::abs(*plan.solver.objective);
  }
  return plan;
}

inline Plan no_plan(std::string method, Status status, const Problem& problem, std::vector<std::string> reasons,
                    SolverReport solver) {
  Plan plan;
  plan.method = std::move(method);
  plan.status = status;
  plan.problem = problem;
  plan.reasons = std::move(reasons);
  plan.solver = std::move(solver);
  return plan;
}

namespace detail {

inline nlohmann::json optional_number(const std::optional<double>& value) {
  return value && std::isfinite(*value) ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

inline std::optional<double> read_optional_number(const nlohmann::json& object, const char* key,
                                                  const std::string& what) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) dilemma::detail::fail("{}.{}: expected a number or null, got {}", what, key, it->dump());
  return it->get<double>();
}

inline nlohmann::json model_json(const Problem& problem, std::size_t m, const cost::Assignment& assignment,
                                 const cost::ModelEvaluation& evaluation) {
  const cost::Workload& workload = problem.instance.workloads[m];
  const cost::ModelCosts& costs = workload.costs;
  const edge::Cluster& cluster = problem.instance.cluster;
  nlohmann::json stages = nlohmann::json::array();
  for (std::size_t s = 0; s < assignment.size(); ++s) {
    const auto [server, format] = assignment[s];
    const auto& times = costs.stages[s].time(server, format);
    stages.push_back({{"stage", costs.stages[s].name},
                      {"server", cluster.servers[server].name},
                      {"format", quant::format_name(format)},
                      {"memory_bytes", costs.memory_bytes(s, format)},
                      {"weight_bytes", costs.stages[s].formats[cost::format_index(format)]->weight_bytes},
                      {"error", costs.error(s, format)},
                      {"prefill_seconds", times->prefill_seconds},
                      {"decode_seconds", times->decode_seconds}});
  }
  nlohmann::json servers = nlohmann::json::array();
  for (std::size_t j = 0; j < evaluation.servers.size(); ++j) {
    const cost::ServerUse& use = evaluation.servers[j];
    if (use.stages.empty()) continue;
    nlohmann::json stage_names = nlohmann::json::array();
    for (std::size_t s : use.stages) stage_names.push_back(costs.stages[s].name);
    servers.push_back({{"server", cluster.servers[j].name},
                       {"stages", stage_names},
                       {"memory_bytes", use.memory_bytes},
                       {"prefill_seconds", use.prefill_seconds},
                       {"decode_step_seconds", use.decode_step_seconds},
                       {"busy_seconds", use.busy_seconds}});
  }
  nlohmann::json links = nlohmann::json::array();
  for (const cost::LinkUse& use : evaluation.links) {
    links.push_back({{"from", cluster.node_name(use.from)},
                     {"to", cluster.node_name(use.to)},
                     {"first_token_seconds", use.first_token_seconds},
                     {"decode_step_seconds", use.decode_step_seconds},
                     {"bytes", use.bytes},
                     {"busy_seconds", use.busy_seconds}});
  }
  const double bottleneck = evaluation.bottleneck_seconds;
  return {{"name", costs.name},
          {"prompt_tokens", costs.request.prompt_tokens},
          {"new_tokens", costs.request.new_tokens},
          {"stages", stages},
          {"predicted",
           {{"time_to_first_token_seconds", evaluation.first_token_seconds},
            {"per_token_seconds", evaluation.decode_step_seconds},
            {"completion_seconds", evaluation.completion_seconds},
            {"compute_seconds", evaluation.compute_seconds},
            {"transfer_seconds", evaluation.transfer_seconds},
            {"bottleneck_seconds", bottleneck},
            {"throughput_requests_per_second",
             bottleneck > 0.0 ? nlohmann::json(1.0 / bottleneck) : nlohmann::json(nullptr)},
            // Requests that must be in flight for the pipeline to reach that throughput.
            {"requests_in_flight_to_saturate",
             bottleneck > 0.0 ? nlohmann::json(std::ceil(evaluation.completion_seconds / bottleneck))
                              : nlohmann::json(nullptr)}}},
          {"servers", servers},
          {"links", links},
          {"accuracy",
           {{"error", evaluation.error},
            {"budget", optional_number(workload.accuracy_budget)},
            {"budget_used", std::isfinite(workload.accuracy_budget) && workload.accuracy_budget > 0.0
                                ? nlohmann::json(evaluation.error / workload.accuracy_budget)
                                : nlohmann::json(nullptr)}}},
          {"weight_bytes", evaluation.weight_bytes},
          {"f32_weight_bytes", costs.f32_weight_bytes()},
          {"quantization_ratio", evaluation.quantization_ratio}};
}

}  // namespace detail

inline nlohmann::json Plan::to_json() const {
  const edge::Cluster& cluster = problem.instance.cluster;
  nlohmann::json json{{"format", "dilemma-plan"},
                      {"version", 1},
                      {"method", method},
                      {"status", status_name(status)},
                      {"reasons", reasons}};
  json["objective"] = {{"kind", cost::objective_name(problem.instance.objective)},
                       {"seconds", has_plan() ? nlohmann::json(evaluation.objective) : nlohmann::json(nullptr)}};
  json["models"] = nlohmann::json::array();
  json["servers"] = nlohmann::json::array();
  if (has_plan()) {
    for (std::size_t m = 0; m < assignments.size(); ++m) {
      json["models"].push_back(detail::model_json(problem, m, assignments[m], evaluation.models[m]));
    }
    for (std::size_t j = 0; j < cluster.servers.size(); ++j) {
      json["servers"].push_back({{"name", cluster.servers[j].name},
                                 {"memory_bytes_used", evaluation.server_memory_bytes[j]},
                                 {"memory_bytes_available", cluster.servers[j].memory_bytes},
                                 {"busy_seconds", evaluation.server_busy_seconds[j]}});
    }
  }
  json["solver"] = {{"solver", solver.solver},
                    {"status", solver.status},
                    {"seconds", solver.seconds},
                    {"objective", detail::optional_number(solver.objective)},
                    {"best_bound", detail::optional_number(solver.best_bound)},
                    {"gap", detail::optional_number(solver.gap)},
                    {"root_bound", detail::optional_number(solver.root_bound)},
                    {"root_gap", detail::optional_number(solver.root_gap)},
                    {"nodes", solver.nodes},
                    {"variables", solver.variables},
                    {"constraints", solver.constraints}};
  json["options"] = problem.options.to_json();
  json["instance"] = problem.instance.to_json();
  return json;
}

inline Plan Plan::from_json(const nlohmann::json& json, const std::string& source) {
  using dilemma::detail::fail;
  if (!json.is_object() || json.value("format", "") != "dilemma-plan") {
    fail("{}: not a dilemma plan (expected \"format\": \"dilemma-plan\")", source);
  }
  if (json.value("version", 0) != 1) fail("{}: unsupported plan version {}", source, json.value("version", 0));
  Plan plan;
  plan.method = edge::detail::require_string(json, "method", source);
  plan.status = parse_status(edge::detail::require_string(json, "status", source), source + ": status");
  const auto& reasons = edge::detail::require(json, "reasons", source);
  if (!reasons.is_array()) fail("{}: reasons: expected an array of strings", source);
  for (const auto& reason : reasons) {
    if (!reason.is_string()) fail("{}: reasons: expected strings, got {}", source, reason.dump());
    plan.reasons.push_back(reason.get<std::string>());
  }
  plan.problem.instance =
      cost::Instance::from_json(edge::detail::require(json, "instance", source), source + ": instance");
  plan.problem.options = Options::from_json(edge::detail::require(json, "options", source), source + ": options");
  plan.problem.validate(source);

  const auto& solver = edge::detail::require(json, "solver", source);
  const std::string solver_what = source + ": solver";
  plan.solver.solver = edge::detail::require_string(solver, "solver", solver_what);
  plan.solver.status = edge::detail::require_string(solver, "status", solver_what);
  plan.solver.seconds = detail::read_optional_number(solver, "seconds", solver_what).value_or(0.0);
  plan.solver.objective = detail::read_optional_number(solver, "objective", solver_what);
  plan.solver.best_bound = detail::read_optional_number(solver, "best_bound", solver_what);
  plan.solver.gap = detail::read_optional_number(solver, "gap", solver_what);
  plan.solver.root_bound = detail::read_optional_number(solver, "root_bound", solver_what);
  plan.solver.root_gap = detail::read_optional_number(solver, "root_gap", solver_what);
  plan.solver.nodes = static_cast<std::int64_t>(detail::read_optional_number(solver, "nodes", solver_what).value_or(0));
  plan.solver.variables =
      static_cast<std::int64_t>(detail::read_optional_number(solver, "variables", solver_what).value_or(0));
  plan.solver.constraints =
      static_cast<std::int64_t>(detail::read_optional_number(solver, "constraints", solver_what).value_or(0));

  const auto& models = edge::detail::require(json, "models", source);
  if (!models.is_array()) fail("{}: models: expected an array", source);
  const auto& instance = plan.problem.instance;
  if (models.empty()) {
    if (plan.status == Status::optimal || plan.status == Status::feasible) {
      fail("{}: the status is {} but the plan places no model", source, status_name(plan.status));
    }
    return plan;
  }
  if (models.size() != instance.workloads.size()) {
    fail("{}: the plan places {} models, its instance has {}", source, models.size(), instance.workloads.size());
  }
  for (std::size_t m = 0; m < models.size(); ++m) {
    const std::string what = fmt::format("{}: models[{}]", source, m);
    const cost::ModelCosts& costs = instance.workloads[m].costs;
    if (edge::detail::require_string(models[m], "name", what) != costs.name) {
      fail("{}: name \"{}\" does not match the instance's model \"{}\"", what, models[m]["name"].get<std::string>(),
           costs.name);
    }
    const auto& stages = edge::detail::require(models[m], "stages", what);
    if (!stages.is_array() || stages.size() != costs.stages.size()) {
      fail("{}: expected {} stages, one per stage of the model", what, costs.stages.size());
    }
    cost::Assignment assignment;
    for (std::size_t s = 0; s < stages.size(); ++s) {
      const std::string where = fmt::format("{}.stages[{}]", what, s);
      if (edge::detail::require_string(stages[s], "stage", where) != costs.stages[s].name) {
        fail("{}: expected stage {}", where, costs.stages[s].name);
      }
      const std::size_t server =
          instance.cluster.server_index(edge::detail::require_string(stages[s], "server", where), where);
      const quant::Format format = quant::parse_format(edge::detail::require_string(stages[s], "format", where), where);
      assignment.push_back({server, format});
    }
    plan.assignments.push_back(std::move(assignment));
  }
  plan.evaluation = evaluate(plan.problem, plan.assignments);
  if (!plan.evaluation.feasible())
    fail("{}: the plan violates its own problem: {}", source, plan.evaluation.violations.front());
  const auto stored =
      detail::read_optional_number(edge::detail::require(json, "objective", source), "seconds", source + ": objective");
  if (!stored || std::abs(*stored - plan.evaluation.objective) > 1e-9 * std::abs(plan.evaluation.objective)) {
    fail(
        "{}: the stored objective ({}) differs from the one its cost tables give ({}): the file was edited or is "
        "corrupt",
        source, stored ? fmt::format("{}", *stored) : std::string("null"), plan.evaluation.objective);
  }
  return plan;
}

inline Plan Plan::load(const std::filesystem::path& path) {
  const nlohmann::json json = io::read_json_file(path, "the plan");
  return from_json(json, path.string());
}

inline void Plan::save(const std::filesystem::path& path) const {
  std::ofstream out(path);
  if (!out) dilemma::detail::fail("{}: cannot write the plan", path.string());
  out << to_json().dump(2) << '\n';
  if (!out) dilemma::detail::fail("{}: writing the plan failed", path.string());
}

}  // namespace dilemma::plan
