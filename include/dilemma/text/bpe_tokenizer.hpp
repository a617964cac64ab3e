#pragma once
// GPT-2's byte-level BPE tokenizer, as Hugging Face's GPT2Tokenizer (and so
// OPT's tokenizer) encodes and decodes: pre-tokenize with GPT-2's pattern
// (pretokenizer.hpp), spell each piece's bytes in the byte-level alphabet
// (byte_level.hpp), merge adjacent symbols lowest merge rank first, and look
// the final symbols up in vocab.json.
//
// Choices where Hugging Face offers several behaviours:
// * Special-token strings in the input (e.g. "</s>") are encoded as plain text,
//   never as the special id: text cannot inject a BOS/EOS, and the ids agree
//   with OpenAI's encoder. Hugging Face's slow tokenizer would split them out.
// * decode() inverts encode() exactly: no clean_up_tokenization_spaces and no
//   spaces around special tokens.
// * bos/eos/pad/unk come from special_tokens_map.json, then
//   tokenizer_config.json, then GPT2Tokenizer's defaults (bos, eos and unk
//   "<|endoftext|>" when the vocabulary has it), the precedence of
//   from_pretrained. add_bos_token comes from tokenizer_config.json (default
//   false); add_prefix_space true is rejected rather than half-supported.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/text/byte_level.hpp"
#include "dilemma/text/pretokenizer.hpp"
#include "dilemma/text/utf8.hpp"
#include "dilemma/token_id.hpp"

namespace dilemma::text {

namespace detail {

inline std::string read_file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) dilemma::detail::fail("cannot open {}", path.string());
  std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) dilemma::detail::fail("cannot read {}", path.string());
  return bytes;
}

inline nlohmann::json read_json_object(const std::filesystem::path& path) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_file_bytes(path));
  } catch (const nlohmann::json::parse_error& error) {
    dilemma::detail::fail("{}: invalid JSON: {}", path.string(), error.what());
  }
  if (!json.is_object()) dilemma::detail::fail("{}: expected a JSON object, got {}", path.string(), json.type_name());
  return json;
}

// tokenizer_config.json or special_tokens_map.json: both are optional.
struct OptionalJsonFile {
  std::filesystem::path path;
  std::optional<nlohmann::json> json;

  static OptionalJsonFile read_if_present(const std::filesystem::path& path) {
    if (!std::filesystem::exists(path)) return {path, std::nullopt};
    return {path, read_json_object(path)};
  }

  const nlohmann::json* find(const char* key) const { return json ? find_in(*json, key) : nullptr; }

  static const nlohmann::json* find_in(const nlohmann::json& object, const char* key) {
    const auto found = object.find(key);
    return found == object.end() ? nullptr : &*found;
  }
};

struct MergeRule {
  std::int32_t rank;
  TokenId result;
};

inline std::uint64_t symbol_pair_key(TokenId left, TokenId right) {
  return (std::uint64_t{static_cast<std::uint32_t>(left)} << 32) | static_cast<std::uint32_t>(right);
}

// A pair of adjacent symbols that a merge rule applies to, as it was when
// found; it is stale once either symbol has since been merged with another.
struct MergeCandidate {
  std::int32_t rank;
  std::size_t left_slot;
  TokenId left;
  TokenId right;
  TokenId result;
};

// Orders a std::*_heap as a min-heap on (rank, position): equal pairs merge left to right.
inline bool merges_later(const MergeCandidate& a, const MergeCandidate& b) {
  return std::tie(a.rank, a.left_slot) > std::tie(b.rank, b.left_slot);
}

// Scratch buffers for merging one piece, reused across the pieces of one
// encode() call. Symbols live in slots indexed by their first byte; a merge
// keeps the left slot and unlinks the right one.
struct BpeWorkspace {
  std::vector<TokenId> symbols;
  std::vector<std::size_t> next;  // the piece length at the last symbol
  std::vector<std::size_t> prev;  // no_slot at the first symbol
  std::vector<MergeCandidate> heap;
  std::vector<MergeCandidate> created;
};

inline constexpr TokenId merged_away = -1;
inline constexpr std::size_t no_slot = std::numeric_limits<std::size_t>::max();
inline constexpr std::string_view gpt2_default_special_token = "<|endoftext|>";

}  // namespace detail

class BpeTokenizer {
 public:
  enum class Bos { config_default, add, omit };

  // Reads vocab.json and merges.txt, and tokenizer_config.json and
  // special_tokens_map.json when present, from a Hugging Face model or
  // tokenizer directory.
  static BpeTokenizer load(const std::filesystem::path& dir) {
    if (!std::filesystem::is_directory(dir)) {
      dilemma::detail::fail("tokenizer directory {} does not exist", dir.string());
    }
    return build(dir / "vocab.json", dir / "merges.txt", &dir);
  }

