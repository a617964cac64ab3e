// `dilemma plan`: the placement and format of every stage of one or more
// models on an edge cluster, by DILEMMA's integer program or a baseline, as a
// human table on stdout and a plan file (plan::Plan::to_json) for the runtime.
// Exit codes: 0 with a plan, 2 when there is none (the reasons are printed and
// stored in the plan file), 1 for bad input.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "plan_report.hpp"
#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/cost/profile.hpp"
#include "dilemma/cost/rtn_errors.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/edge/units.hpp"
#include "dilemma/error.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/brute_force.hpp"
#include "dilemma/plan/solve.hpp"

namespace dilemma::cli {

namespace {

// The exit code of `dilemma plan` when it finds no plan.
constexpr int no_plan_exit_code = 2;

struct PlanOptions {
  std::vector<std::string> models;
  std::vector<double> weights;
  std::string cluster;
  std::int64_t prompt_tokens = 128;
  std::int64_t new_tokens = 32;
  std::int64_t requests_in_flight = 1;
  std::vector<std::string> budgets;
  std::string objective = "latency";
  std::vector<std::string> costs{"analytic"};
  std::string error_metric = "weight";
  std::string method = "dilemma";
  double time_limit = 60.0;
  double gap = 0.0;
  int threads = 1;
  std::string formats;
  std::vector<std::string> server_formats;
  std::vector<std::string> pins;
  std::optional<std::size_t> max_servers;
  bool contiguous = false;
  std::int64_t group_size = 64;
  bool int4_asymmetric = false;
  std::string out;
};

// Model shapes that can be planned without weights.
std::optional<model::OptConfig> known_shape(const std::string& name) {
  if (name == "opt-350m") return model::opt_350m_config();
  return std::nullopt;
}

// "--option given N times: give it once, or once per --model (M)".
template <typename T>
const T& per_model(const std::vector<T>& values, std::size_t m, std::size_t models, const char* option) {
  if (values.size() != 1 && values.size() != models) {
    dilemma::detail::fail("{} is given {} times: give it once, or once per --model ({})", option, values.size(),
                          models);
  }
  return values.size() == 1 ? values.front() : values[m];
}

// "1e-4" (an absolute budget on Σ E) or "30%" (of the coarsest plan's error).
double parse_budget(const std::string& text, const cost::ErrorTable& errors) {
  const bool percent = !text.empty() && text.back() == '%';
  const std::string_view number = std::string_view(text).substr(0, text.size() - (percent ? 1 : 0));
  double value = 0.0;
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || error != std::errc() || end != number.data() + number.size() || !std::isfinite(value) ||
      value < 0.0) {
    dilemma::detail::fail(
        "--budget: \"{}\" is not a budget (expected a number >= 0, the sum of the stages' errors, or a percentage "
        "of the error with every stage in its coarsest format, e.g. 30%)",
        text);
  }
  return percent ? value / 100.0 * errors.coarsest_error() : value;
}

struct ModelSource {
  std::string name;
  model::OptConfig config;
  std::optional<std::filesystem::path> directory;  // nullopt: a shape name, no weights
};

ModelSource resolve_model(const std::string& argument) {
  if (auto shape = known_shape(argument)) return {argument, *shape, std::nullopt};
  const std::filesystem::path directory(argument);
  if (!std::filesystem::is_directory(directory)) {
    dilemma::detail::fail("--model: \"{}\" is neither a model directory nor a known model shape (opt-350m)", argument);
  }
  std::string name = std::filesystem::absolute(directory).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::absolute(directory).lexically_normal().parent_path().filename().string();
  return {name, model::OptConfig::load(directory / "config.json"), directory};
}

cost::ErrorTable error_table(const ModelSource& source, const std::optional<cost::Profile>& profile,
                             cost::ErrorMetric metric, const quant::QuantScheme& scheme) {
  if (profile) return profile->error_table(metric);
  if (metric == cost::ErrorMetric::output) {
    dilemma::detail::fail(
        "--error-metric output needs a profile with output errors (--costs PROFILE.json from `dilemma profile`)");
  }
  if (source.directory) return cost::rtn_error_table(model::OptCheckpoint::open(*source.directory), scheme);
  return cost::proxy_error_table(source.config, scheme);
}

plan::Pin parse_pin(const std::string& text) {
  // [MODEL/]STAGE=SERVER[:FORMAT]
  const auto equals = text.find('=');
  if (equals == std::string::npos || equals == 0 || equals + 1 == text.size()) {
    dilemma::detail::fail("--pin: \"{}\" is not STAGE=SERVER[:FORMAT] (e.g. head=gateway:int8)", text);
  }
  plan::Pin pin;
  std::string stage = text.substr(0, equals);
  if (const auto slash = stage.find('/'); slash != std::string::npos) {
    pin.model = stage.substr(0, slash);
    stage = stage.substr(slash + 1);
  }
  pin.stage = stage;
  std::string server = text.substr(equals + 1);
  if (const auto colon = server.rfind(':'); colon != std::string::npos) {
    pin.format = quant::parse_format(server.substr(colon + 1), "--pin " + text);
    server = server.substr(0, colon);
  }
  pin.server = server;
  return pin;
}

plan::Problem build_problem(const PlanOptions& options) {
  const edge::Cluster cluster = edge::Cluster::load(options.cluster);
  const std::size_t models = options.models.size();
  if (!options.weights.empty() && options.weights.size() != models) {
    dilemma::detail::fail("--weight is given {} times for {} models: give one per --model, or none",
                          options.weights.size(), models);
  }
  const cost::ErrorMetric metric = cost::parse_error_metric(options.error_metric, "--error-metric");
  const quant::QuantScheme scheme{options.group_size, options.int4_asymmetric};
  const cost::Request request{options.prompt_tokens, options.new_tokens, options.requests_in_flight};

  plan::Problem problem;
  problem.instance.cluster = cluster;
  problem.instance.objective = cost::parse_objective(options.objective, "--objective");
  std::vector<std::string> names;
  for (std::size_t m = 0; m < models; ++m) {
    const ModelSource source = resolve_model(options.models[m]);
    // Copies of one model get distinct names: a model's name keys pins and reports.
    std::string name = source.name;
    for (int copy = 2; std::find(names.begin(), names.end(), name) != names.end(); ++copy) {
      name = fmt::format("{}#{}", source.name, copy);
    }
    names.push_back(name);
    const std::string& costs_source = per_model(options.costs, m, models, "--costs");
    std::optional<cost::Profile> profile;
    if (costs_source != "analytic") profile = cost::Profile::load(costs_source);
    const cost::ErrorTable errors = error_table(source, profile, metric, scheme);
    cost::Workload workload;
    workload.costs = profile ? cost::measured_costs(source.config, cluster, request, errors, *profile, {scheme}, name)
                             : cost::analytic_costs(source.config, cluster, request, errors, {scheme}, name);
    if (!options.budgets.empty()) {
      workload.accuracy_budget = parse_budget(per_model(options.budgets, m, models, "--budget"), errors);
    }
    if (!options.weights.empty()) workload.weight = options.weights[m];
    problem.instance.workloads.push_back(std::move(workload));
  }
  if (!options.formats.empty()) problem.options.formats = quant::parse_format_set(options.formats, "--formats");
  for (const std::string& entry : options.server_formats) {
    const auto equals = entry.find('=');
    if (equals == std::string::npos || equals == 0) {
      dilemma::detail::fail("--server-formats: \"{}\" is not SERVER=FORMAT,... (e.g. gateway=int8,int4)", entry);
    }
    problem.options.server_formats[entry.substr(0, equals)] =
        quant::parse_format_set(std::string_view(entry).substr(equals + 1), "--server-formats " + entry);
  }
  for (const std::string& pin : options.pins) problem.options.pins.push_back(parse_pin(pin));
  problem.options.max_servers = options.max_servers;
  problem.options.contiguous = options.contiguous;
  problem.validate("the planning problem");
  return problem;
}

plan::Plan run_method(const PlanOptions& options, const plan::Problem& problem) {
  ilp::SolverOptions solver;
  solver.time_limit_seconds = options.time_limit;
  solver.relative_gap = options.gap;
  solver.threads = options.threads;
  const std::string& method = options.method;
  if (method == "dilemma") return plan::solve(problem, solver);
  if (method == "brute-force") return plan::brute_force(problem);
  if (method == "greedy") return plan::greedy(problem);
  if (method == "annealing") return plan::anneal(problem);
  if (method == "single-server") return plan::single_server(problem, quant::Format::f32);
  if (method == "uniform-int8") return plan::uniform_format(problem, quant::Format::int8);
  if (method == "uniform-int4") return plan::uniform_format(problem, quant::Format::int4);
  return plan::placement_only(problem);  // CLI11 admits only the listed methods
}

void run_plan(const PlanOptions& options) {
  const plan::Problem problem = build_problem(options);
  const plan::Plan plan = run_method(options, problem);
  plan.save(options.out);
  print_plan(plan);
  fmt::print("plan written to {}\n", options.out);
  if (!plan.has_plan()) throw CLI::RuntimeError(no_plan_exit_code);
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto options = std::make_shared<PlanOptions>();
  auto* command = app.add_subcommand(
      "plan",
      "Place every stage of the model(s) on the cluster's servers and choose its format (f32/f16/int8/int4): "
      "DILEMMA's integer program solved by CBC, or a baseline. Exit 0 with a plan, 2 without one");
  command
      ->add_option("--model", options->models,
                   "Model directory (config.json, and weights for measured errors) or shape name (opt-350m); "
                   "repeat to place several models jointly")
      ->required();
  command->add_option("--weight", options->weights,
                      "Weight of each model's delay in the objective (latency), or its share of requests "
                      "(throughput); one per --model")
      ->check(CLI::PositiveNumber);
  command->add_option("--cluster", options->cluster, "Cluster JSON (examples/clusters/)")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--prompt-tokens", options->prompt_tokens, "P: prompt tokens of a request")
      ->capture_default_str();
  command->add_option("--new-tokens", options->new_tokens, "N: generated tokens of a request")->capture_default_str();
  command->add_option("--requests-in-flight", options->requests_in_flight,
                      "Requests whose KV caches must fit in memory at once")
      ->capture_default_str();
  command->add_option("--budget", options->budgets,
                      "Accuracy budget: the largest allowed sum of the stages' errors (e.g. 2e-4), or a percentage of "
                      "the error with every stage in its coarsest format (e.g. 30%); once, or once per --model. "
                      "Default: no budget");
  command->add_option("--objective", options->objective, "latency (completion time) or throughput (bottleneck)")
      ->check(CLI::IsMember({"latency", "throughput"}))
      ->capture_default_str();
  command->add_option("--costs", options->costs,
                      "analytic (roofline from the cluster's specs) or a profile JSON from `dilemma profile` "
                      "(measured times and errors); once, or once per --model")
      ->capture_default_str();
  command->add_option("--error-metric", options->error_metric,
                      "weight (normalized weight difference, the paper's) or output (normalized output error; "
                      "needs a profile). Without a profile, weight errors are measured on the model's weights by "
                      "round-to-nearest, or estimated for a shape name")
      ->check(CLI::IsMember({"weight", "output"}))
      ->capture_default_str();
  command
      ->add_option("--method", options->method,
                   "dilemma (the ILP), brute-force, greedy, annealing (greedy's plan improved by simulated "
                   "annealing), single-server (f32), uniform-int8, uniform-int4, placement-only (f32, dynamic "
                   "programming)")
      ->check(CLI::IsMember({"dilemma", "brute-force", "greedy", "annealing", "single-server", "uniform-int8",
                             "uniform-int4", "placement-only"}))
      ->capture_default_str();
  command->add_option("--time-limit", options->time_limit, "Seconds CBC may search (dilemma)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--gap", options->gap, "Stop at this relative gap to the proven bound (dilemma; 0 = optimal)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command->add_option("--threads", options->threads, "CBC threads (dilemma)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  command->add_option("--formats", options->formats, "Formats any stage may use, e.g. f16,int8,int4 (default all)");
  command->add_option("--server-formats", options->server_formats,
                      "Restrict one server further: SERVER=FORMAT,... (repeatable)");
  command->add_option("--pin", options->pins,
                      "Force a stage onto a server: [MODEL/]STAGE=SERVER[:FORMAT], e.g. head=gateway:int8 "
                      "(repeatable)");
  command->add_option("--max-servers", options->max_servers, "Use at most this many servers")
      ->check(CLI::PositiveNumber);
  command->add_flag("--contiguous", options->contiguous, "Each server holds one contiguous range of each model's stages");
  command->add_option("--group-size", options->group_size, "Integer formats' group size (a multiple of 32)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_flag("--int4-asymmetric", options->int4_asymmetric, "int4 with a per-group offset");
  command->add_option("--out", options->out, "Write the plan JSON here")->required();
  command->callback([options] { run_plan(*options); });
}

}  // namespace dilemma::cli
