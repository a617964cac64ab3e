// Teacher–student metrics of whole models on SQuAD text: KL, top-1 agreement
// and both losses, against their definitions and eval::evaluate_loss.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "dilemma/eval/perplexity.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/eval/teacher_student.hpp"
#include "dilemma/model/opt_model.hpp"
#include "test_support.hpp"

using namespace dilemma;

namespace {

std::vector<std::string> squad_texts(std::size_t begin, std::size_t end) {
  const auto paragraphs = eval::load_squad(testing::assets_dir() / "data/squad/dev-v1.1.json");
  std::vector<std::string> texts;
  for (std::size_t i = begin; i < end; ++i) texts.push_back(paragraphs[i].context);
  return texts;
}

}  // namespace

TEST_CASE("a model compared with itself has KL 0, full agreement and the loss evaluate_loss reports") {
  const auto dir = testing::model_dir("tiny-opt");
  const auto tokenizer = text::BpeTokenizer::load(dir);
  const auto teacher = model::OptModel::load(dir);
  const auto texts = squad_texts(0, 4);
  const auto result = eval::compare_to_teacher(teacher, teacher, tokenizer, texts, 48);
  const auto loss = eval::evaluate_loss(teacher, tokenizer, texts, 48);
  CHECK(result.kl == 0.0);
  CHECK(result.top1_agreement == 1.0);
  CHECK(result.teacher.loss == doctest::Approx(loss.loss).epsilon(1e-9));
  CHECK(result.student.loss == result.teacher.loss);
  CHECK(result.teacher.tokens == loss.tokens);
  CHECK(result.teacher.texts == 4);
  CHECK(result.student.perplexity == doctest::Approx(loss.perplexity).epsilon(1e-9));
}

TEST_CASE("a quantized student drifts from its teacher: KL > 0, its loss is evaluate_loss of the student") {
  const auto dir = testing::model_dir("tiny-opt");
  const auto tokenizer = text::BpeTokenizer::load(dir);
  const auto teacher = model::OptModel::load(dir);
  const auto texts = squad_texts(0, 4);
  const auto sequences = eval::encode_for_scoring(tokenizer, texts, 48);

  auto int8 = teacher;
  int8.quantize(quant::FormatAssignment::uniform(quant::Format::int8, {.group_size = 32}));
  auto int4 = teacher;
  int4.quantize(quant::FormatAssignment::uniform(quant::Format::int4, {.group_size = 32}));
  const auto near = eval::compare_to_teacher(teacher, int8, sequences);
  const auto far = eval::compare_to_teacher(teacher, int4, sequences);
  CHECK(near.kl > 0.0);
  CHECK(far.kl > 10 * near.kl);
  CHECK(near.top1_agreement > far.top1_agreement);
  CHECK(near.top1_agreement > 0.9);
  CHECK(far.student.loss == doctest::Approx(eval::evaluate_loss(int4, tokenizer, texts, 48).loss).epsilon(1e-9));
  CHECK(far.teacher.loss == doctest::Approx(near.teacher.loss).epsilon(1e-12));
  CHECK(far.student.loss > far.teacher.loss);
}

TEST_CASE("texts with nothing to predict are an error") {
  const auto dir = testing::model_dir("tiny-opt");
  const auto teacher = model::OptModel::load(dir);
  const std::vector<std::vector<TokenId>> only_bos = {{2}, {2}};
  CHECK_THROWS_WITH_AS(eval::compare_to_teacher(teacher, teacher, only_bos),
                       "no tokens to score: every text encodes to a single token", Error);
  const auto tokenizer = text::BpeTokenizer::load(dir);
  const std::vector<std::string> texts = {"a"};
  CHECK_THROWS_WITH_AS(eval::encode_for_scoring(tokenizer, texts, 1),
                       "max_tokens must be at least 2 to predict a token, got 1", Error);
}