  // Reads a vocabulary and merge list alone, with GPT2Tokenizer's defaults for the rest.
  static BpeTokenizer from_files(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt) {
    return build(vocab_json, merges_txt, nullptr);
  }

  // Token ids of well-formed UTF-8 text; Bos::config_default prepends the BOS
  // id when the tokenizer's configuration says add_bos_token. Throws
  // dilemma::Error naming the byte offset of ill-formed UTF-8. Safe to call
  // from several threads at once: all state it writes is local to the call.
  std::vector<TokenId> encode(std::string_view utf8_text, Bos bos = Bos::config_default) const {
    std::vector<TokenId> ids;
    ids.reserve(utf8_text.size() / 4 + 1);
    if (bos == Bos::add || (bos == Bos::config_default && adds_bos_by_default_)) {
      if (!bos_id_) dilemma::detail::fail("cannot prepend a BOS token: the tokenizer has no bos_token");
      ids.push_back(*bos_id_);
    }
    detail::BpeWorkspace workspace;
    const detail::Gpt2Scanner scanner(utf8_text);
    for (std::size_t begin = 0; begin < utf8_text.size();) {
      const std::size_t end = scanner.piece_end(begin);
      append_piece_ids(utf8_text.substr(begin, end - begin), workspace, ids);
      begin = end;
    }
    return ids;
  }

  // The text of `ids`; byte sequences that are not well-formed UTF-8 (a
  // character cut between tokens) become U+FFFD as with errors="replace".
  // Throws dilemma::Error for an id outside the vocabulary.
  std::string decode(std::span<const TokenId> ids, bool skip_special_tokens = true) const {
    return to_valid_utf8(decode_bytes(ids, skip_special_tokens));
  }

  // The raw bytes of `ids`, for streaming output that must not split a character.
  std::string decode_bytes(std::span<const TokenId> ids, bool skip_special_tokens = true) const {
    std::string bytes;
    for (const TokenId id : ids) {
      check_id(id);
      if (skip_special_tokens && std::ranges::find(special_ids_, id) != special_ids_.end()) continue;
      bytes += token_bytes_[static_cast<std::size_t>(id)];
    }
    return bytes;
  }

  std::optional<TokenId> bos_id() const { return bos_id_; }
  std::optional<TokenId> eos_id() const { return eos_id_; }
  std::optional<TokenId> pad_id() const { return pad_id_; }
  bool adds_bos_by_default() const { return adds_bos_by_default_; }

  // Ids are 0..vocab_size()-1.
  std::size_t vocab_size() const { return tokens_.size(); }

  // The token as vocab.json spells it (byte-level alphabet, e.g. "Ġthe").
  std::string_view token(TokenId id) const {
    check_id(id);
    return tokens_[static_cast<std::size_t>(id)];
  }

 private:
  using IdsByToken = std::unordered_map<std::string, TokenId>;

  BpeTokenizer() = default;

  static BpeTokenizer build(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                            const std::filesystem::path* config_dir) {
    BpeTokenizer tokenizer;
    const IdsByToken ids_by_token = tokenizer.read_vocab(vocab_json);
    tokenizer.read_merges(merges_txt, ids_by_token, vocab_json.filename().string());
    tokenizer.read_special_tokens(ids_by_token, config_dir);
    return tokenizer;
  }

  IdsByToken read_vocab(const std::filesystem::path& path) {
    const nlohmann::json vocab = detail::read_json_object(path);
    const std::size_t count = vocab.size();
    if (count > static_cast<std::size_t>(std::numeric_limits<TokenId>::max())) {
      dilemma::detail::fail("{}: {} entries do not fit 32-bit token ids", path.string(), count);
    }
    tokens_.resize(count);
    token_bytes_.resize(count);
    std::vector<bool> id_taken(count, false);
    IdsByToken ids_by_token;
    ids_by_token.reserve(count);
    for (const auto& [token, id_json] : vocab.items()) {
      if (!id_json.is_number_unsigned() || id_json.get<std::uint64_t>() >= count) {
        dilemma::detail::fail("{}: token \"{}\" has id {}, expected an integer in 0..{} (one id per entry)",
                              path.string(), token, id_json.dump(), count - 1);
      }
      const auto id = static_cast<std::size_t>(id_json.get<std::uint64_t>());
      if (id_taken[id]) {
        dilemma::detail::fail("{}: id {} is used by both \"{}\" and \"{}\"", path.string(), id, tokens_[id], token);
      }
      id_taken[id] = true;
      tokens_[id] = token;
      // A token outside the byte-level alphabet (an added token such as
      // "<my token>") decodes to its own UTF-8 text, as in Hugging Face's
      // ByteLevel decoder.
      token_bytes_[id] = from_byte_level(token).value_or(token);
      ids_by_token.emplace(token, static_cast<TokenId>(id));
    }
    // Requiring every byte makes encode() total: no text ever needs <unk>.
    for (std::size_t byte = 0; byte < byte_ids_.size(); ++byte) {
      std::string stand_in;
      append_utf8(stand_in, byte_stand_ins[byte]);
      const auto found = ids_by_token.find(stand_in);
      if (found == ids_by_token.end()) {
        dilemma::detail::fail("{}: no token \"{}\" for byte 0x{:02X}; a byte-level vocabulary needs all 256 bytes",
                              path.string(), stand_in, byte);
      }
      byte_ids_[byte] = found->second;
    }
    return ids_by_token;
  }

