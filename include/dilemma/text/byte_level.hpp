#pragma once
// GPT-2's byte-level alphabet (bytes_to_unicode in OpenAI's encoder.py): every
// byte gets a printable, non-space stand-in character, so that vocab.json and
// merges.txt can spell byte sequences as text and split merges on spaces.
// Bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves (as Latin-1
// code points); the other 68 bytes map to U+0100.. in increasing byte order,
// e.g. ' ' -> U+0120 'Ġ' and '\n' -> U+010A 'Ċ'.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dilemma/text/utf8.hpp"

namespace dilemma::text {

namespace detail {

inline constexpr char32_t first_shifted_stand_in = 0x100;
inline constexpr std::size_t shifted_byte_count = 68;

constexpr bool is_own_stand_in(unsigned byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

constexpr std::array<char32_t, 256> make_byte_stand_ins() {
  std::array<char32_t, 256> stand_ins{};
  char32_t next_shifted = first_shifted_stand_in;
  for (unsigned byte = 0; byte < 256; ++byte) {
    stand_ins[byte] = is_own_stand_in(byte) ? char32_t{byte} : next_shifted++;
  }
  return stand_ins;
}

// Inverse of the table above over U+0000..U+0143; -1 where a code point stands for no byte.
constexpr std::array<std::int16_t, first_shifted_stand_in + shifted_byte_count> make_stand_in_bytes() {
  std::array<std::int16_t, first_shifted_stand_in + shifted_byte_count> bytes{};
  bytes.fill(-1);
  const std::array<char32_t, 256> stand_ins = make_byte_stand_ins();
  for (unsigned byte = 0; byte < 256; ++byte) bytes[stand_ins[byte]] = static_cast<std::int16_t>(byte);
  return bytes;
}

inline constexpr std::array<std::int16_t, first_shifted_stand_in + shifted_byte_count> stand_in_bytes =
    make_stand_in_bytes();

}  // namespace detail

// byte_stand_ins[b] is the character that spells byte b.
inline constexpr std::array<char32_t, 256> byte_stand_ins = detail::make_byte_stand_ins();

// The byte a stand-in character spells, or nullopt for any other character.
constexpr std::optional<std::uint8_t> byte_of_stand_in(char32_t character) {
  if (character >= detail::stand_in_bytes.size() || detail::stand_in_bytes[character] < 0) return std::nullopt;
  return static_cast<std::uint8_t>(detail::stand_in_bytes[character]);
}

// Spells raw bytes in the byte-level alphabet (UTF-8 encoded), e.g. "a b" -> "aĠb".
inline std::string to_byte_level(std::string_view bytes) {
  std::string spelled;
  spelled.reserve(bytes.size() * 2);
  for (const char byte : bytes) append_utf8(spelled, byte_stand_ins[static_cast<unsigned char>(byte)]);
  return spelled;
}

// The raw bytes a UTF-8 byte-level spelling stands for, or nullopt when some
// character of it is not a stand-in. Throws on ill-formed UTF-8.
inline std::optional<std::string> from_byte_level(std::string_view spelled) {
  std::string bytes;
  bytes.reserve(spelled.size());
  for (const char32_t character : decode_utf8(spelled)) {
    const std::optional<std::uint8_t> byte = byte_of_stand_in(character);
    if (!byte) return std::nullopt;
    bytes += static_cast<char>(*byte);
  }
  return bytes;
}

}  // namespace dilemma::text
