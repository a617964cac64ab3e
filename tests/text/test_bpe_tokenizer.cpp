#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"
#include "dilemma/token_id.hpp"
#include "test_support.hpp"
#include "text_test_support.hpp"

using dilemma::Error;
using dilemma::TokenId;
using dilemma::text::BpeTokenizer;
using namespace dilemma::testing;
using Ids = std::vector<TokenId>;

TEST_CASE("GPT-2 tokenizer reproduces every reference encoding and decodes it back") {
  const BpeTokenizer& tokenizer = gpt2_tokenizer();
  for (const ReferenceEncoding& reference : reference_encodings("gpt2")) {
    CAPTURE(reference.text);
    CHECK(tokenizer.encode(reference.text) == reference.ids);
    CHECK(tokenizer.decode(reference.ids) == reference.text);
  }
}

TEST_CASE("opt-bpe8k tokenizer reproduces every reference encoding, BOS included, and decodes it back") {
  const BpeTokenizer& tokenizer = opt_tokenizer();
  for (const ReferenceEncoding& reference : reference_encodings("opt-bpe8k")) {
    CAPTURE(reference.text);
    CHECK(tokenizer.encode(reference.text) == reference.ids);
    CHECK(tokenizer.decode(reference.ids) == reference.text);
  }
}

TEST_CASE("each test model's tokenizer reproduces its reference prompt ids") {
  for (const char* model : {"tiny-opt", "tiny-opt-preln", "tiny-opt-preln-bf16"}) {
    CAPTURE(model);
    const BpeTokenizer tokenizer = BpeTokenizer::load(model_dir(model));
    const auto reference = nlohmann::json::parse(read_file(model_dir(model) / "reference.json"));
    for (const auto& prompt : reference.at("prompts")) {
      const auto text = prompt.at("prompt").get<std::string>();
      const auto ids = prompt.at("ids").get<Ids>();
      CAPTURE(text);
      CHECK(tokenizer.encode(text) == ids);
      CHECK(tokenizer.decode(ids) == text);
      if (prompt.contains("greedy_text")) {
        // The reference generations were decoded keeping special tokens (one ends in "</s>").
        CHECK(tokenizer.decode(prompt.at("greedy_new_ids").get<Ids>(), false) ==
              prompt.at("greedy_text").get<std::string>());
      }
    }
  }
}

TEST_CASE("special tokens follow the configuration files or GPT2Tokenizer's defaults") {
  const BpeTokenizer& opt = opt_tokenizer();
  CHECK(opt.vocab_size() == 8260);
  CHECK(opt.bos_id() == 2);
  CHECK(opt.eos_id() == 2);
  CHECK(opt.pad_id() == 1);
  CHECK(opt.adds_bos_by_default());
  CHECK(opt.token(2) == "</s>");
  CHECK(opt.encode("") == Ids{2});
  CHECK(opt.encode("", BpeTokenizer::Bos::omit) == Ids{});
  CHECK(opt.encode("The", BpeTokenizer::Bos::omit) == Ids{468});

  // No tokenizer_config.json: no BOS by default, <|endoftext|> as bos/eos as in GPT2Tokenizer.
  const BpeTokenizer& gpt2 = gpt2_tokenizer();
  CHECK(gpt2.vocab_size() == 50257);
  CHECK_FALSE(gpt2.adds_bos_by_default());
  CHECK(gpt2.bos_id() == 50256);
  CHECK(gpt2.eos_id() == 50256);
  CHECK_FALSE(gpt2.pad_id());
  CHECK(gpt2.token(50256) == "<|endoftext|>");
  CHECK(gpt2.token(18435) == "\xC4\xA0Hello");  // "ĠHello"
  CHECK(gpt2.encode("Hello world") == Ids{15496, 995});
  CHECK(gpt2.encode("Hello world", BpeTokenizer::Bos::add) == Ids{50256, 15496, 995});

  const BpeTokenizer from_files = BpeTokenizer::from_files(tokenizer_dir("opt-bpe8k") / "vocab.json",
                                                           tokenizer_dir("opt-bpe8k") / "merges.txt");
  CHECK_FALSE(from_files.adds_bos_by_default());
  CHECK_FALSE(from_files.bos_id());  // the opt-bpe8k vocabulary has no <|endoftext|>
  CHECK(from_files.encode("The") == Ids{468});
  CHECK_THROWS_WITH_AS(from_files.encode("The", BpeTokenizer::Bos::add),
                       "cannot prepend a BOS token: the tokenizer has no bos_token", Error);
}

