// Small hand-made vocabularies and merge lists: merge order semantics and the
// errors for broken tokenizer files.
#include <doctest/doctest.h>

#include <cstddef>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"
#include "dilemma/text/byte_level.hpp"
#include "dilemma/token_id.hpp"
#include "test_support.hpp"

using dilemma::Error;
using dilemma::TokenId;
using dilemma::testing::ScratchDir;
using dilemma::testing::write_file;
using dilemma::text::BpeTokenizer;
using dilemma::text::to_byte_level;
using Ids = std::vector<TokenId>;

namespace {

// The 256 byte tokens with id = byte value, then `extra_tokens` (spelled as raw
// bytes) from id 256 on.
nlohmann::json byte_vocab(const std::vector<std::string>& extra_tokens = {}) {
  nlohmann::json vocab = nlohmann::json::object();
  for (unsigned byte = 0; byte < 256; ++byte) vocab[to_byte_level(std::string(1, static_cast<char>(byte)))] = byte;
  for (const std::string& token : extra_tokens) {
    const std::size_t id = vocab.size();
    vocab[to_byte_level(token)] = id;
  }
  return vocab;
}

struct TokenizerFiles {
  ScratchDir dir;
  std::string vocab_path() const { return (dir / "vocab.json").string(); }
  std::string merges_path() const { return (dir / "merges.txt").string(); }
  std::string config_path() const { return (dir / "tokenizer_config.json").string(); }
  std::string map_path() const { return (dir / "special_tokens_map.json").string(); }

