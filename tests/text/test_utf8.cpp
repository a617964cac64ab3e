#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "dilemma/error.hpp"
#include "dilemma/text/utf8.hpp"

using dilemma::Error;
using namespace dilemma::text;
using namespace std::string_literals;

TEST_CASE("decode_utf8 decodes one- to four-byte sequences") {
  CHECK(decode_utf8("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80") == U"a\u00E9\u20AC\U0001F600");
  CHECK(decode_utf8("") == U"");
  CHECK(decode_utf8("\xF4\x8F\xBF\xBF") == U"\U0010FFFF");

  const DecodedCodePoint euro = decode_utf8_at("x\xE2\x82\xAC", 1);
  CHECK(euro.value == U'\u20AC');
  CHECK(euro.length == 3);
}

TEST_CASE("ill-formed UTF-8 is an error naming the byte offset and the ill-formed bytes") {
  SUBCASE("lone continuation byte") {
    CHECK_THROWS_WITH_AS(decode_utf8("ab\x80" "c"), "invalid UTF-8 at byte offset 2: ill-formed sequence 0x80", Error);
  }
  SUBCASE("truncated sequence at the end") {
    CHECK_THROWS_WITH_AS(decode_utf8("x\xE2\x82"), "invalid UTF-8 at byte offset 1: ill-formed sequence 0xE2 0x82",
                         Error);
  }
  SUBCASE("truncated sequence before ASCII") {
    CHECK_THROWS_WITH_AS(decode_utf8("\xF0\x9F\x8D" "a"),
                         "invalid UTF-8 at byte offset 0: ill-formed sequence 0xF0 0x9F 0x8D", Error);
  }
  SUBCASE("overlong forms") {
    CHECK_THROWS_WITH_AS(decode_utf8("\xC0\xAF"), "invalid UTF-8 at byte offset 0: ill-formed sequence 0xC0", Error);
    CHECK_THROWS_WITH_AS(decode_utf8("ok\xE0\x80\xAF"), "invalid UTF-8 at byte offset 2: ill-formed sequence 0xE0",
                         Error);
    CHECK_THROWS_WITH_AS(decode_utf8("\xF0\x80\x80\xAF"), "invalid UTF-8 at byte offset 0: ill-formed sequence 0xF0",
                         Error);
  }
  SUBCASE("surrogates") {
    CHECK_THROWS_WITH_AS(decode_utf8("ok\xED\xA0\x80"), "invalid UTF-8 at byte offset 2: ill-formed sequence 0xED",
                         Error);
    CHECK_THROWS_WITH_AS(decode_utf8("\xED\xBF\xBF"), "invalid UTF-8 at byte offset 0: ill-formed sequence 0xED",
                         Error);
  }
  SUBCASE("beyond U+10FFFF and bytes that never occur") {
    CHECK_THROWS_WITH_AS(decode_utf8("\xF4\x90\x80\x80"), "invalid UTF-8 at byte offset 0: ill-formed sequence 0xF4",
                         Error);
    CHECK_THROWS_WITH_AS(decode_utf8("\xE2\x82\xAC\xFF"), "invalid UTF-8 at byte offset 3: ill-formed sequence 0xFF",
                         Error);
  }
}

TEST_CASE("append_utf8 encodes scalar values and rejects the rest") {
  std::string out;
  append_utf8(out, U'A');
  append_utf8(out, U'\u00E9');
  append_utf8(out, U'\u20AC');
  append_utf8(out, U'\U0001F600');
  CHECK(out == "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  CHECK_THROWS_WITH_AS(append_utf8(out, char32_t{0xD800}),
                       "cannot encode U+D800 as UTF-8: it is not a Unicode scalar value", Error);
  CHECK_THROWS_WITH_AS(append_utf8(out, char32_t{0x110000}),
                       "cannot encode U+110000 as UTF-8: it is not a Unicode scalar value", Error);
}

TEST_CASE("to_valid_utf8 replaces ill-formed bytes as Python's errors=\"replace\"") {
  // Expected strings are Python 3's bytes.decode("utf-8", "replace") of the same bytes.
  const std::string replacement = "\xEF\xBF\xBD";
  CHECK(to_valid_utf8("caf\xC3\xA9 \xF0\x9F\x8D\x95") == "caf\xC3\xA9 \xF0\x9F\x8D\x95");
  CHECK(to_valid_utf8("") == "");
  CHECK(to_valid_utf8("\xF0\x9F") == replacement);
  CHECK(to_valid_utf8("\xF0\x9F\x8D") == replacement);
  CHECK(to_valid_utf8("\xF0\x80") == replacement + replacement);
  CHECK(to_valid_utf8("\xE2\x82\xAC\x80") == "\xE2\x82\xAC" + replacement);
  CHECK(to_valid_utf8("a\xE2\x82" "b") == "a" + replacement + "b");
  CHECK(to_valid_utf8("\xED\xA0\x80") == replacement + replacement + replacement);
  CHECK(to_valid_utf8("\xC0\xAF") == replacement + replacement);
  CHECK(to_valid_utf8("\xE0\x80\xAF") == replacement + replacement + replacement);
  CHECK(to_valid_utf8("\xF4\x90\x80\x80") == replacement + replacement + replacement + replacement);
}
