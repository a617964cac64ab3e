// bench_planner: wall-clock time for CBC to solve DILEMMA's integer program
// to proven optimality (or to the time limit), with the gap between the LP
// relaxation at the root and the optimum, on seeded instances of the sizes
// issue 4 sets targets for (26 stages × 3, 5, 10 servers: < 1 s; 66 stages ×
// 16 servers: < 10 s) and on the example clusters. What is measured and why:
// docs/performance.md, "Planner solve times".
//
// Exit codes: 0 success, 1 bad input (a dilemma::Error), CLI11's codes for
// command-line mistakes, 3 for anything unexpected.

#include <Cbc_C_Interface.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/error.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/plan/annealing.hpp"
#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/solve.hpp"
#include "dilemma/version.hpp"
#include "planner_instances.hpp"

namespace dilemma::bench {
namespace {

struct Settings {
  std::string out = "-";
  std::vector<std::string> instances;
  std::string objective = "latency";
  double time_limit_seconds = 60.0;
  int threads = 1;
  std::vector<std::string> cbc_parameters;  // NAME=VALUE, after plan::solve's own settings
};

struct NamedProblem {
  std::string name;
  std::string description;
  std::optional<double> target_seconds;  // issue 4's target, where it sets one
  plan::Problem problem;
};

double all_int4_error(const cost::ErrorTable& errors) {
  double sum = 0.0;
  for (std::size_t s = 0; s < errors.errors.size(); ++s) sum += *errors.error(s, quant::Format::int4);
  return sum;
}

// An example cluster with one model on it, budget 30% of the all-int4 error.
plan::Problem example_problem(const std::string& cluster_file, const model::OptConfig& config, const std::string& model,
                              const quant::QuantScheme& scheme, cost::Objective objective) {
  const edge::Cluster cluster = edge::Cluster::load(std::string(DILEMMA_BENCH_EXAMPLES_DIR) + "/" + cluster_file);
  const cost::ErrorTable errors = cost::proxy_error_table(config, scheme);
  plan::Problem problem;
  problem.instance.cluster = cluster;
  problem.instance.objective = objective;
  problem.instance.workloads.push_back({cost::analytic_costs(config, cluster, {128, 32, 1}, errors, {scheme}, model),
                                        0.3 * all_int4_error(errors), 1.0});
  return problem;
}

std::vector<NamedProblem> all_problems(cost::Objective objective) {
  std::vector<NamedProblem> problems;
  const model::OptConfig opt_350m = model::opt_350m_config();
  std::uint64_t seed = 1;
  for (std::size_t servers : {3, 5, 10}) {
    const PlannerInstance spec{"opt-350m", opt_350m, servers, seed++};
    problems.push_back({fmt::format("opt-350m-{}", servers),
                        fmt::format("OPT-350m shape (26 stages), {} random heterogeneous servers", servers), 1.0,
                        make_problem(spec, objective)});
  }
  problems.push_back({"opt-66b-16", "OPT-66b shape (66 stages), 16 random heterogeneous servers", 10.0,
                      make_problem({"opt-66b", opt_66b_config(), 16, seed++}, objective)});
  problems.push_back({"tiny-opt-smart-city",
                      "bundled tiny-opt (10 stages, int groups of 32) on examples/clusters/smart-city.json",
                      std::nullopt,
                      example_problem("smart-city.json",
                                      model::OptConfig::load(std::string(DILEMMA_BENCH_TINY_OPT_DIR) + "/config.json"),
                                      "tiny-opt", {32, false}, objective)});
  problems.push_back({"opt-350m-smart-city", "OPT-350m shape (26 stages) on examples/clusters/smart-city-opt350m.json",
                      std::nullopt, example_problem("smart-city-opt350m.json", opt_350m, "opt-350m", {}, objective)});
  return problems;
}

nlohmann::json optional_number(const std::optional<double>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json load_average() {
  std::ifstream in("/proc/loadavg");
  double one = 0, five = 0, fifteen = 0;
  if (!(in >> one >> five >> fifteen)) return nullptr;
  return nlohmann::json::array({one, five, fifteen});
}

nlohmann::json machine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  nlohmann::json model = nullptr;
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return {{"cpu_model", model}, {"hardware_threads", std::max(1u, std::thread::hardware_concurrency())}};
}

// Greedy's plan and annealing's on their own, against CBC's bound: what a
// caller gets without the ILP, and what plan::solve falls back on.
nlohmann::json heuristics(const NamedProblem& named, const plan::Plan& solved) {
  nlohmann::json result = nlohmann::json::object();
  for (const plan::Plan& plan : {plan::greedy(named.problem), plan::anneal(named.problem)}) {
    const std::optional<double> bound = solved.solver.best_bound;
    result[plan.method] = {
        {"objective_seconds", plan.has_plan() ? nlohmann::json(plan.objective()) : nlohmann::json(nullptr)},
        {"seconds", plan.solver.seconds},
        {"gap_to_best_bound", plan.has_plan() && bound ? nlohmann::json((plan.objective() - *bound) / plan.objective())
                                                       : nlohmann::json(nullptr)}};
  }
  return result;
}

nlohmann::json run(const NamedProblem& named, const ilp::SolverOptions& options) {
  const plan::Plan plan = plan::solve(named.problem, options);
  const cost::Workload& workload = named.problem.instance.workloads.front();
  std::set<std::size_t> servers_used;
  for (const cost::Placement& placement : plan.has_plan() ? plan.assignments.front() : cost::Assignment{}) {
    servers_used.insert(placement.server);
  }
  const bool proven = plan.status == plan::Status::optimal;
  nlohmann::json result{
      {"name", named.name},
      {"description", named.description},
      {"stages", workload.costs.stages.size()},
      {"servers", named.problem.instance.cluster.servers.size()},
      {"formats", quant::all_formats.size()},
      {"objective", cost::objective_name(named.problem.instance.objective)},
      {"status", plan::status_name(plan.status)},
      {"proven_optimal", proven},
      {"solve_seconds", plan.solver.seconds},
      {"target_seconds", optional_number(named.target_seconds)},
      {"within_target", named.target_seconds ? nlohmann::json(proven && plan.solver.seconds < *named.target_seconds)
                                             : nlohmann::json(nullptr)},
      {"nodes", plan.solver.nodes},
      {"variables", plan.solver.variables},
      {"constraints", plan.solver.constraints},
      {"objective_seconds", plan.has_plan() ? nlohmann::json(plan.objective()) : nlohmann::json(nullptr)},
      {"best_bound_seconds", optional_number(plan.solver.best_bound)},
      {"gap", optional_number(plan.solver.gap)},
      {"root_lp_bound_seconds", optional_number(plan.solver.root_bound)},
      {"root_lp_gap", optional_number(plan.solver.root_gap)},
      {"servers_used", servers_used.size()},
      {"quantization_ratio",
       plan.has_plan() ? nlohmann::json(plan.evaluation.models.front().quantization_ratio) : nlohmann::json(nullptr)},
      {"reasons", plan.reasons},
      {"heuristics", heuristics(named, plan)}};
  return result;
}

std::string format_optional(const nlohmann::json& value, const char* pattern, double scale = 1.0) {
  return value.is_null() ? std::string("-") : fmt::format(fmt::runtime(pattern), value.get<double>() * scale);
}

int main_checked(int argc, char** argv) {
  Settings settings;
  CLI::App app{"Time for CBC to solve DILEMMA's placement and quantization ILP to proven optimality"};
  app.add_option("--out", settings.out, "Write the JSON report here ('-': stdout)")->capture_default_str();
  app.add_option("--instances", settings.instances,
                 "Instances to solve (default all): opt-350m-3, opt-350m-5, opt-350m-10, opt-66b-16, "
                 "tiny-opt-smart-city, opt-350m-smart-city")
      ->delimiter(',');
  app.add_option("--objective", settings.objective, "latency, throughput or both")
      ->check(CLI::IsMember({"latency", "throughput", "both"}))
      ->capture_default_str();
  app.add_option("--time-limit", settings.time_limit_seconds, "Seconds CBC may spend on each instance")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--threads", settings.threads, "CBC threads")->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--cbc", settings.cbc_parameters,
                 "CBC parameters NAME=VALUE, as on CBC's command line without the dash (e.g. feasibilityPump=on); "
                 "they override plan::solve's settings");
  CLI11_PARSE(app, argc, argv);