  TokenizerFiles(const nlohmann::json& vocab, const std::string& merges) {
    write_file(dir / "vocab.json", vocab.dump());
    write_file(dir / "merges.txt", merges);
  }
  BpeTokenizer load() const { return BpeTokenizer::load(dir.path()); }
};

std::string load_error(const TokenizerFiles& files) {
  try {
    files.load();
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("a tiny tokenizer merges lowest rank first") {
  const TokenizerFiles files(byte_vocab({" t", "he", " the"}), "#version: 0.2\n\xC4\xA0 t\nh e\n\xC4\xA0t he\n");
  const BpeTokenizer tokenizer = files.load();
  CHECK(tokenizer.vocab_size() == 259);
  CHECK(tokenizer.encode(" the") == Ids{258});
  CHECK(tokenizer.encode("the the") == Ids{'t', 257, 258});
  CHECK(tokenizer.decode(Ids{'t', 257, 258}) == "the the");
  CHECK(tokenizer.token(258) == "\xC4\xA0the");
}

TEST_CASE("equal pairs merge left to right") {
  const TokenizerFiles files(byte_vocab({"aa"}), "a a\n");
  const BpeTokenizer tokenizer = files.load();
  CHECK(tokenizer.encode("aaa") == Ids{256, 'a'});
  CHECK(tokenizer.encode("aaaa") == Ids{256, 256});
  CHECK(tokenizer.encode("aaaaa") == Ids{256, 256, 'a'});
}

TEST_CASE("all occurrences of a pair merge before a pair they create, whatever its rank") {
  // "ab a" outranks "a b" although only "a b" can create it. The reference
  // algorithm turns "abab" into [ab, ab]: both "a b" merge in one pass, after
  // which "ab a" no longer occurs.
  const TokenizerFiles files(byte_vocab({"ab", "aba"}), "#version: 0.2\nab a\na b\n");
  const BpeTokenizer tokenizer = files.load();
  CHECK(tokenizer.encode("abab") == Ids{256, 256});
  CHECK(tokenizer.encode("aba") == Ids{257});
}

TEST_CASE("merges.txt may lack the version line and use CRLF line ends") {
  const TokenizerFiles files(byte_vocab({"aa"}), "a a\r\n");
  CHECK(files.load().encode("aa") == Ids{256});
}

TEST_CASE("tokens outside the byte-level alphabet decode to their own text") {
  const TokenizerFiles files(byte_vocab(), "");
  nlohmann::json vocab = byte_vocab();
  vocab["<my token>"] = 256;
  write_file(files.dir / "vocab.json", vocab.dump());
  CHECK(files.load().decode(Ids{'a', 256}) == "a<my token>");
}

TEST_CASE("missing files are errors naming the path") {
  const ScratchDir dir;
  CHECK_THROWS_WITH_AS(BpeTokenizer::load(dir / "absent"),
                       fmt::format("tokenizer directory {} does not exist", (dir / "absent").string()).c_str(), Error);
  write_file(dir / "vocab.json", byte_vocab().dump());
  CHECK_THROWS_WITH_AS(BpeTokenizer::load(dir.path()),
                       fmt::format("cannot open {}", (dir / "merges.txt").string()).c_str(), Error);
}

TEST_CASE("a broken vocab.json is an error naming the file and the entry") {
  TokenizerFiles files(byte_vocab(), "");
  const auto write_vocab = [&](const std::string& text) { write_file(files.dir / "vocab.json", text); };

  SUBCASE("invalid JSON") {
    write_vocab("{\"a\": 0,");
    const std::string message = load_error(files);
    CHECK(message.starts_with(files.vocab_path() + ": invalid JSON: "));
    CHECK(message.find("parse error at line 1") != std::string::npos);
  }
  SUBCASE("not an object") {
    write_vocab("[1, 2]");
    CHECK(load_error(files) == files.vocab_path() + ": expected a JSON object, got array");
  }
  SUBCASE("an id that is not an integer") {
    nlohmann::json vocab = byte_vocab();
    vocab["a"] = "97";
    write_vocab(vocab.dump());
    CHECK(load_error(files) ==
          files.vocab_path() + ": token \"a\" has id \"97\", expected an integer in 0..255 (one id per entry)");
  }
  SUBCASE("ids out of range") {
    nlohmann::json vocab = byte_vocab();
    vocab["zz"] = 300;
    write_vocab(vocab.dump());
    CHECK(load_error(files) ==
          files.vocab_path() + ": token \"zz\" has id 300, expected an integer in 0..256 (one id per entry)");
    vocab["zz"] = -1;
    write_vocab(vocab.dump());
    CHECK(load_error(files) ==
          files.vocab_path() + ": token \"zz\" has id -1, expected an integer in 0..256 (one id per entry)");
  }
  SUBCASE("duplicate ids") {
    nlohmann::json vocab = byte_vocab();
    vocab["zz"] = 97;
    write_vocab(vocab.dump());
    CHECK(load_error(files) == files.vocab_path() + ": id 97 is used by both \"a\" and \"zz\"");
  }
  SUBCASE("a byte without a token") {
    nlohmann::json vocab = byte_vocab();
    vocab.erase("\xC4\xA0");
    vocab["space"] = 32;
    write_vocab(vocab.dump());
    CHECK(load_error(files) ==
          files.vocab_path() + ": no token \"\xC4\xA0\" for byte 0x20; a byte-level vocabulary needs all 256 bytes");
  }
}

TEST_CASE("a broken merges.txt is an error naming the file and the line") {
  TokenizerFiles files(byte_vocab({"aa"}), "");
  const auto error_for = [&](const std::string& merges) {
    write_file(files.dir / "merges.txt", merges);
    return load_error(files);
  };
  const std::string path = files.merges_path();
  CHECK(error_for("#version: 0.2\na\n") ==
        path + " line 2: expected two symbols separated by one space, got \"a\"");
  CHECK(error_for("a a\na b c\n") == path + " line 2: expected two symbols separated by one space, got \"a b c\"");
  CHECK(error_for("a a\n\nb b\n") == path + " line 2: expected two symbols separated by one space, got \"\"");
  CHECK(error_for("#version: 0.2\na zz\n") == path + " line 2: symbol \"zz\" of merge \"a zz\" is not in vocab.json");
  CHECK(error_for("a b\n") == path + " line 1: result \"ab\" of merge \"a b\" is not in vocab.json");
  CHECK(error_for("#version: 0.2\na a\na a\n") == path + " line 3: merge \"a a\" repeats line 2");
}

TEST_CASE("special tokens come from special_tokens_map.json, then tokenizer_config.json, then GPT-2's defaults") {
  const TokenizerFiles files(byte_vocab({"<s>", "</s>", "<pad>", "<|endoftext|>"}), "");
  const TokenId s = 256, slash_s = 257, pad = 258, end_of_text = 259;

  SUBCASE("no configuration: GPT2Tokenizer's <|endoftext|>") {
    const BpeTokenizer tokenizer = files.load();
    CHECK(tokenizer.bos_id() == end_of_text);
    CHECK(tokenizer.eos_id() == end_of_text);
    CHECK_FALSE(tokenizer.pad_id());
    CHECK_FALSE(tokenizer.adds_bos_by_default());
    CHECK(tokenizer.decode(Ids{'a', end_of_text, s}) == "a<s>");
  }
  SUBCASE("the map overrides the config, null removes a token, objects carry content") {
    write_file(files.dir / "tokenizer_config.json",
               R"({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "add_bos_token": true})");
    write_file(files.dir / "special_tokens_map.json",
               R"({"bos_token": {"content": "</s>", "lstrip": false}, "unk_token": null})");
    const BpeTokenizer tokenizer = files.load();
    CHECK(tokenizer.bos_id() == slash_s);
    CHECK(tokenizer.eos_id() == slash_s);
    CHECK(tokenizer.pad_id() == pad);
    CHECK(tokenizer.adds_bos_by_default());
    CHECK(tokenizer.encode("a") == Ids{slash_s, 'a'});
    // <s> is no longer special; <|endoftext|> is neither bos, eos, pad nor unk any more.
    CHECK(tokenizer.decode(Ids{slash_s, s, pad, end_of_text}) == "<s><|endoftext|>");
  }
}

TEST_CASE("broken tokenizer configuration files are errors naming the file and the key") {
  TokenizerFiles files(byte_vocab({"</s>"}), "");
  const auto config_error = [&](const std::string& config) {
    write_file(files.dir / "tokenizer_config.json", config);
    return load_error(files);
  };
  const std::string path = files.config_path();
  CHECK(config_error(R"({"bos_token": "<s>"})") == path + ": bos_token \"<s>\" is not in the vocabulary");
  CHECK(config_error(R"({"eos_token": 5})") ==
        path + ": eos_token must be a string, null or an object with a string \"content\", got 5");
  CHECK(config_error(R"({"pad_token": {"text": "</s>"}})") ==
        path + ": pad_token must be a string, null or an object with a string \"content\", got {\"text\":\"</s>\"}");
  CHECK(config_error(R"({"bos_token": "</s>", "add_bos_token": "yes"})") ==
        path + ": add_bos_token must be true or false, got \"yes\"");
  CHECK(config_error(R"({"add_bos_token": true})") == path + ": add_bos_token is true but there is no bos_token");
  CHECK(config_error(R"({"add_prefix_space": true})") ==
        path + ": add_prefix_space true is not supported (only false)");
  CHECK(config_error(R"(["bos_token"])") == path + ": expected a JSON object, got array");

  write_file(files.dir / "tokenizer_config.json", "{}");
  write_file(files.dir / "special_tokens_map.json", "{\"bos_token\": }");
  CHECK(load_error(files).starts_with(files.map_path() + ": invalid JSON: "));
}
