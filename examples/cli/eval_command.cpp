#include <charconv>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "dilemma/eval/perplexity.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

struct EvalOptions {
  std::string model_dir;
  std::string squad_file;
  std::string paragraphs = "0:64";
  std::size_t max_tokens = 128;
  bool json = false;
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
  const auto tokenizer = text::BpeTokenizer::load(options.model_dir);
  const auto model = model::OptModel::load(options.model_dir);
  const auto result = eval::evaluate_loss(model, tokenizer, texts, options.max_tokens);
  if (options.json) {
    fmt::print("{}\n", nlohmann::json{{"loss", result.loss},
                                      {"perplexity", result.perplexity},
                                      {"tokens", result.tokens},
                                      {"paragraphs", result.texts}}
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
  command->add_option("--model", options->model_dir, "Hugging Face OPT model directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  command->add_option("--squad", options->squad_file, "SQuAD v1.1 JSON file")->required()->check(CLI::ExistingFile);
  command->add_option("--paragraphs", options->paragraphs, "Paragraph range A:B (A inclusive, B exclusive)")
      ->capture_default_str();
  command->add_option("--max-tokens", options->max_tokens, "Truncate each paragraph to this many ids, BOS included")
      ->capture_default_str();
  command->add_flag("--json", options->json, "Print {\"loss\", \"perplexity\", \"tokens\", \"paragraphs\"} as JSON");
  command->callback([options] { run_eval(*options); });
}

}  // namespace dilemma::cli
