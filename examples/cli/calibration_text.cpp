#include "calibration_text.hpp"

#include <charconv>
#include <string_view>

#include "dilemma/error.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/eval/teacher_student.hpp"

namespace dilemma::cli {

void add_calibration_options(CLI::App& command, CalibrationText& options) {
  command.add_option("--calib", options.squad_file, "SQuAD v1.1 JSON file whose paragraphs are the calibration text")
      ->check(CLI::ExistingFile);
  command
      .add_option("--paragraphs", options.paragraphs,
                  "Calibration paragraphs A:B (A inclusive, B exclusive); keep them apart from the evaluation text")
      ->capture_default_str();
  command.add_option("--max-tokens", options.max_tokens, "Truncate each paragraph to this many ids, BOS included")
      ->capture_default_str();
}

std::vector<std::vector<TokenId>> calibration_sequences(const CalibrationText& options,
                                                        const text::BpeTokenizer& tokenizer) {
  const auto paragraphs = eval::load_squad(options.squad_file);
  const std::string_view text = options.paragraphs;
  const auto colon = text.find(':');
  std::size_t begin = 0, end = 0;
  auto number = [](std::string_view part, std::size_t& value) {
    const auto [rest, error] = std::from_chars(part.data(), part.data() + part.size(), value);
    return !part.empty() && error == std::errc() && rest == part.data() + part.size();
  };
  if (colon == std::string_view::npos || !number(text.substr(0, colon), begin) ||
      !number(text.substr(colon + 1), end)) {
    dilemma::detail::fail("--paragraphs: \"{}\" is not a range A:B of paragraph indices (e.g. 100:164)", text);
  }
  if (begin >= end || end > paragraphs.size()) {
    dilemma::detail::fail("--paragraphs: range {}:{} must satisfy A < B <= {} (the file's paragraph count)", begin,
                          end, paragraphs.size());
  }
  std::vector<std::string> texts;
  for (std::size_t i = begin; i < end; ++i) texts.push_back(paragraphs[i].context);
  return eval::encode_for_scoring(tokenizer, texts, options.max_tokens);
}

}  // namespace dilemma::cli
