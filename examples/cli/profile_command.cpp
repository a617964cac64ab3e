// `dilemma profile`: every stage × format of a model measured on this machine
// — stored bytes, teacher–student error, and the time of one prefill and one
// decode call — as the JSON cost::Profile reads; the measuring is
// cost::profile_model (include/dilemma/cost/profiler.hpp).

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "calibration_text.hpp"
#include "commands.hpp"
#include "dilemma/cost/profiler.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/parallel/thread_pool.hpp"
#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/calibration/calibrate.hpp"
#include "dilemma/quant/kernel_isa.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

namespace calibration = quant::calibration;

struct ProfileOptions {
  std::string model_dir;
  CalibrationText calibration;
  std::string formats = "f32,f16,int8,int4";
  std::string method = "rtn";
  std::int64_t group_size = quant::QuantScheme{}.group_size;
  std::int64_t prompt_tokens = 128;
  int repetitions = 5;
  unsigned threads = 1;
  std::string activations = "f32";
  std::string machine;
  std::string out_file;
  bool json = false;
};

void run_profile(const ProfileOptions& options) {
  const auto formats = quant::parse_format_set(options.formats, "--formats");
  const auto method = calibration::parse_method(options.method, "--method");
  const bool with_text = !options.calibration.squad_file.empty();
  if (calibration::needs_inputs(method) && !with_text) {
    dilemma::detail::fail("--method {}: calibration needs text; give --calib SQUAD_FILE (and --paragraphs A:B)",
                          options.method);
  }
  if (options.prompt_tokens < 1) {
    dilemma::detail::fail("--prompt-tokens: expected a positive number of tokens, got {}", options.prompt_tokens);
  }
  if (options.repetitions < 1) {
    dilemma::detail::fail("--repetitions: expected at least 1, got {}", options.repetitions);
  }
  const auto teacher = model::OptModel::load(options.model_dir);
  const auto& config = teacher.config();
  if (options.prompt_tokens + 1 > config.max_position_embeddings) {
    dilemma::detail::fail(
        "--prompt-tokens: {} prompt tokens and one decoded token exceed the model's max_position_embeddings ({})",
        options.prompt_tokens, config.max_position_embeddings);
  }
  const quant::QuantScheme scheme{.group_size = options.group_size};
  quant::detail::check_scheme(scheme, "--group-size");

  std::unique_ptr<parallel::ThreadPool> pool;
  if (options.threads > 1) pool = std::make_unique<parallel::ThreadPool>(options.threads);
  model::RunContext context;
  context.kernels.pool = pool.get();
  context.kernels.activations = quant::parse_activation_precision(options.activations, "--activations");

  std::optional<calibration::StageActivations> activations;
  if (with_text) {
    activations.emplace(
        calibration_sequences(options.calibration, text::BpeTokenizer::load(options.model_dir)));
  }
  const std::size_t calibration_tokens = activations ? activations->tokens() : 0;
  cost::ProfilerOptions profiler;
  profiler.formats = formats;
  profiler.scheme = scheme;
  profiler.method = method;
  profiler.prompt_tokens = options.prompt_tokens;
  profiler.repetitions = options.repetitions;
  profiler.machine =
      !options.machine.empty()
          ? options.machine
          : fmt::format("this machine, {} kernels, {} thread{}, {} activations",
                        quant::kernel_isa_name(context.kernels.isa), options.threads, options.threads == 1 ? "" : "s",
                        quant::activation_precision_name(context.kernels.activations));
  profiler.on_stage = [](const model::Stage& stage) { fmt::print(stderr, "profiling {} ...\n", stage.name()); };
  const cost::MeasuredProfile measured = cost::profile_model(teacher, std::move(activations), profiler, context);

  nlohmann::json profile = measured.profile.to_json();
  profile["description"] =
      fmt::format("dilemma profile of {}: seconds of one prefill call on prompt_tokens tokens (the head: on the "
                  "last position only, as in generation) and of one decode call after it, medians of {}; "
                  "errors of each stage alone against the teacher, {} quantization, group size {}{}",
                  options.model_dir, options.repetitions, options.method, options.group_size,
                  with_text ? fmt::format(", output errors over the teacher's inputs on {} calibration tokens",
                                          calibration_tokens)
                            : std::string(", no calibration text (no output errors)"));

  if (!options.out_file.empty()) {
    std::ofstream out(options.out_file, std::ios::trunc);
    out << profile.dump(2) << '\n';
    if (!out) dilemma::detail::fail("--out: cannot write {}", options.out_file);
  }
  if (options.json) {
    fmt::print("{}\n", profile.dump(2));
    return;
  }
  // A table for people: errors also relative to the stage's own teacher.
  fmt::print("{:<10} {:<5} {:>12} {:>11} {:>11} {:>12} {:>12} {:>12} {:>12}\n", "stage", "fmt", "bytes",
             "prefill ms", "decode ms", "weight diff", "rel. weight", "output err", "rel. output");
  const auto relative = [](double value, double size) { return size > 0 ? value / size : 0.0; };
  const cost::Profile& p = measured.profile;
  for (std::size_t s = 0; s < p.stage_names.size(); ++s) {
    const quant::MatrixError& teacher_stage = measured.teacher_stages[s];
    for (const quant::Format format : formats) {
      const cost::ProfiledTimes& m = *p.times[s][static_cast<std::size_t>(format)];
      const double output_error = m.output_error.value_or(0.0);
      fmt::print("{:<10} {:<5} {:>12} {:>11.4f} {:>11.4f} {:>12.4e} {:>12.4e} {:>12.4e} {:>12.4e}\n",
                 p.stage_names[s], quant::format_name(format), *m.weight_bytes, m.prefill_seconds * 1e3,
                 m.decode_seconds * 1e3, *m.weight_difference,
                 relative(*m.weight_difference, teacher_stage.weight_norm), output_error,
                 relative(output_error, teacher_stage.output_energy));
    }
  }
  if (!options.out_file.empty()) fmt::print("wrote {}\n", options.out_file);
}

}  // namespace

