#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "model_options.hpp"
#include "dilemma/generation/generate.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt;
  generation::GenerationOptions generation;
  bool no_stop_at_eos = false;
  bool json = false;
};

void run_generate(const GenerateOptions& options) {
  const auto loaded = load_model(options.model);
  const auto& model = loaded.model;
  const auto tokenizer = text::BpeTokenizer::load(options.model.model_dir);
  const auto prompt = tokenizer.encode(options.prompt);
  auto settings = options.generation;
  settings.stop_at_eos = !options.no_stop_at_eos;
  settings.run_context = loaded.run_context();

  // Stream raw bytes as tokens arrive; a character split across tokens is
  // completed by the next token's bytes.
  auto stream = [&](TokenId id) {
    if (options.json) return;
    const TokenId one[] = {id};
    fmt::print("{}", tokenizer.decode_bytes(one));
    std::fflush(stdout);
  };
  const auto result = generation::generate(model, prompt, settings, stream);
  const std::size_t decode_steps = result.tokens.empty() ? 0 : result.tokens.size() - 1;
  const double decode_rate = result.decode_seconds > 0 ? static_cast<double>(decode_steps) / result.decode_seconds : 0;
  if (options.json) {
    nlohmann::json out = {{"prompt_ids", prompt},
                          {"new_ids", result.tokens},
                          {"text", tokenizer.decode(result.tokens)},
                          {"stop_reason", generation::to_string(result.stop_reason)},
                          {"prefill_seconds", result.prefill_seconds},
                          {"decode_seconds", result.decode_seconds},
                          {"decode_tokens_per_second", decode_rate},
                          {"formats", loaded.format_names()},
                          {"weight_bytes", model.weight_bytes()}};
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("\n");
  fmt::print(stderr, "[{} prompt tokens, prefill {:.1f} ms; {} new tokens, {:.1f} tokens/s; stopped: {}]\n",
             prompt.size(), result.prefill_seconds * 1e3, result.tokens.size(), decode_rate,
             generation::to_string(result.stop_reason));
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  auto* command = app.add_subcommand("generate", "Continue a prompt with an OPT model");
  add_model_options(*command, options->model);
  command->add_option("--prompt", options->prompt, "Prompt text (BOS is prepended as OPT expects)")->required();
  command->add_option("--max-new-tokens", options->generation.max_new_tokens, "Upper bound on generated tokens")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  command->add_option("--temperature", options->generation.sampling.temperature, "0 = greedy")
      ->capture_default_str();
  command->add_option("--top-k", options->generation.sampling.top_k, "Keep the k most likely tokens (0 = all)")
      ->capture_default_str();
  command->add_option("--top-p", options->generation.sampling.top_p, "Nucleus sampling mass (1 = off)")
      ->capture_default_str();
  command->add_option("--seed", options->generation.sampling.seed, "Sampling seed")->capture_default_str();
  command->add_flag("--no-stop-at-eos", options->no_stop_at_eos, "Keep generating after </s>");
  command->add_flag("--json", options->json, "Print ids, text, timings, formats and weight bytes as JSON instead of streaming text");
  command->callback([options] { run_generate(*options); });
}

}  // namespace dilemma::cli