  void read_merges(const std::filesystem::path& path, const IdsByToken& ids_by_token, const std::string& vocab_name) {
    const std::string text = detail::read_file_bytes(path);
    std::vector<std::size_t> line_of_rank;
    std::size_t line_number = 0;
    for (std::size_t line_begin = 0; line_begin < text.size();) {
      const std::size_t newline = std::min(text.find('\n', line_begin), text.size());
      std::string_view line = std::string_view(text).substr(line_begin, newline - line_begin);
      line_begin = newline + 1;
      ++line_number;
      if (line.ends_with('\r')) line.remove_suffix(1);
      if (line_number == 1 && line.starts_with("#version")) continue;

      const std::size_t space = line.find(' ');
      if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
          line.find(' ', space + 1) != std::string_view::npos) {
        dilemma::detail::fail("{} line {}: expected two symbols separated by one space, got \"{}\"", path.string(),
                              line_number, line);
      }
      const std::string_view left = line.substr(0, space);
      const std::string_view right = line.substr(space + 1);
      const auto id_of = [&](std::string_view symbol, std::string_view role) {
        const auto found = ids_by_token.find(std::string(symbol));
        if (found == ids_by_token.end()) {
          dilemma::detail::fail("{} line {}: {} \"{}\" of merge \"{}\" is not in {}", path.string(), line_number, role,
                                symbol, line, vocab_name);
        }
        return found->second;
      };
      const TokenId left_id = id_of(left, "symbol");
      const TokenId right_id = id_of(right, "symbol");
      const TokenId result_id = id_of(std::string(left) + std::string(right), "result");
      const auto rank = static_cast<std::int32_t>(line_of_rank.size());
      const auto [existing, inserted] =
          merges_.try_emplace(detail::symbol_pair_key(left_id, right_id), detail::MergeRule{rank, result_id});
      if (!inserted) {
        dilemma::detail::fail("{} line {}: merge \"{}\" repeats line {}", path.string(), line_number, line,
                              line_of_rank[static_cast<std::size_t>(existing->second.rank)]);
      }
      line_of_rank.push_back(line_number);
    }
  }

  void read_special_tokens(const IdsByToken& ids_by_token, const std::filesystem::path* config_dir) {
    detail::OptionalJsonFile config;
    detail::OptionalJsonFile special_tokens_map;
    if (config_dir) {
      config = detail::OptionalJsonFile::read_if_present(*config_dir / "tokenizer_config.json");
      special_tokens_map = detail::OptionalJsonFile::read_if_present(*config_dir / "special_tokens_map.json");
    }
    const auto special_token_id = [&](const char* key, bool gpt2_default) {
      return find_special_token(key, gpt2_default, {&special_tokens_map, &config}, ids_by_token);
    };
    bos_id_ = special_token_id("bos_token", true);
    eos_id_ = special_token_id("eos_token", true);
    pad_id_ = special_token_id("pad_token", false);
    for (const std::optional<TokenId> id : {bos_id_, eos_id_, pad_id_, special_token_id("unk_token", true)}) {
      if (id && std::ranges::find(special_ids_, *id) == special_ids_.end()) special_ids_.push_back(*id);
    }

    if (const nlohmann::json* add_bos_token = config.find("add_bos_token")) {
      if (!add_bos_token->is_boolean()) {
        dilemma::detail::fail("{}: add_bos_token must be true or false, got {}", config.path.string(),
                              add_bos_token->dump());
      }
      adds_bos_by_default_ = add_bos_token->get<bool>();
      if (adds_bos_by_default_ && !bos_id_) {
        dilemma::detail::fail("{}: add_bos_token is true but there is no bos_token", config.path.string());
      }
    }
    const nlohmann::json* add_prefix_space = config.find("add_prefix_space");
    if (add_prefix_space && *add_prefix_space != false) {
      dilemma::detail::fail("{}: add_prefix_space {} is not supported (only false)", config.path.string(),
                            add_prefix_space->dump());
    }
  }

  // The id of special token `key` from the first file that names it (a string,
  // null for none, or an AddedToken object with "content"), else GPT2Tokenizer's default.
  static std::optional<TokenId> find_special_token(const char* key, bool gpt2_default,
                                                   std::initializer_list<const detail::OptionalJsonFile*> files,
                                                   const IdsByToken& ids_by_token) {
    for (const detail::OptionalJsonFile* file : files) {
      const nlohmann::json* value = file->find(key);
      if (!value) continue;
      if (value->is_null()) return std::nullopt;
      const nlohmann::json* content = value->is_object() ? detail::OptionalJsonFile::find_in(*value, "content") : value;
      if (!content || !content->is_string()) {
        dilemma::detail::fail("{}: {} must be a string, null or an object with a string \"content\", got {}",
                              file->path.string(), key, value->dump());
      }
      const auto found = ids_by_token.find(content->get<std::string>());
      if (found == ids_by_token.end()) {
        dilemma::detail::fail("{}: {} \"{}\" is not in the vocabulary", file->path.string(), key,
                              content->get<std::string>());
      }
      return found->second;
    }
    if (!gpt2_default) return std::nullopt;
    const auto found = ids_by_token.find(std::string(detail::gpt2_default_special_token));
    if (found == ids_by_token.end()) return std::nullopt;
    return found->second;
  }

  void check_id(TokenId id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size()) {
      dilemma::detail::fail("token id {} is not in the vocabulary (ids 0..{})", id, tokens_.size() - 1);
    }
  }

  std::optional<detail::MergeCandidate> find_merge(std::size_t left_slot, TokenId left, TokenId right) const {
    const auto found = merges_.find(detail::symbol_pair_key(left, right));
    if (found == merges_.end()) return std::nullopt;
    return detail::MergeCandidate{found->second.rank, left_slot, left, right, found->second.result};
  }

  // Merges one piece's bytes and appends the resulting ids. The reference
  // algorithm (OpenAI's encoder.py, Hugging Face's GPT2Tokenizer.bpe) merges
  // every occurrence of the lowest-ranked pair, left to right, and only then
  // looks for the next pair; it is quadratic in the piece length, and a piece
  // can be a whole page of CJK text. A min-heap of (rank, position) candidates
  // gives the same result in O(n log n): the pairs that a pass creates are
  // held back until the pass ends, so that even a merge list in which a new
  // pair outranks the one that formed it is applied in the reference order.
  void append_piece_ids(std::string_view piece, detail::BpeWorkspace& work, std::vector<TokenId>& ids) const {
    const std::size_t length = piece.size();
    auto& [symbols, next, prev, heap, created] = work;
    symbols.resize(length);
    next.resize(length);
    prev.resize(length);
    heap.clear();
    for (std::size_t slot = 0; slot < length; ++slot) {
      symbols[slot] = byte_ids_[static_cast<unsigned char>(piece[slot])];
      next[slot] = slot + 1;
      prev[slot] = slot == 0 ? detail::no_slot : slot - 1;
      if (slot > 0) {
        if (auto found = find_merge(slot - 1, symbols[slot - 1], symbols[slot])) heap.push_back(*found);
      }
    }
    std::ranges::make_heap(heap, detail::merges_later);

    while (!heap.empty()) {
      const std::int32_t pass_rank = heap.front().rank;
      while (!heap.empty() && heap.front().rank == pass_rank) {
        std::ranges::pop_heap(heap, detail::merges_later);
        const detail::MergeCandidate merge = heap.back();
        heap.pop_back();
        const std::size_t left = merge.left_slot;
        const std::size_t right = next[left];
        if (symbols[left] != merge.left || right == length || symbols[right] != merge.right) continue;
        symbols[left] = merge.result;
        symbols[right] = detail::merged_away;
        next[left] = next[right];
        if (next[left] != length) prev[next[left]] = left;
        if (prev[left] != detail::no_slot) {
          if (auto found = find_merge(prev[left], symbols[prev[left]], symbols[left])) created.push_back(*found);
        }
        if (next[left] != length) {
          if (auto found = find_merge(left, symbols[left], symbols[next[left]])) created.push_back(*found);
        }
      }
      for (const detail::MergeCandidate& pair : created) {
        heap.push_back(pair);
        std::ranges::push_heap(heap, detail::merges_later);
      }
      created.clear();
    }
    for (std::size_t slot = 0; slot != length; slot = next[slot]) ids.push_back(symbols[slot]);
  }

  std::vector<std::string> tokens_;       // by id, as spelled in vocab.json
  std::vector<std::string> token_bytes_;  // by id, the raw bytes it stands for
  std::array<TokenId, 256> byte_ids_{};
  std::unordered_map<std::uint64_t, detail::MergeRule> merges_;
  std::optional<TokenId> bos_id_;
  std::optional<TokenId> eos_id_;
  std::optional<TokenId> pad_id_;
  std::vector<TokenId> special_ids_;  // skipped by decode(skip_special_tokens = true)
  bool adds_bos_by_default_ = false;
};

}  // namespace dilemma::text
