#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "dilemma/error.hpp"
#include "dilemma/text/pretokenizer.hpp"

using dilemma::Error;
using dilemma::text::pretokenize;

namespace {

std::vector<std::string> pieces(std::string_view text) {
  const std::vector<std::string_view> views = pretokenize(text);
  return {views.begin(), views.end()};
}

using Pieces = std::vector<std::string>;

}  // namespace

// Expected pieces are Python `regex`'s findall with GPT-2's pattern, which is
// what Hugging Face's GPT2Tokenizer runs.
TEST_CASE("pretokenize splits letters, numbers and other characters with an optional leading space") {
  CHECK(pieces("") == Pieces{});
  CHECK(pieces("Hello world") == Pieces{"Hello", " world"});
  CHECK(pieces("1,000 abc123 123") == Pieces{"1", ",", "000", " abc", "123", " 123"});
  CHECK(pieces("Wait... what?!") == Pieces{"Wait", "...", " what", "?!"});
  CHECK(pieces("x 'sup") == Pieces{"x", " '", "sup"});
  // Nl and No are numbers; a combining mark (Mn) is neither letter nor number.
  CHECK(pieces("\u216B\u00BD\u00B2") == Pieces{"\u216B\u00BD\u00B2"});
  CHECK(pieces("e\u0301") == Pieces{"e", "\u0301"});
  CHECK(pieces("你好，世界！") == Pieces{"你好", "，", "世界", "！"});
}

TEST_CASE("pretokenize splits off case-sensitive English contractions") {
  CHECK(pieces("don't") == Pieces{"don", "'t"});
  CHECK(pieces("DON'T") == Pieces{"DON", "'", "T"});
  CHECK(pieces("'ll've") == Pieces{"'ll", "'ve"});
  CHECK(pieces("it's'") == Pieces{"it", "'s", "'"});
  CHECK(pieces("''s") == Pieces{"''", "s"});
  CHECK(pieces("'") == Pieces{"'"});
}

TEST_CASE("pretokenize leaves the last space of a run to the following word") {
  CHECK(pieces("   leading spaces") == Pieces{"  ", " leading", " spaces"});
  CHECK(pieces("trailing   ") == Pieces{"trailing", "   "});
  CHECK(pieces("a \t b") == Pieces{"a", " \t", " b"});
  // A single white-space character other than U+0020 before a word stands alone.
  CHECK(pieces("a\t\tb") == Pieces{"a", "\t", "\t", "b"});
  CHECK(pieces("a\r\nb") == Pieces{"a", "\r", "\n", "b"});
  CHECK(pieces("\r\n") == Pieces{"\r\n"});
  CHECK(pieces("hi\u3000\u3000there") == Pieces{"hi", "\u3000", "\u3000", "there"});
}

TEST_CASE("pretokenize treats U+0085 as white space and U+FEFF as not, like Unicode White_Space") {
  CHECK(pieces("x\u0085 y") == Pieces{"x", "\u0085", " y"});
  CHECK(pieces("a\u0085\u0085b") == Pieces{"a", "\u0085", "\u0085", "b"});
  CHECK(pieces("a \u0085b") == Pieces{"a", " ", "\u0085", "b"});
  CHECK(pieces("ab\u0085\u0085") == Pieces{"ab", "\u0085\u0085"});
  CHECK(pieces("a\uFEFF b") == Pieces{"a", "\uFEFF", " b"});
  CHECK(pieces("a \uFEFFb") == Pieces{"a", " \uFEFF", "b"});
  // Information separators U+001C..U+001F are not White_Space (Python's str.isspace() disagrees).
  CHECK(pieces("\x1C\x1Dz") == Pieces{"\x1C\x1D", "z"});
}

TEST_CASE("pretokenize reports the offset of the first ill-formed UTF-8 byte") {
  CHECK_THROWS_WITH_AS(pretokenize("ok \xC3"), "invalid UTF-8 at byte offset 3: ill-formed sequence 0xC3", Error);
  CHECK_THROWS_WITH_AS(pretokenize("h\xC3\xA9llo  \x80 \xFF"),
                       "invalid UTF-8 at byte offset 8: ill-formed sequence 0x80", Error);
  CHECK_THROWS_WITH_AS(pretokenize("'s\xED\xA0\x80"), "invalid UTF-8 at byte offset 2: ill-formed sequence 0xED",
                       Error);
}
