#pragma once
// Tokenizers and reference data shared by the text tests. The tokenizers are
// loaded once per process: the full GPT-2 vocabulary takes a noticeable share
// of the suite's time under the sanitizers.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/text/bpe_tokenizer.hpp"
#include "dilemma/token_id.hpp"
#include "test_support.hpp"

namespace dilemma::testing {

inline std::filesystem::path tokenizer_dir(const std::string& name) { return assets_dir() / "tokenizers" / name; }

inline const text::BpeTokenizer& gpt2_tokenizer() {
  static const text::BpeTokenizer tokenizer = text::BpeTokenizer::load(tokenizer_dir("gpt2"));
  return tokenizer;
}

inline const text::BpeTokenizer& opt_tokenizer() {
  static const text::BpeTokenizer tokenizer = text::BpeTokenizer::load(tokenizer_dir("opt-bpe8k"));
  return tokenizer;
}

struct ReferenceEncoding {
  std::string text;
  std::vector<TokenId> ids;
};

inline std::vector<ReferenceEncoding> reference_encodings(const std::string& tokenizer_name) {
  const auto json = nlohmann::json::parse(read_file(tokenizer_dir(tokenizer_name) / "reference_encodings.json"));
  std::vector<ReferenceEncoding> encodings;
  for (const auto& entry : json) {
    encodings.push_back({entry.at("text").get<std::string>(), entry.at("ids").get<std::vector<TokenId>>()});
  }
  return encodings;
}

}  // namespace dilemma::testing
