#pragma once
// GPT-2's pre-tokenization: the split of text into the pieces that BPE then
// merges independently, defined by the regular expression
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// applied left to right (first matching alternative wins, quantifiers greedy,
// backtracking as in a Perl-style engine), with \p{L}, \p{N} and \s taken from
// Unicode, case-sensitive. It is implemented as a hand-written scanner over
// code points rather than with a regex engine because the standard library's
// std::regex has no \p{..} classes and no Unicode awareness, a general engine
// would add a dependency for one fixed pattern, and each engine's \s differs
// (JavaScript's includes U+FEFF and excludes U+0085) in ways that change token
// ids. The scanner pins down the one semantics Hugging Face's tokenizers and
// Python's `regex` module share.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <utf8proc.h>

#include "dilemma/text/utf8.hpp"

namespace dilemma::text {

namespace detail {

enum class CharClass : std::uint8_t { letter, number, white_space, other };

// Unicode's White_Space property (PropList.txt; unchanged since Unicode 6.3
// dropped U+180E), which is what \s matches in Python's `regex` module and in
// Hugging Face's tokenizers. utf8proc exposes general categories but not this
// property, and the category Zs alone would miss the controls \t..\r and U+0085
// NEXT LINE. U+FEFF (format character, Cf) is not white space.
constexpr bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// \p{L} is Lu/Ll/Lt/Lm/Lo and \p{N} is Nd/Nl/No; no white-space character is
// either, so the four classes partition the code points.
inline CharClass classify(char32_t c) {
  if (is_white_space(c)) return CharClass::white_space;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::letter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::number;
    default:
      return CharClass::other;
  }
}

class Gpt2Scanner {
 public:
  explicit Gpt2Scanner(std::string_view text) : text_(text) {}

  // End offset of the piece that starts at `begin` (< text size).
  std::size_t piece_end(std::size_t begin) const {
    if (const std::size_t length = contraction_length(begin)) return begin + length;
    // ` ?\p{L}+`, ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+` share their shape: an
    // optional U+0020 and then a maximal run of one class other than white space.
    if (text_[begin] == ' ' && begin + 1 < text_.size()) {
      const CharClass next = char_at(begin + 1).character_class;
      if (next != CharClass::white_space) return run_end(begin + 1, next);
    }
    const CharClass first = char_at(begin).character_class;
    if (first != CharClass::white_space) return run_end(begin, first);
    return white_space_piece_end(begin);
  }

 private:
  struct ScannedChar {
    CharClass character_class;
    std::size_t length;
  };

  ScannedChar char_at(std::size_t offset) const {
    const DecodedCodePoint decoded = decode_utf8_at(text_, offset);
    return {classify(decoded.value), decoded.length};
  }

  // 's|'t|'re|'ve|'m|'ll|'d: their second characters differ, so at most one matches.
  std::size_t contraction_length(std::size_t begin) const {
    const std::string_view rest = text_.substr(begin);
    if (!rest.starts_with('\'') || rest.size() < 2) return 0;
    switch (rest[1]) {
      case 's':
      case 't':
      case 'm':
      case 'd':
        return 2;
      case 'r':
      case 'v':
        return rest.size() >= 3 && rest[2] == 'e' ? 3 : 0;
      case 'l':
        return rest.size() >= 3 && rest[2] == 'l' ? 3 : 0;
      default:
        return 0;
    }
  }

  std::size_t run_end(std::size_t offset, CharClass run_class) const {
    while (offset < text_.size()) {
      const ScannedChar scanned = char_at(offset);
      if (scanned.character_class != run_class) break;
      offset += scanned.length;
    }
    return offset;
  }

  // `\s+(?!\S)|\s+`. The greedy run backtracks until the lookahead holds: a
  // run reaching the end of the text is taken whole; a run of two or more
  // before a non-space gives up its last character (which then starts the next
  // piece and, if it is U+0020, becomes the optional space of ` ?\p{L}+` etc.);
  // a single white-space character before a non-space fails the lookahead and
  // is taken alone by the final `\s+`.
  std::size_t white_space_piece_end(std::size_t begin) const {
    std::size_t end = begin;
    std::size_t last_char_begin = begin;
    while (end < text_.size()) {
      const ScannedChar scanned = char_at(end);
      if (scanned.character_class != CharClass::white_space) break;
      last_char_begin = end;
      end += scanned.length;
    }
    if (end == text_.size() || last_char_begin == begin) return end;
    return last_char_begin;
  }

  std::string_view text_;
};

}  // namespace detail

// Splits UTF-8 text into GPT-2's pre-tokens, views into `utf8_text` whose
// concatenation is the whole text. Throws dilemma::Error naming the byte offset
// of the first ill-formed UTF-8 sequence.
inline std::vector<std::string_view> pretokenize(std::string_view utf8_text) {
  std::vector<std::string_view> pieces;
  const detail::Gpt2Scanner scanner(utf8_text);
  for (std::size_t begin = 0; begin < utf8_text.size();) {
    const std::size_t end = scanner.piece_end(begin);
    pieces.push_back(utf8_text.substr(begin, end - begin));
    begin = end;
  }
  return pieces;
}

}  // namespace dilemma::text
