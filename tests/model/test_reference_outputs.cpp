// The transformer against the bundled references: logits of every prompt,
// greedy continuations and the SQuAD dev loss of the trained model.

#include <doctest/doctest.h>

#include <cmath>

#include "dilemma/eval/perplexity.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/generation/generate.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"
#include "reference_data.hpp"

using namespace dilemma;

namespace {

float max_abs_difference(const model::Matrix& logits, const io::NpyArray<float>& reference, Eigen::Index row_offset) {
  const auto vocab = static_cast<Eigen::Index>(reference.shape[1]);
  float worst = 0.0f;
  for (Eigen::Index t = 0; t < logits.rows(); ++t) {
    for (Eigen::Index v = 0; v < vocab; ++v) {
      const float expected = reference.data[static_cast<std::size_t>((t + row_offset) * vocab + v)];
      worst = std::max(worst, std::abs(logits(t, v) - expected));
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("prefill logits match the reference for every model and prompt") {
  for (const std::string name : {"tiny-opt", "tiny-opt-preln", "tiny-opt-preln-bf16"}) {
    CAPTURE(name);
    const auto model = model::OptModel::load(testing::model_dir(name));
    for (const auto& prompt : testing::reference_prompts(name)) {
      CAPTURE(prompt.prompt);
      auto session = model.new_session();
      const auto logits = model.forward(prompt.ids, session, model::Logits::all);
      REQUIRE(logits.rows() == prompt.logits.shape[0]);
      REQUIRE(logits.cols() == prompt.logits.shape[1]);
      CHECK(max_abs_difference(logits, prompt.logits, 0) <= 1e-3f);
    }
  }
}

TEST_CASE("decoding one token at a time through the KV cache reproduces every reference row") {
  for (const std::string name : {"tiny-opt", "tiny-opt-preln"}) {
    CAPTURE(name);
    const auto model = model::OptModel::load(testing::model_dir(name));
    const auto prompts = testing::reference_prompts(name);
    const auto& prompt = prompts.back();
    auto session = model.new_session();
    for (std::size_t t = 0; t < prompt.ids.size(); ++t) {
      CAPTURE(t);
      const TokenId id[] = {prompt.ids[t]};
      const auto logits = model.forward(id, session);
      CHECK(max_abs_difference(logits, prompt.logits, static_cast<Eigen::Index>(t)) <= 1e-3f);
    }
    CHECK(session.length() == static_cast<Eigen::Index>(prompt.ids.size()));
  }
}

TEST_CASE("greedy continuations of the trained model match the reference token for token") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  for (const auto& prompt : testing::reference_prompts("tiny-opt")) {
    CAPTURE(prompt.prompt);
    generation::GenerationOptions options;
    options.max_new_tokens = static_cast<int>(prompt.greedy_new_ids.size());
    options.stop_at_eos = false;  // the reference does not stop at EOS
    const auto result = generation::generate(model, prompt.ids, options);
    CHECK(result.tokens == prompt.greedy_new_ids);
    CHECK(result.stop_reason == generation::StopReason::max_new_tokens);
  }
}

TEST_CASE("generation stops at EOS when asked to") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  const auto prompts = testing::reference_prompts("tiny-opt");
  // Prompt 4's greedy continuation ends with </s> as its 20th token.
  const auto& prompt = prompts.at(4);
  REQUIRE(prompt.greedy_new_ids.back() == 2);
  generation::GenerationOptions options;
  options.max_new_tokens = 40;
  const auto result = generation::generate(model, prompt.ids, options);
  CHECK(result.stop_reason == generation::StopReason::eos);
  CHECK(result.tokens == prompt.greedy_new_ids);
}

TEST_CASE("SQuAD dev loss of paragraphs 0..63 matches the reference" *
          doctest::skip(testing::long_run_of_covered_code)) {
  const auto json = testing::reference_json("tiny-opt").at("dev_loss");
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  const auto tokenizer = text::BpeTokenizer::load(testing::model_dir("tiny-opt"));
  const auto paragraphs = eval::load_squad(testing::assets_dir() / "data/squad/dev-v1.1.json");
  REQUIRE(paragraphs.size() == 2067);
  std::vector<std::string> texts;
  for (std::size_t i = 0; i < 64; ++i) texts.push_back(paragraphs[i].context);
  const auto result = eval::evaluate_loss(model, tokenizer, texts, json.at("max_len").get<std::size_t>());
  CHECK(result.tokens == json.at("num_predicted_tokens").get<std::size_t>());
  CHECK(std::abs(result.loss - json.at("mean_loss_nats").get<double>()) <= 1e-4);
  CHECK(result.perplexity == doctest::Approx(std::exp(result.loss)));
}