TEST_CASE("special-token strings in the input are encoded as plain text") {
  const BpeTokenizer& opt = opt_tokenizer();
  const Ids ids = opt.encode("</s>");
  CHECK(ids.size() > 2);
  CHECK(ids.front() == 2);
  CHECK(std::count(ids.begin(), ids.end(), 2) == 1);
  CHECK(opt.decode(ids) == "</s>");
  CHECK(opt.decode(ids, false) == "</s></s>");
}

TEST_CASE("U+0085 is white space and U+FEFF is not, as in Hugging Face's tokenizers") {
  // Expected ids from the Python reference (GPT-2's encoder.py with the `regex` module).
  const BpeTokenizer& gpt2 = gpt2_tokenizer();
  CHECK(gpt2.encode("x\u0085 y") == Ids{87, 126, 227, 331});
  CHECK(gpt2.encode("hello\u0085\u0085world") == Ids{31373, 126, 227, 126, 227, 6894});
  CHECK(gpt2.encode("x \u0085\u0085y") == Ids{87, 1587, 227, 126, 227, 88});
  CHECK(gpt2.encode("a\uFEFF b") == Ids{64, 171, 119, 123, 275});
  CHECK(gpt2.encode("a \uFEFFb") == Ids{64, 27332, 119, 123, 65});
}

TEST_CASE("decode skips special tokens on request and repairs split characters") {
  const BpeTokenizer& opt = opt_tokenizer();
  const Ids hello = opt.encode("Hello");
  CHECK(opt.decode(hello) == "Hello");
  CHECK(opt.decode(hello, false) == "</s>Hello");
  CHECK(opt.decode(Ids{1, 3, 2}) == "");
  CHECK(opt.decode(Ids{1, 3, 2}, false) == "<pad><unk></s>");

  const BpeTokenizer& gpt2 = gpt2_tokenizer();
  const Ids pizza = gpt2.encode("\xF0\x9F\x8D\x95");
  REQUIRE(pizza.size() > 1);
  const Ids first_token(pizza.begin(), pizza.begin() + 1);
  const std::string partial = gpt2.decode_bytes(first_token);
  CHECK(std::string("\xF0\x9F\x8D\x95").starts_with(partial));
  CHECK(gpt2.decode(first_token) == "\xEF\xBF\xBD");  // U+FFFD
  CHECK(gpt2.decode_bytes(pizza) == "\xF0\x9F\x8D\x95");
}

TEST_CASE("ids outside the vocabulary and ill-formed text are errors") {
  const BpeTokenizer& opt = opt_tokenizer();
  CHECK_THROWS_WITH_AS(opt.decode(Ids{468, 8260}), "token id 8260 is not in the vocabulary (ids 0..8259)", Error);
  CHECK_THROWS_WITH_AS(opt.decode_bytes(Ids{-1}), "token id -1 is not in the vocabulary (ids 0..8259)", Error);
  CHECK_THROWS_WITH_AS(opt.token(9000), "token id 9000 is not in the vocabulary (ids 0..8259)", Error);
  CHECK_THROWS_WITH_AS(opt.encode("caf\xC3"), "invalid UTF-8 at byte offset 3: ill-formed sequence 0xC3", Error);
  CHECK_THROWS_WITH_AS(opt.encode("\xED\xA0\x80"), "invalid UTF-8 at byte offset 0: ill-formed sequence 0xED", Error);
}

TEST_CASE("encode may run on one tokenizer from several threads") {
  const BpeTokenizer& gpt2 = gpt2_tokenizer();
  const std::vector<ReferenceEncoding> references = reference_encodings("gpt2");
  std::vector<std::vector<Ids>> results(4);
  {
    std::vector<std::jthread> threads;
    for (std::vector<Ids>& result : results) {
      threads.emplace_back([&gpt2, &references, &result] {
        for (int repeat = 0; repeat < 5; ++repeat) {
          for (const ReferenceEncoding& reference : references) result.push_back(gpt2.encode(reference.text));
        }
      });
    }
  }
  for (const std::vector<Ids>& result : results) {
    REQUIRE(result.size() == 5 * references.size());
    for (std::size_t i = 0; i < result.size(); ++i) CHECK(result[i] == references[i % references.size()].ids);
  }
}