void add_profile_command(CLI::App& app) {
  auto options = std::make_shared<ProfileOptions>();
  auto* command = app.add_subcommand(
      "profile",
      "Measure every stage in every format on this machine: stored bytes, teacher-student error and the time of "
      "one prefill and one decode call, as the JSON profile the planner reads");
  command->add_option("--model", options->model_dir, "Hugging Face OPT model directory (the f32 teacher)")
      ->required()
      ->check(CLI::ExistingDirectory);
  add_calibration_options(*command, options->calibration);
  command->add_option("--formats", options->formats, "Comma-separated formats to profile every stage in")
      ->capture_default_str();
  command->add_option("--method", options->method, "How integer formats are made: rtn, clip, gptq or kd")
      ->capture_default_str();
  command
      ->add_option("--group-size", options->group_size,
                   "Weights per scale of int8/int4 (a multiple of 32 that divides every matrix's width)")
      ->capture_default_str();
  command->add_option("--prompt-tokens", options->prompt_tokens, "Prompt length of the timed prefill call")
      ->capture_default_str();
  command->add_option("--repetitions", options->repetitions, "Timed runs per stage and format (the median is kept)")
      ->capture_default_str();
  command->add_option("--threads", options->threads, "Threads for the matrix products, the calling one included")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  command->add_option("--activations", options->activations,
                      "Activations of the int8/int4 products timed: f32, bf16 or int8 (as the plan will run with "
                      "--activations)")
      ->capture_default_str()
      ->check(CLI::IsMember(quant::activation_precision_names()));
  command->add_option("--machine", options->machine, "Name of this machine in the profile");
  command->add_option("--out", options->out_file, "Write the profile JSON to this file");
  command->add_flag("--json", options->json, "Print the profile JSON instead of a table");
  command->callback([options] { run_profile(*options); });
}

}  // namespace dilemma::cli