  ilp::SolverOptions options;
  options.time_limit_seconds = settings.time_limit_seconds;
  options.threads = settings.threads;
  for (const std::string& parameter : settings.cbc_parameters) {
    const auto equals = parameter.find('=');
    if (equals == std::string::npos || equals == 0) {
      dilemma::detail::fail("--cbc: expected NAME=VALUE, got \"{}\"", parameter);
    }
    options.parameters.emplace_back(parameter.substr(0, equals), parameter.substr(equals + 1));
  }
  std::vector<cost::Objective> objectives;
  if (settings.objective != "throughput") objectives.push_back(cost::Objective::latency);
  if (settings.objective != "latency") objectives.push_back(cost::Objective::throughput);

  const nlohmann::json load_before = load_average();
  nlohmann::json results = nlohmann::json::array();
  std::set<std::string> seen;
  for (cost::Objective objective : objectives) {
    for (const NamedProblem& named : all_problems(objective)) {
      if (!settings.instances.empty() &&
          std::find(settings.instances.begin(), settings.instances.end(), named.name) == settings.instances.end()) {
        continue;
      }
      seen.insert(named.name);
      nlohmann::json result = run(named, options);
      const nlohmann::json& annealing = result["heuristics"]["annealing"];
      std::fprintf(stderr,
                   "%-21s %-10s %2zu stages %2zu servers  %-9s %8.2f s  %7lld nodes  root LP gap %6s  final gap %6s"
                   "  annealing alone %6.2f s, gap %6s\n",
                   named.name.c_str(), result["objective"].get<std::string>().c_str(),
                   result["stages"].get<std::size_t>(), result["servers"].get<std::size_t>(),
                   result["status"].get<std::string>().c_str(), result["solve_seconds"].get<double>(),
                   static_cast<long long>(result["nodes"].get<std::int64_t>()),
                   format_optional(result["root_lp_gap"], "{:.1f}%", 100.0).c_str(),
                   format_optional(result["gap"], "{:.1f}%", 100.0).c_str(), annealing["seconds"].get<double>(),
                   format_optional(annealing["gap_to_best_bound"], "{:.1f}%", 100.0).c_str());
      results.push_back(std::move(result));
    }
  }
  for (const std::string& name : settings.instances) {
    if (!seen.contains(name)) dilemma::detail::fail("--instances: unknown instance \"{}\"", name);
  }

  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const nlohmann::json report{
      {"benchmark", "bench_planner"},
      {"dilemma_version", version_string},
      {"date", date},
      {"machine", machine()},
      {"load_average_before", load_before},
      {"load_average_after", load_average()},
      {"build",
       {{"compiler", DILEMMA_BENCH_COMPILER}, {"build_type", DILEMMA_BENCH_BUILD_TYPE}, {"cbc", Cbc_getVersion()}}},
      {"settings",
       {{"time_limit_seconds", settings.time_limit_seconds},
        {"threads", settings.threads},
        {"cbc_parameters", settings.cbc_parameters},
        {"relative_gap", options.relative_gap},
        {"request", {{"prompt_tokens", 128}, {"new_tokens", 32}}},
        {"random_clusters", {{"memory_share_of_f32_model", 0.45}, {"budget_share_of_all_int4_error", 0.3}}}}},
      {"results", results}};
  if (settings.out == "-") {
    std::cout << report.dump(2) << '\n';
  } else {
    std::ofstream out(settings.out);
    out << report.dump(2) << '\n';
    if (!out) dilemma::detail::fail("{}: cannot write the report", settings.out);
  }
  return 0;
}

}  // namespace
}  // namespace dilemma::bench

int main(int argc, char** argv) {
  try {
    return dilemma::bench::main_checked(argc, argv);
  } catch (const dilemma::Error& e) {
    std::fprintf(stderr, "bench_planner: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_planner: unexpected error: %s\n", e.what());
    return 3;
  }
}
