#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include "dilemma/text/byte_level.hpp"

using namespace dilemma::text;

TEST_CASE("byte_stand_ins is GPT-2's bytes_to_unicode") {
  CHECK(byte_stand_ins['!'] == U'!');
  CHECK(byte_stand_ins['~'] == U'~');
  CHECK(byte_stand_ins[0xA1] == U'\u00A1');
  CHECK(byte_stand_ins[0xFF] == U'\u00FF');
  // The 68 other bytes, in increasing order: 0x00..0x20, 0x7F..0xA0, 0xAD.
  CHECK(byte_stand_ins[0x00] == U'\u0100');
  CHECK(byte_stand_ins['\n'] == U'\u010A');
  CHECK(byte_stand_ins[' '] == U'\u0120');
  CHECK(byte_stand_ins[0x7F] == U'\u0121');
  CHECK(byte_stand_ins[0xA0] == U'\u0142');
  CHECK(byte_stand_ins[0xAD] == U'\u0143');

  const std::set<char32_t> distinct(byte_stand_ins.begin(), byte_stand_ins.end());
  CHECK(distinct.size() == 256);
}

TEST_CASE("byte_of_stand_in inverts byte_stand_ins and rejects other characters") {
  for (unsigned byte = 0; byte < 256; ++byte) {
    REQUIRE(byte_of_stand_in(byte_stand_ins[byte]) == std::optional<std::uint8_t>(static_cast<std::uint8_t>(byte)));
  }
  CHECK_FALSE(byte_of_stand_in(U' '));
  CHECK_FALSE(byte_of_stand_in(U'\u00AD'));
  CHECK_FALSE(byte_of_stand_in(U'\u0144'));
  CHECK_FALSE(byte_of_stand_in(U'\U0001F600'));
}

TEST_CASE("to_byte_level and from_byte_level spell bytes and back") {
  CHECK(to_byte_level("Hello world\n") == "Hello\xC4\xA0world\xC4\x8A");
  CHECK(to_byte_level("\xC3\xA9") == "\xC3\x83\xC2\xA9");  // é's bytes C3 A9 -> "Ã©"
  CHECK(from_byte_level("\xC4\xA0there\xC4\x8A") == std::optional<std::string>(" there\n"));
  CHECK(from_byte_level("</s>") == std::optional<std::string>("</s>"));
  CHECK_FALSE(from_byte_level("a b"));               // a raw space is not a stand-in
  CHECK_FALSE(from_byte_level("\xC5\x90"));          // U+0150
  std::string all_bytes;
  for (unsigned byte = 0; byte < 256; ++byte) all_bytes += static_cast<char>(byte);
  CHECK(from_byte_level(to_byte_level(all_bytes)) == std::optional<std::string>(all_bytes));
}
