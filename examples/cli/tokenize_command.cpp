#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "dilemma/error.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer_dir;
  std::string text_file;
  bool no_bos = false;
};

std::string read_text(const std::string& path) {
  if (path == "-") return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  std::ifstream in(path, std::ios::binary);
  if (!in) dilemma::detail::fail("{}: cannot open the text file", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  auto* command = app.add_subcommand("tokenize", "Encode a UTF-8 text file and print its token ids as a JSON array");
  // Exactly one place to read the tokenizer from.
  auto* source = command->add_option_group("tokenizer source");
  source->add_option("--model", options->tokenizer_dir, "Model directory holding the tokenizer files")
      ->check(CLI::ExistingDirectory);
  source->add_option("--tokenizer", options->tokenizer_dir,
                     "Tokenizer directory (vocab.json, merges.txt, optional tokenizer_config.json)")
      ->check(CLI::ExistingDirectory);
  source->require_option(1);
  command->add_option("--text-file", options->text_file, "UTF-8 text to encode ('-' reads standard input)")
      ->required();
  command->add_flag("--no-bos", options->no_bos, "Do not prepend BOS even if the tokenizer's config asks for it");
  command->callback([options] {
    const auto tokenizer = text::BpeTokenizer::load(options->tokenizer_dir);
    const auto text = read_text(options->text_file);
    const auto ids =
        tokenizer.encode(text, options->no_bos ? text::BpeTokenizer::Bos::omit : text::BpeTokenizer::Bos::config_default);
    fmt::print("{}\n", nlohmann::json(ids).dump());
  });
}

}  // namespace dilemma::cli
