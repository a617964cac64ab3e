// plan_study: DILEMMA against every baseline, under the same cost model, as
// the accuracy budget, the links' bandwidth and the servers' speed vary, for
// the bundled tiny-opt on examples/clusters/smart-city.json and an
// OPT-350m-shaped model on examples/clusters/smart-city-opt350m.json. Writes
// one CSV row per (model, sweep, point, method); scripts/study.sh runs it and
// plots the CSV into docs/results/ (docs/results.md discusses the numbers).
//
// tiny-opt's errors are round-to-nearest weight differences measured on its
// weights (cost::rtn_error_table, groups of 32 so that its 96-wide tables can
// be quantized); OPT-350m's are the Gaussian proxy (cost::proxy_error_table),
// since only its shape is bundled. Budgets are fractions of the error with
// every stage in int4. Exit codes: 0 success, 1 bad input, 3 unexpected.

#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/cost/rtn_errors.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/error.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/solve.hpp"
#include "sweeps.hpp"

namespace dilemma::study {
namespace {

struct Subject {
  std::string name;
  model::OptConfig config;
  cost::ErrorTable errors;
  quant::QuantScheme scheme;
  edge::Cluster cluster;
};

struct Settings {
  std::string out = "-";
  bool smoke = false;  // one point per sweep, tiny-opt only: checks the program, measures nothing
  double time_limit_seconds = 120.0;
};

// Speed here scales every server's compute and memory speed in its specs.
edge::Cluster scaled(const edge::Cluster& base, const Point& point) {
  edge::Cluster cluster = with_bandwidth_scaled(base, point.bandwidth_factor);
  for (edge::Server& server : cluster.servers) {
    for (auto& flops : server.peak_flops) {
      if (flops) *flops *= point.speed_factor;
    }
    if (server.memory_bandwidth) *server.memory_bandwidth *= point.speed_factor;
  }
  return cluster;
}

plan::Problem problem_at(const Subject& subject, const Point& point) {
  const edge::Cluster cluster = scaled(subject.cluster, point);
  plan::Problem problem;
  problem.instance.cluster = cluster;
  problem.instance.workloads.push_back(
      {cost::analytic_costs(subject.config, cluster, {128, 32, 1}, subject.errors, {subject.scheme}, subject.name),
       point.budget_share * subject.errors.coarsest_error(), 1.0});
  return problem;
}

using Method = std::function<plan::Plan(const plan::Problem&)>;

std::vector<std::pair<std::string, Method>> methods(const Settings& settings) {
  ilp::SolverOptions options;
  options.time_limit_seconds = settings.time_limit_seconds;
  return {{"dilemma", [options](const plan::Problem& p) { return plan::solve(p, options); }},
          {"greedy", [](const plan::Problem& p) { return plan::greedy(p); }},
          {"single-server-f32", [](const plan::Problem& p) { return plan::single_server(p, quant::Format::f32); }},
          {"placement-only-f32", [](const plan::Problem& p) { return plan::placement_only(p); }},
          {"uniform-int8", [](const plan::Problem& p) { return plan::uniform_format(p, quant::Format::int8); }},
          {"uniform-int4", [](const plan::Problem& p) { return plan::uniform_format(p, quant::Format::int4); }}};
}

std::string number(double value) { return fmt::format("{:.9g}", value); }

void run(const Settings& settings) {
  const std::string examples = DILEMMA_STUDY_EXAMPLES_DIR;
  std::vector<Subject> subjects;
  {
    const auto checkpoint = model::OptCheckpoint::open(DILEMMA_STUDY_TINY_OPT_DIR);
    const quant::QuantScheme groups_of_32{32, false};
    subjects.push_back({"tiny-opt", checkpoint.config(), cost::rtn_error_table(checkpoint, groups_of_32), groups_of_32,
                        edge::Cluster::load(examples + "/smart-city.json")});
  }
  if (!settings.smoke) {
    const model::OptConfig shape = model::opt_350m_config();
    subjects.push_back({"opt-350m", shape, cost::proxy_error_table(shape), {},
                        edge::Cluster::load(examples + "/smart-city-opt350m.json")});
  }
  std::vector<Sweep> sweeps = {
      {"budget",
       {0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0},
       [](double x) { return Point{x, 1.0, 1.0}; }},
      {"bandwidth", {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0}, [](double x) { return Point{0.3, x, 1.0}; }},
      {"speed", {0.25, 0.5, 1.0, 2.0, 4.0}, [](double x) { return Point{0.3, 1.0, x}; }}};
  if (settings.smoke) {
    for (Sweep& sweep : sweeps) sweep.values = {sweep.values[sweep.values.size() / 2]};
  }

  std::ofstream file;
  if (settings.out != "-") {
    file.open(settings.out);
    if (!file) dilemma::detail::fail("{}: cannot write the study's CSV", settings.out);
  }
  std::ostream& out = settings.out == "-" ? std::cout : file;
  out << "model,sweep,x,method,status,completion_s,first_token_s,per_token_s,compute_s,transfer_s,"
         "quantization_ratio,error,budget,servers_used,solve_s,gap\n";
  for (const Subject& subject : subjects) {
    for (const Sweep& sweep : sweeps) {
      for (double x : sweep.values) {
        const plan::Problem problem = problem_at(subject, sweep.point(x));
        for (const auto& [name, method] : methods(settings)) {
          const plan::Plan plan = method(problem);
          const double budget = problem.instance.workloads[0].accuracy_budget;
          std::string row = fmt::format("{},{},{},{},{},", subject.name, sweep.name, number(x), name,
                                        plan::status_name(plan.status));
          if (plan.has_plan()) {
            const cost::ModelEvaluation& model = plan.evaluation.models[0];
            std::set<std::size_t> servers;
            for (const cost::Placement& placement : plan.assignments[0]) servers.insert(placement.server);
            row += fmt::format("{},{},{},{},{},{},{},{},{},", number(model.completion_seconds),
                               number(model.first_token_seconds), number(model.decode_step_seconds),
                               number(model.compute_seconds), number(model.transfer_seconds),
                               number(model.quantization_ratio), number(model.error), number(budget), servers.size());
          } else {
            row += fmt::format(",,,,,,,{},,", number(budget));
          }
          row += fmt::format("{},{}", number(plan.solver.seconds), plan.solver.gap ? number(*plan.solver.gap) : "");
          out << row << '\n' << std::flush;
          std::fprintf(stderr, "%s\n", row.c_str());
        }
      }
    }
  }
  if (!out) dilemma::detail::fail("{}: writing the study's CSV failed", settings.out);
}

}  // namespace
}  // namespace dilemma::study

int main(int argc, char** argv) {
  dilemma::study::Settings settings;
  CLI::App app{"DILEMMA against the baselines as the budget, the bandwidth and the servers' speed vary (CSV)"};
  app.add_option("--out", settings.out, "CSV file ('-': stdout)")->capture_default_str();
  app.add_flag("--smoke", settings.smoke, "One point per sweep on tiny-opt only (a check, not a study)");
  app.add_option("--time-limit", settings.time_limit_seconds, "Seconds CBC may spend on each plan")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    dilemma::study::run(settings);
  } catch (const dilemma::Error& e) {
    std::fprintf(stderr, "plan_study: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plan_study: unexpected error: %s\n", e.what());
    return 3;
  }
  return 0;
}
