// Seeded random strings mixing scripts, white space, punctuation and
// contraction fragments: pre-tokenization must cover the text exactly, and
// decoding must invert encoding.
#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "dilemma/text/bpe_tokenizer.hpp"
#include "dilemma/text/pretokenizer.hpp"
#include "dilemma/text/utf8.hpp"
#include "text_test_support.hpp"

using dilemma::text::append_utf8;
using dilemma::text::pretokenize;

namespace {

struct CodePointRange {
  char32_t first;
  char32_t last;
};

// Each string draws every character from one of these ranges, chosen uniformly,
// so that rare classes (white space other than U+0020, contraction letters)
// occur often enough to meet each other.
constexpr std::array<CodePointRange, 21> character_ranges{{
    {U' ', U'~'},                      // ASCII printable
    {U'\t', U'\r'},                    // ASCII white-space controls
    {U' ', U' '},                      // plain spaces, to form runs
    {U'\'', U'\''},                    // apostrophes ...
    {U'd', U'v'},                      // ... and letters that complete contractions
    {U'\u0085', U'\u0085'},            // NEXT LINE: white space
    {U'\uFEFF', U'\uFEFF'},            // BOM: not white space
    {U'\u2000', U'\u200D'},            // en quad .. ZWJ: white space, then format characters
    {U'\u00A0', U'\u024F'},            // Latin-1 supplement, Latin extended
    {U'\u0300', U'\u036F'},            // combining marks
    {U'\u0391', U'\u03C9'},            // Greek
    {U'\u0400', U'\u04FF'},            // Cyrillic
    {U'\u0600', U'\u06FF'},            // Arabic, with its digits
    {U'\u0900', U'\u097F'},            // Devanagari
    {U'\u2150', U'\u218B'},            // number forms: Nl and No
    {U'\u3000', U'\u30FF'},            // CJK punctuation, ideographic space, kana
    {U'\u4E00', U'\u4EFF'},            // CJK ideographs
    {U'\uAC00', U'\uACFF'},            // Hangul
    {U'\U0001F300', U'\U0001F6FF'},    // emoji
    {U'\U0001F3FB', U'\U0001F3FF'},    // skin-tone modifiers
    {U'\uE000', U'\uE0FF'},            // private use
}};

std::string random_text(std::mt19937& random) {
  std::string text;
  const std::size_t length = random() % 24;
  for (std::size_t i = 0; i < length; ++i) {
    const CodePointRange& range = character_ranges[random() % character_ranges.size()];
    append_utf8(text, range.first + static_cast<char32_t>(random() % (range.last - range.first + 1)));
  }
  return text;
}

}  // namespace

TEST_CASE("random mixed text: pieces cover the text, re-split to themselves, and decode(encode) is the identity") {
  const auto& gpt2 = dilemma::testing::gpt2_tokenizer();
  const auto& opt = dilemma::testing::opt_tokenizer();
  std::mt19937 random(20240521);
  for (int sample = 0; sample < 3000; ++sample) {
    const std::string text = random_text(random);
    CAPTURE(text);
    const std::vector<std::string_view> pieces = pretokenize(text);
    std::string joined;
    for (const std::string_view piece : pieces) {
      REQUIRE_FALSE(piece.empty());
      // A piece ends where the pattern stopped matching, so on its own it is one match.
      REQUIRE(pretokenize(piece) == std::vector<std::string_view>{piece});
      joined += piece;
    }
    REQUIRE(joined == text);
    REQUIRE(gpt2.decode(gpt2.encode(text)) == text);
    REQUIRE(opt.decode(opt.encode(text)) == text);
  }
}
