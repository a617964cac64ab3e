#pragma once
// UTF-8 decoding and encoding on top of utf8proc, with the two policies the
// tokenizer needs: text to encode must be well-formed (an ill-formed byte is an
// error naming its offset), while decoded token bytes are repaired the way
// Python's bytes.decode("utf-8", errors="replace") does, as Hugging Face's
// GPT2Tokenizer decodes.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <utf8proc.h>

#include "dilemma/error.hpp"

namespace dilemma::text {

struct DecodedCodePoint {
  char32_t value;
  std::size_t length;  // bytes of its UTF-8 encoding, 1..4
};

namespace detail {

inline const utf8proc_uint8_t* as_utf8proc_bytes(const char* bytes) {
  return reinterpret_cast<const utf8proc_uint8_t*>(bytes);
}

// Length of the "maximal subpart of an ill-formed subsequence" (Unicode §3.9,
// Table 3-7) that starts `bytes`, which must not start with a well-formed
// sequence: the longest prefix that some continuation could still complete, at
// least one byte. It is the unit that gets one U+FFFD under the W3C/Unicode
// replacement practice that Python follows; utf8proc reports only that a
// sequence is ill-formed, not how far.
inline std::size_t ill_formed_subpart_length(std::string_view bytes) {
  const auto lead = static_cast<unsigned char>(bytes.front());
  std::size_t sequence_length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    sequence_length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    sequence_length = 3;
    if (lead == 0xE0) second_min = 0xA0;  // shorter forms are overlong
    if (lead == 0xED) second_max = 0x9F;  // U+D800..U+DFFF are surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    sequence_length = 4;
    if (lead == 0xF0) second_min = 0x90;  // shorter forms are overlong
    if (lead == 0xF4) second_max = 0x8F;  // beyond U+10FFFF
  } else {
    return 1;
  }
  std::size_t length = 1;
  while (length < sequence_length && length < bytes.size()) {
    const auto byte = static_cast<unsigned char>(bytes[length]);
    const bool continues = length == 1 ? byte >= second_min && byte <= second_max : byte >= 0x80 && byte <= 0xBF;
    if (!continues) break;
    ++length;
  }
  return length;
}

[[noreturn]] inline void fail_ill_formed(std::string_view text, std::size_t offset) {
  const std::string_view subpart = text.substr(offset, ill_formed_subpart_length(text.substr(offset)));
  std::string hex;
  for (const char byte : subpart) {
    if (!hex.empty()) hex += ' ';
    hex += fmt::format("0x{:02X}", static_cast<unsigned char>(byte));
  }
  dilemma::detail::fail("invalid UTF-8 at byte offset {}: ill-formed sequence {}", offset, hex);
}

}  // namespace detail

// Decodes the code point that starts at text[offset] (offset < text.size()).
// Throws dilemma::Error naming the offset and the ill-formed bytes for a stray
// continuation byte, a truncated sequence, an overlong form, a surrogate or a
// value beyond U+10FFFF.
inline DecodedCodePoint decode_utf8_at(std::string_view text, std::size_t offset) {
  const auto lead = static_cast<unsigned char>(text[offset]);
  if (lead < 0x80) return {lead, 1};  // most text is ASCII; skip the library call
  utf8proc_int32_t code_point = 0;
  const utf8proc_ssize_t length = utf8proc_iterate(detail::as_utf8proc_bytes(text.data() + offset),
                                                   static_cast<utf8proc_ssize_t>(text.size() - offset), &code_point);
  if (length <= 0) detail::fail_ill_formed(text, offset);
  return {static_cast<char32_t>(code_point), static_cast<std::size_t>(length)};
}

// Decodes all of `text`; throws as decode_utf8_at on the first ill-formed sequence.
inline std::u32string decode_utf8(std::string_view text) {
  std::u32string code_points;
  for (std::size_t offset = 0; offset < text.size();) {
    const DecodedCodePoint decoded = decode_utf8_at(text, offset);
    code_points += decoded.value;
    offset += decoded.length;
  }
  return code_points;
}

// Appends the UTF-8 encoding of a Unicode scalar value (not a surrogate, at most U+10FFFF).
inline void append_utf8(std::string& out, char32_t code_point) {
  const auto value = static_cast<utf8proc_int32_t>(code_point);
  if (code_point > 0x10FFFF || !utf8proc_codepoint_valid(value)) {
    dilemma::detail::fail("cannot encode U+{:04X} as UTF-8: it is not a Unicode scalar value",
                          static_cast<std::uint32_t>(code_point));
  }
  utf8proc_uint8_t buffer[4];
  const utf8proc_ssize_t length = utf8proc_encode_char(value, buffer);
  out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(length));
}

// Returns `bytes` with each maximal ill-formed subsequence replaced by U+FFFD,
// exactly as Python's bytes.decode("utf-8", errors="replace"); well-formed
// input comes back unchanged.
inline std::string to_valid_utf8(std::string_view bytes) {
  std::string text;
  text.reserve(bytes.size());
  for (std::size_t offset = 0; offset < bytes.size();) {
    utf8proc_int32_t code_point = 0;
    const utf8proc_ssize_t length = utf8proc_iterate(detail::as_utf8proc_bytes(bytes.data() + offset),
                                                     static_cast<utf8proc_ssize_t>(bytes.size() - offset), &code_point);
    if (length > 0) {
      text.append(bytes.substr(offset, static_cast<std::size_t>(length)));
      offset += static_cast<std::size_t>(length);
    } else {
      append_utf8(text, U'\uFFFD');
      offset += detail::ill_formed_subpart_length(bytes.substr(offset));
    }
  }
  return text;
}

}  // namespace dilemma::text
