#pragma once
// The calibration text of `quantize` and `profile`: SQuAD paragraphs A:B,
// encoded as evaluation encodes text (BOS, truncated to --max-tokens).

#include <cstddef>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "dilemma/text/bpe_tokenizer.hpp"
#include "dilemma/token_id.hpp"

namespace dilemma::cli {

struct CalibrationText {
  std::string squad_file;  // empty: no calibration text
  // Not 0:64, the paragraphs the results are evaluated on.
  std::string paragraphs = "100:164";
  std::size_t max_tokens = 128;
};

// Registers --calib, --paragraphs and --max-tokens on `command`.
void add_calibration_options(CLI::App& command, CalibrationText& options);

// The encoded paragraphs of options.squad_file (which must be given).
std::vector<std::vector<TokenId>> calibration_sequences(const CalibrationText& options,
                                                        const text::BpeTokenizer& tokenizer);

}  // namespace dilemma::cli
