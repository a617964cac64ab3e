#include <charconv>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "model_options.hpp"
#include "dilemma/eval/perplexity.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/eval/teacher_student.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

struct EvalOptions {
  ModelOptions model;
  std::string squad_file;
  std::string paragraphs = "0:64";
  std::size_t max_tokens = 128;
  bool json = false;
  bool compare_teacher = false;  // also KL / top-1 agreement against the teacher
  std::string teacher_dir;       // empty: --model as stored, before --formats
};

// "A:B" selects paragraphs A..B-1, as a Python slice does.
std::pair<std::size_t, std::size_t> parse_range(const std::string& text, std::size_t available) {
  const auto colon = text.find(':');
  std::size_t begin = 0, end = 0;
  auto number = [&](std::string_view part, std::size_t& value) {
    const auto [rest, error] = std::from_chars(part.data(), part.data() + part.size(), value);
    return !part.empty() && error == std::errc() && rest == part.data() + part.size();
  };
  if (colon == std::string::npos || !number(std::string_view(text).substr(0, colon), begin) ||
      !number(std::string_view(text).substr(colon + 1), end)) {
    dilemma::detail::fail("--paragraphs: \"{}\" is not a range A:B of paragraph indices (e.g. 0:64)", text);
  }
  if (begin >= end || end > available) {
    dilemma::detail::fail("--paragraphs: range {}:{} must satisfy A < B <= {} (the file's paragraph count)", begin,
                          end, available);
  }
  return {begin, end};
}

void run_eval(const EvalOptions& options) {
  const auto paragraphs = eval::load_squad(options.squad_file);
  const auto [begin, end] = parse_range(options.paragraphs, paragraphs.size());
  std::vector<std::string> texts;
  for (std::size_t i = begin; i < end; ++i) texts.push_back(paragraphs[i].context);
  const auto tokenizer = text::BpeTokenizer::load(options.model.model_dir);
  const auto loaded = load_model(options.model);
  if (options.compare_teacher) {
    const auto teacher =
        model::OptModel::load(options.teacher_dir.empty() ? options.model.model_dir : options.teacher_dir);
    const auto sequences = eval::encode_for_scoring(tokenizer, texts, options.max_tokens);
    const auto r = eval::compare_to_teacher(teacher, loaded.model, sequences, loaded.run_context());
    if (options.json) {
      fmt::print("{}\n", nlohmann::json{{"loss", r.student.loss},
                                        {"perplexity", r.student.perplexity},
                                        {"kl", r.kl},
                                        {"top1_agreement", r.top1_agreement},
                                        {"teacher_loss", r.teacher.loss},
                                        {"teacher_perplexity", r.teacher.perplexity},
                                        {"tokens", r.student.tokens},
                                        {"paragraphs", r.student.texts},
                                        {"formats", loaded.format_names()},
                                        {"weight_bytes", loaded.model.weight_bytes()},
                                        {"teacher_weight_bytes", teacher.weight_bytes()}}
                             .dump());
    } else {
      fmt::print("loss {:.6f} nats/token, perplexity {:.3f} (teacher {:.6f}, {:.3f}); KL(teacher||model) {:.6f} "
                 "nats/token, top-1 agreement {:.4f}, over {} predicted tokens of {} paragraphs ({}:{})\n",
                 r.student.loss, r.student.perplexity, r.teacher.loss, r.teacher.perplexity, r.kl, r.top1_agreement,
                 r.student.tokens, r.student.texts, begin, end);
    }
    return;
  }
  const auto result = eval::evaluate_loss(loaded.model, tokenizer, texts, options.max_tokens, loaded.run_context());
  if (options.json) {
    fmt::print("{}\n", nlohmann::json{{"loss", result.loss},
                                      {"perplexity", result.perplexity},
                                      {"tokens", result.tokens},
                                      {"paragraphs", result.texts},
                                      {"formats", loaded.format_names()},
                                      {"weight_bytes", loaded.model.weight_bytes()}}
                           .dump());
  } else {
    fmt::print("loss {:.6f} nats/token, perplexity {:.3f}, over {} predicted tokens of {} paragraphs ({}:{})\n",
               result.loss, result.perplexity, result.tokens, result.texts, begin, end);
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  auto* command = app.add_subcommand(
      "eval", "Mean next-token cross-entropy and perplexity over SQuAD paragraphs (BOS, truncation, token-weighted)");
  add_model_options(*command, options->model);
  command->add_option("--squad", options->squad_file, "SQuAD v1.1 JSON file")->required()->check(CLI::ExistingFile);
  command->add_option("--paragraphs", options->paragraphs, "Paragraph range A:B (A inclusive, B exclusive)")
      ->capture_default_str();
  command->add_option("--max-tokens", options->max_tokens, "Truncate each paragraph to this many ids, BOS included")
      ->capture_default_str();
  command->add_flag("--json", options->json, "Print {\"loss\", \"perplexity\", \"tokens\", \"paragraphs\", \"formats\", \"weight_bytes\"} as JSON");
  auto* compare = command->add_flag(
      "--compare-teacher", options->compare_teacher,
      "Also compare with the teacher: KL(teacher||model) and top-1 agreement of next-token distributions, and the "
      "teacher's loss (JSON adds \"kl\", \"top1_agreement\", \"teacher_loss\", \"teacher_perplexity\", "
      "\"teacher_weight_bytes\")");
  command
      ->add_option("--teacher", options->teacher_dir,
                   "Teacher model directory for --compare-teacher (default: --model as stored, before --formats)")
      ->check(CLI::ExistingDirectory)
      ->needs(compare);
  command->callback([options] { run_eval(*options); });
}

}  // namespace dilemma::cli
