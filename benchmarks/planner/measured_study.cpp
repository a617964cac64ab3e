// measured_study: the planner study's sweeps (accuracy budget, link
// bandwidth, server speed), each plan also **run** on the emulated cluster.
// For the bundled tiny-opt on every example cluster: its stages are profiled
// on this machine once, each sweep point's cluster gets a DILEMMA plan from
// those measured costs (cost::measured_costs), the plan runs a SQuAD question
// on the emulated cluster (runtime::run_plan), and the row sets the measured
// delay against the plan's prediction, next to the loss of the quantized
// student the plan produces. Writes one CSV row per (cluster, sweep, point);
// scripts/measured_study.sh runs it, docs/results.md discusses the numbers.
//
// Why measured costs and not the clusters' analytic specs (plan_study): the
// emulated cluster stretches this machine's compute by each server's
// speed_factor, so its delays are the plan's only when the plan's costs are
// this machine's times scaled the same way. For the same reason the speed
// sweep scales speed_factor and stops at 1 for the fastest server: a server
// faster than this machine cannot be emulated.
//
// Exit codes: 0 success, 1 bad input, 3 unexpected.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "dilemma/cost/model_costs.hpp"
#include "dilemma/cost/profiler.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/error.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/eval/teacher_student.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/plan/solve.hpp"
#include "dilemma/runtime/run.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"
#include "summary.hpp"
#include "sweeps.hpp"

