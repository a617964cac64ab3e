// `dilemma demo`: the whole pipeline on the bundled tiny OPT model. A SQuAD
// question becomes a request; the model's stages are profiled on this
// machine; DILEMMA's ILP places and quantizes them on a smart-city cluster
// whose boxes are each too small for the model; the plan runs on the emulated
// cluster and answers; measured delay is set against the prediction, and the
// quantized student's quality against its f32 teacher.

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "plan_report.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/cost/profiler.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/edge/units.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/eval/teacher_student.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/plan/solve.hpp"
#include "dilemma/runtime/run.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

struct DemoOptions {
  std::string assets_dir = "assets";
  std::string cluster_file = "examples/clusters/smart-city.json";
  std::size_t paragraph = 17;
  std::size_t question = 0;
  std::int64_t max_new_tokens = 16;
  double budget = 0.3;  // share of the error of the coarsest (all-int4) model
  std::size_t quality_paragraphs = 16;
};

// tiny-opt's embedding, project_in and tied head are 96 wide: integer formats
// need groups of 32 (the default 64 does not divide 96).
constexpr quant::QuantScheme tiny_opt_scheme{.group_size = 32};

void section(const char* title) { fmt::print("\n== {} ==\n", title); }

void run_demo(const DemoOptions& options) {
  using dilemma::detail::fail;
  const std::filesystem::path assets = options.assets_dir;
  const auto model_dir = assets / "models" / "tiny-opt";
  const auto squad_file = assets / "data" / "squad" / "dev-v1.1.json";
  if (!(options.budget >= 0.0 && options.budget <= 1.0)) {
    fail("--budget: expected a fraction of the all-int4 error in [0, 1], got {}", options.budget);
  }
  const auto paragraphs = eval::load_squad(squad_file);
  if (options.paragraph >= paragraphs.size()) {
    fail("--paragraph {} is past the last SQuAD dev paragraph ({})", options.paragraph, paragraphs.size() - 1);
  }
  const auto& paragraph = paragraphs[options.paragraph];
  if (options.question >= paragraph.questions.size()) {
    fail("--question {}: paragraph {} has {} questions", options.question, options.paragraph,
         paragraph.questions.size());
  }
  const auto& question = paragraph.questions[options.question];
  const auto tokenizer = text::BpeTokenizer::load(model_dir);
  const auto teacher = model::OptModel::load(model_dir);
  const auto& config = teacher.config();
  const std::string prompt = fmt::format("Context: {}\nQuestion: {}\nAnswer:", paragraph.context, question.question);
  const auto prompt_ids = tokenizer.encode(prompt);
  const auto prompt_tokens = static_cast<std::int64_t>(prompt_ids.size());
  if (prompt_tokens + options.max_new_tokens > config.max_position_embeddings) {
    fail("--max-new-tokens: the prompt's {} tokens and {} new ones exceed the model's {} positions", prompt_tokens,
         options.max_new_tokens, config.max_position_embeddings);
  }
  const edge::Cluster cluster = edge::Cluster::load(options.cluster_file);

  section("request");
  fmt::print("model     {}: OPT, {} layers, hidden {}, {} stages, {:.1f} MiB in f32\n", model_dir.string(),
             config.num_hidden_layers, config.hidden_size, teacher.stages().size(),
             static_cast<double>(teacher.weight_bytes()) / (1 << 20));
  fmt::print("article   {} (SQuAD v1.1 dev paragraph {})\n", paragraph.title, options.paragraph);
  fmt::print("question  {}\n", question.question);
  fmt::print("request   {} prompt tokens, up to {} new tokens\n", prompt_tokens, options.max_new_tokens);

  section("profile: every stage in every format, timed on this machine");
  cost::ProfilerOptions profiler;
  profiler.scheme = tiny_opt_scheme;
  profiler.prompt_tokens = prompt_tokens;
  profiler.machine = "this machine";
  const cost::Profile profile = cost::profile_model(teacher, std::nullopt, profiler).profile;
  double f32_prefill = 0.0, int4_prefill = 0.0;
  for (const auto& stage : profile.times) {
    f32_prefill += stage[static_cast<std::size_t>(quant::Format::f32)]->prefill_seconds;
    int4_prefill += stage[static_cast<std::size_t>(quant::Format::int4)]->prefill_seconds;
  }
  fmt::print("{} stages x {} formats; whole-model prefill of the prompt: {} in f32, {} in int4\n",
             profile.stage_names.size(), quant::all_formats.size(), edge::format_seconds(f32_prefill),
             edge::format_seconds(int4_prefill));

  section("plan: DILEMMA's placement and quantization ILP, solved by CBC");
  const cost::ErrorTable errors = profile.error_table(cost::ErrorMetric::weight);
  plan::Problem problem;
  problem.instance.cluster = cluster;
  problem.instance.workloads.push_back(
      {cost::measured_costs(config, cluster, {prompt_tokens, options.max_new_tokens, 1}, errors, profile,
                            {tiny_opt_scheme}, "tiny-opt"),
       options.budget * errors.coarsest_error(), 1.0});
  fmt::print("cluster   {} ({}): {} servers, {} in all for the model; the budget is {:.0f}% of the all-int4 "
             "error\n",
             cluster.name, options.cluster_file, cluster.servers.size(),
             edge::format_bytes([&] {
               double total = 0.0;
               for (const auto& server : cluster.servers) total += server.memory_bytes;
               return total;
             }()),
             100.0 * options.budget);
  const plan::Plan plan = plan::solve(problem);
  print_plan(plan);
  if (!plan.has_plan()) fail("{}: no plan for tiny-opt on this cluster (the reasons are above)", options.cluster_file);

  section("run: the plan on the emulated cluster (links and server speeds emulated)");
  runtime::RunOptions run;
  run.scheme = tiny_opt_scheme;
  run.generation.max_new_tokens = options.max_new_tokens;
  std::vector<TokenId> answer_ids;
  run.on_token = [&](std::size_t, TokenId id) { answer_ids.push_back(id); };
  const runtime::RunReport report = runtime::run_plan(model_dir, plan, {prompt_ids}, run);
  std::string answer = tokenizer.decode(answer_ids);
  answer = answer.substr(0, answer.find('\n'));  // the model writes on after the answer's line
  answer.erase(0, answer.find_first_not_of(' '));
  fmt::print("answer    {}\n", answer);
  fmt::print("gold      {}\n\n", fmt::join(question.answers, " | "));
  fmt::print("{}", report.table());

  section("quality: the plan's quantized student against its f32 teacher");
  model::OptModel student = teacher;
  std::vector<quant::Format> formats;
  for (const cost::Placement& placement : plan.assignments.front()) formats.push_back(placement.format);
  student.quantize(formats, tiny_opt_scheme);
  std::vector<std::string> texts;
  for (std::size_t i = 0; i < options.quality_paragraphs && i < paragraphs.size(); ++i) {
    texts.push_back(paragraphs[i].context);
  }
  const auto quality = eval::compare_to_teacher(teacher, student, tokenizer, texts);
  fmt::print("loss      teacher {:.4f}, student {:.4f} nats/token ({:+.2f}%) on SQuAD dev paragraphs 0:{}\n",
             quality.teacher.loss, quality.student.loss,
             100.0 * (quality.student.loss - quality.teacher.loss) / quality.teacher.loss, texts.size());
  fmt::print("agreement KL(teacher||student) {:.5f} nats/token, top-1 agreement {:.1f}%\n", quality.kl,
             100.0 * quality.top1_agreement);
  // The plan's quantization ratio (above) counts the tied embedding/head table
  // once per stage that holds it; here it is the checkpoint the teacher loads.
  fmt::print("size      student {}, teacher {} as stored (the tied embedding/head table once)\n",
             edge::format_bytes(static_cast<double>(student.weight_bytes())),
             edge::format_bytes(static_cast<double>(teacher.weight_bytes())));
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  auto* command = app.add_subcommand(
      "demo",
      "Plan the bundled tiny OPT model onto a smart-city cluster too small to hold it, run the plan on the emulated "
      "cluster to answer a SQuAD question, and compare measured with predicted delay and the student with its "
      "teacher");
  command->add_option("--assets", options->assets_dir, "The repository's assets directory")
      ->capture_default_str()
      ->check(CLI::ExistingDirectory);
  command->add_option("--cluster", options->cluster_file, "Cluster JSON")->capture_default_str()->check(CLI::ExistingFile);
  command->add_option("--paragraph", options->paragraph, "SQuAD dev paragraph index")->capture_default_str();
  command->add_option("--question", options->question, "Question index within the paragraph")->capture_default_str();
  command->add_option("--max-new-tokens", options->max_new_tokens, "Longest answer in tokens")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command->add_option("--budget", options->budget, "Accuracy budget as a share of the all-int4 error")
      ->capture_default_str();
  command->add_option("--quality-paragraphs", options->quality_paragraphs,
                      "SQuAD dev paragraphs (from 0) on which the student is compared with the teacher")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command->callback([options] { run_demo(*options); });
}

}  // namespace dilemma::cli
