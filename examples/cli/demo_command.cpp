#include <chrono>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "commands.hpp"
#include "dilemma/eval/perplexity.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/generation/generate.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

struct DemoOptions {
  std::string assets_dir = "assets";
  std::size_t paragraph = 17;
  std::size_t question = 0;
  int max_new_tokens = 24;
};

void run_demo(const DemoOptions& options) {
  const std::filesystem::path assets = options.assets_dir;
  const auto model_dir = assets / "models" / "tiny-opt";
  const auto paragraphs = eval::load_squad(assets / "data" / "squad" / "dev-v1.1.json");
  if (options.paragraph >= paragraphs.size()) {
    dilemma::detail::fail("--paragraph {} is past the last SQuAD dev paragraph ({})", options.paragraph,
                          paragraphs.size() - 1);
  }
  const auto& paragraph = paragraphs[options.paragraph];
  if (options.question >= paragraph.questions.size()) {
    dilemma::detail::fail("--question {}: paragraph {} has {} questions", options.question, options.paragraph,
                          paragraph.questions.size());
  }
  const auto& question = paragraph.questions[options.question];

  const auto load_start = std::chrono::steady_clock::now();
  const auto tokenizer = text::BpeTokenizer::load(model_dir);
  const auto model = model::OptModel::load(model_dir);
  const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start).count();
  const auto& config = model.config();
  fmt::print("model    {}: OPT, {} layers, hidden {}, {} parameters, {} stages (loaded in {:.0f} ms)\n",
             model_dir.string(), config.num_hidden_layers, config.hidden_size, model.parameter_count(),
             model.stages().size(), load_ms);

  const std::string prompt =
      fmt::format("Context: {}\nQuestion: {}\nAnswer:", paragraph.context, question.question);
  const auto prompt_ids = tokenizer.encode(prompt);
  fmt::print("article  {} (SQuAD v1.1 dev paragraph {})\n", paragraph.title, options.paragraph);
  fmt::print("question {}\n", question.question);

  generation::GenerationOptions settings;
  settings.max_new_tokens = options.max_new_tokens;
  const auto result = generation::generate(model, prompt_ids, settings);
  std::string answer = tokenizer.decode(result.tokens);
  // The model keeps writing after the answer; the answer is the first line.
  answer = answer.substr(0, answer.find('\n'));
  fmt::print("answer  {}\n", answer);
  fmt::print("gold     {}\n", fmt::join(question.answers, " | "));
  const double decode_rate =
      result.tokens.size() > 1 ? static_cast<double>(result.tokens.size() - 1) / result.decode_seconds : 0.0;
  fmt::print("delay    prefill {} tokens in {:.1f} ms, decode {:.0f} tokens/s\n", prompt_ids.size(),
             result.prefill_seconds * 1e3, decode_rate);

  std::vector<std::string> texts;
  for (std::size_t i = 0; i < 16; ++i) texts.push_back(paragraphs[i].context);
  const auto loss = eval::evaluate_loss(model, tokenizer, texts);
  fmt::print("quality  loss {:.4f} nats/token (perplexity {:.1f}) on SQuAD dev paragraphs 0:16\n", loss.loss,
             loss.perplexity);
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  auto* command =
      app.add_subcommand("demo", "Answer a SQuAD dev question with the bundled tiny OPT model and report its quality");
  command->add_option("--assets", options->assets_dir, "The repository's assets directory")
      ->capture_default_str()
      ->check(CLI::ExistingDirectory);
  command->add_option("--paragraph", options->paragraph, "SQuAD dev paragraph index")->capture_default_str();
  command->add_option("--question", options->question, "Question index within the paragraph")->capture_default_str();
  command->add_option("--max-new-tokens", options->max_new_tokens, "Longest answer in tokens")->capture_default_str();
  command->callback([options] { run_demo(*options); });
}

}  // namespace dilemma::cli