namespace dilemma::study {
namespace {

// tiny-opt's 96-wide tables need groups of 32 for the integer formats.
constexpr quant::QuantScheme tiny_opt_scheme{.group_size = 32};

struct Settings {
  std::string out = "-";
  bool smoke = false;  // one point on one cluster: checks the program, measures nothing
  double time_limit_seconds = 60.0;
  std::int64_t new_tokens = 16;
  std::size_t requests = 3;             // measured requests per run (after the warm-up); a run's delays are their means
  std::size_t runs = 5;                 // runs per plan; the row's measured delays are the medians over runs
  std::size_t quality_paragraphs = 16;  // SQuAD dev paragraphs 0:K for the student's loss
};

// Speed here scales speed_factor, which the emulated cluster reproduces.
edge::Cluster scaled(const edge::Cluster& base, const Point& point) {
  edge::Cluster cluster = with_bandwidth_scaled(base, point.bandwidth_factor);
  for (edge::Server& server : cluster.servers) server.speed_factor *= point.speed_factor;
  return cluster;
}

// The speed sweep's factors: up to the one that brings the cluster's fastest
// server to this machine's speed.
std::vector<double> emulable_speed_factors(const edge::Cluster& cluster) {
  double fastest = 0.0;
  for (const edge::Server& server : cluster.servers) fastest = std::max(fastest, server.speed_factor);
  std::vector<double> factors;
  for (double factor : {0.5, 0.75, 1.0, 1.25, 1.5, 2.0}) {
    if (fastest * factor <= 1.0 + 1e-9) factors.push_back(factor);
  }
  return factors;
}

std::string number(double value) { return fmt::format("{:.6g}", value); }

// Measured delays of a plan: each the median over runs of the run's mean over
// its requests. A run on this shared 2-core machine sometimes lands in a
// slower or faster state as a whole (per-token times of one plan differed by
// ±30% between runs, not between the requests of a run), hence runs, not just
// requests.
struct Measured {
  runtime::Compared first_token, per_token, completion;
};

Measured measure(const std::filesystem::path& model_dir, const plan::Plan& plan, const std::vector<TokenId>& prompt,
                 const Settings& settings) {
  runtime::RunOptions options;
  options.scheme = tiny_opt_scheme;
  options.generation = {settings.new_tokens, false};
  std::vector<double> first_token, per_token, completion;
  Measured result;
  for (std::size_t r = 0; r < settings.runs; ++r) {
    const runtime::RunReport report =
        runtime::run_plan(model_dir, plan, std::vector<std::vector<TokenId>>(settings.requests, prompt), options);
    first_token.push_back(report.first_token_seconds.measured);
    per_token.push_back(report.per_token_seconds.measured);
    completion.push_back(report.completion_seconds.measured);
    result.first_token.predicted = report.first_token_seconds.predicted;
    result.per_token.predicted = report.per_token_seconds.predicted;
    result.completion.predicted = report.completion_seconds.predicted;
  }
  result.first_token.measured = bench::summarize(std::move(first_token)).median;
  result.per_token.measured = bench::summarize(std::move(per_token)).median;
  result.completion.measured = bench::summarize(std::move(completion)).median;
  return result;
}

std::string format_list(const plan::Plan& plan, const edge::Cluster& cluster) {
  std::string text;
  for (const cost::Placement& placement : plan.assignments.front()) {
    text += fmt::format("{}{}@{}", text.empty() ? "" : " ", quant::format_name(placement.format),
                        cluster.servers[placement.server].name);
  }
  return text;
}

void run(const Settings& settings) {
  const std::filesystem::path assets = DILEMMA_STUDY_ASSETS_DIR;
  const std::filesystem::path examples = DILEMMA_STUDY_EXAMPLES_DIR;
  const auto model_dir = assets / "models" / "tiny-opt";
  const auto paragraphs = eval::load_squad(assets / "data" / "squad" / "dev-v1.1.json");
  const auto tokenizer = text::BpeTokenizer::load(model_dir);
  const auto teacher = model::OptModel::load(model_dir);
  const auto& config = teacher.config();

  // The demo's request: SQuAD dev paragraph 17, question 0.
  const auto& paragraph = paragraphs.at(17);
  const auto prompt = tokenizer.encode(
      fmt::format("Context: {}\nQuestion: {}\nAnswer:", paragraph.context, paragraph.questions.at(0).question));
  const auto prompt_tokens = static_cast<std::int64_t>(prompt.size());

  cost::ProfilerOptions profiler;
  profiler.scheme = tiny_opt_scheme;
  profiler.prompt_tokens = prompt_tokens;
  profiler.machine = "this machine";
  std::fprintf(stderr, "profiling tiny-opt's stages in every format (P = %lld) ...\n",
               static_cast<long long>(prompt_tokens));
  const cost::Profile profile = cost::profile_model(teacher, std::nullopt, profiler).profile;
  const cost::ErrorTable errors = profile.error_table(cost::ErrorMetric::weight);

  std::vector<std::string> quality_texts;
  for (std::size_t i = 0; i < settings.quality_paragraphs && i < paragraphs.size(); ++i) {
    quality_texts.push_back(paragraphs[i].context);
  }
  std::map<std::vector<quant::Format>, eval::TeacherStudentResult> quality;  // by the plan's formats
  auto quality_of = [&](const std::vector<quant::Format>& formats) -> const eval::TeacherStudentResult& {
    auto found = quality.find(formats);
    if (found != quality.end()) return found->second;
    model::OptModel student = teacher;
    student.quantize(formats, tiny_opt_scheme);
    return quality.emplace(formats, eval::compare_to_teacher(teacher, student, tokenizer, quality_texts))
        .first->second;
  };

  std::vector<std::string> cluster_files = {"smart-city.json", "homogeneous.json", "too-small.json"};
  if (settings.smoke) cluster_files = {"smart-city.json"};

  std::ofstream file;
  if (settings.out != "-") {
    file.open(settings.out);
    if (!file) dilemma::detail::fail("{}: cannot write the study's CSV", settings.out);
  }
  std::ostream& out = settings.out == "-" ? std::cout : file;
  out << "cluster,sweep,x,status,servers_used,plan,quantization_ratio,"
         "first_token_predicted_s,first_token_measured_s,per_token_predicted_s,per_token_measured_s,"
         "completion_predicted_s,completion_measured_s,completion_error,teacher_loss,student_loss,kl,"
         "top1_agreement,reason\n";
  for (const std::string& cluster_file : cluster_files) {
    const edge::Cluster base = edge::Cluster::load(examples / cluster_file);
    std::vector<Sweep> sweeps = {
        {"budget", {0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0}, [](double x) { return Point{x, 1.0, 1.0}; }},
        {"bandwidth", {0.2, 0.5, 1.0, 2.0, 5.0}, [](double x) { return Point{0.3, x, 1.0}; }},
        {"speed", emulable_speed_factors(base), [](double x) { return Point{0.3, 1.0, x}; }}};
    if (settings.smoke) sweeps = {{"budget", {0.3}, [](double x) { return Point{x, 1.0, 1.0}; }}};
    for (const Sweep& sweep : sweeps) {
      for (double x : sweep.values) {
        const Point point = sweep.point(x);
        plan::Problem problem;
        problem.instance.cluster = scaled(base, point);
        problem.instance.workloads.push_back(
            {cost::measured_costs(config, problem.instance.cluster, {prompt_tokens, settings.new_tokens, 1}, errors,
                                  profile, {tiny_opt_scheme}, "tiny-opt"),
             point.budget_share * errors.coarsest_error(), 1.0});
        ilp::SolverOptions solver;
        solver.time_limit_seconds = settings.time_limit_seconds;
        const plan::Plan plan = plan::solve(problem, solver);
        std::string row = fmt::format("{},{},{},{},", base.name, sweep.name, number(x), plan::status_name(plan.status));
        if (!plan.has_plan()) {
          std::string reason = plan.reasons.empty() ? std::string("no plan") : plan.reasons.front();
          std::replace(reason.begin(), reason.end(), '"', '\'');
          std::replace(reason.begin(), reason.end(), '\n', ' ');
          row += fmt::format(",,,,,,,,,,,,,,\"{}\"", reason);
        } else {
          const Measured measured = measure(model_dir, plan, prompt, settings);
          std::vector<quant::Format> formats;
          std::set<std::size_t> servers;
          for (const cost::Placement& placement : plan.assignments.front()) {
            formats.push_back(placement.format);
            servers.insert(placement.server);
          }
          const eval::TeacherStudentResult& q = quality_of(formats);
          row += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},", servers.size(),
                             format_list(plan, problem.instance.cluster),
                             number(plan.evaluation.models.front().quantization_ratio),
                             number(measured.first_token.predicted), number(measured.first_token.measured),
                             number(measured.per_token.predicted), number(measured.per_token.measured),
                             number(measured.completion.predicted), number(measured.completion.measured),
                             number(measured.completion.relative_error()), number(q.teacher.loss),
                             number(q.student.loss), number(q.kl), number(q.top1_agreement));
        }
        out << row << '\n' << std::flush;
        std::fprintf(stderr, "%s\n", row.c_str());
      }
    }
  }
  if (!out) dilemma::detail::fail("{}: writing the study's CSV failed", settings.out);
}

}  // namespace
}  // namespace dilemma::study

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  mallopt(M_ARENA_MAX, 1);  // as the dilemma CLI does, for the emulated nodes' threads (examples/cli/main.cpp)
#endif
  dilemma::study::Settings settings;
  CLI::App app{"The planner study's sweeps, each plan run on the emulated cluster: measured vs predicted delay and "
               "the student's loss (CSV)"};
  app.add_option("--out", settings.out, "CSV file ('-': stdout)")->capture_default_str();
  app.add_flag("--smoke", settings.smoke, "One point on one cluster (a check, not a study)");
  app.add_option("--time-limit", settings.time_limit_seconds, "Seconds CBC may spend on each plan")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--requests", settings.requests, "Measured requests per run, after one warm-up request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--runs", settings.runs, "Runs per plan (measured delays: medians over runs)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    dilemma::study::run(settings);
  } catch (const dilemma::Error& e) {
    std::fprintf(stderr, "measured_study: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "measured_study: unexpected error: %s\n", e.what());
    return 3;
  }
  return 0;
}
