#pragma once
// How far a student model (the teacher quantized, in any format assignment)
// has drifted from its teacher, measured on text: at every scored position of
// every text, both models' next-token distributions p (teacher) and q
// (student) over the full vocabulary, and
//   KL(teacher ‖ student) = Σ_v p(v) (log p(v) − log q(v)),  averaged over positions;
//   top-1 agreement       the fraction of positions where argmax p = argmax q;
//   teacher and student loss and perplexity, as eval/perplexity.hpp defines
//   them (BOS, truncation to max_tokens, positions t = 0 … T−2 predicting
//   ids[t+1], token-weighted mean).
// The same positions are scored by all four numbers, so a text of T ids adds
// T − 1 positions. Logits are turned into log-probabilities in double.

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/eval/perplexity.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::eval {

struct TeacherStudentResult {
  double kl = 0.0;              // mean KL(teacher ‖ student) per position, nats
  double top1_agreement = 0.0;  // fraction of positions whose most likely next token agrees
  LossResult teacher;
  LossResult student;
};

// Each text as evaluate_loss() scores it: with BOS, at most max_tokens ids.
inline std::vector<std::vector<TokenId>> encode_for_scoring(const text::BpeTokenizer& tokenizer,
                                                            std::span<const std::string> texts,
                                                            std::size_t max_tokens = 128) {
  if (max_tokens < 2) dilemma::detail::fail("max_tokens must be at least 2 to predict a token, got {}", max_tokens);
  std::vector<std::vector<TokenId>> sequences;
  sequences.reserve(texts.size());
  for (const auto& text : texts) {
    auto ids = tokenizer.encode(text, text::BpeTokenizer::Bos::add);
    if (ids.size() > max_tokens) ids.resize(max_tokens);
    sequences.push_back(std::move(ids));
  }
  return sequences;
}

namespace detail {

inline Eigen::VectorXd log_softmax(const Eigen::Ref<const model::RowVector>& logits) {
  const Eigen::VectorXd x = logits.transpose().cast<double>();
  const double max = x.maxCoeff();
  const double log_sum = max + std::log((x.array() - max).exp().sum());
  return x.array() - log_sum;
}

}  // namespace detail

inline TeacherStudentResult compare_to_teacher(const model::OptModel& teacher, const model::OptModel& student,
                                               std::span<const std::vector<TokenId>> sequences,
                                               const model::RunContext& context = {}) {
  if (teacher.config().vocab_size != student.config().vocab_size) {
    dilemma::detail::fail("teacher and student have different vocabularies ({} and {} tokens)",
                          teacher.config().vocab_size, student.config().vocab_size);
  }
  TeacherStudentResult result;
  double kl = 0.0, agree = 0.0, teacher_nll = 0.0, student_nll = 0.0;
  std::size_t positions = 0;
  for (const auto& ids : sequences) {
    ++result.teacher.texts;
    if (ids.size() < 2) continue;
    auto teacher_session = teacher.new_session();
    auto student_session = student.new_session();
    const model::Matrix p_logits = teacher.forward(ids, teacher_session, model::Logits::all, context);
    const model::Matrix q_logits = student.forward(ids, student_session, model::Logits::all, context);
    for (Eigen::Index t = 0; t + 1 < p_logits.rows(); ++t) {
      const Eigen::VectorXd log_p = detail::log_softmax(p_logits.row(t));
      const Eigen::VectorXd log_q = detail::log_softmax(q_logits.row(t));
      kl += (log_p.array().exp() * (log_p - log_q).array()).sum();
      Eigen::Index teacher_top = 0, student_top = 0;
      p_logits.row(t).maxCoeff(&teacher_top);
      q_logits.row(t).maxCoeff(&student_top);
      agree += teacher_top == student_top ? 1.0 : 0.0;
      const auto next = ids[static_cast<std::size_t>(t) + 1];
      teacher_nll -= log_p(next);
      student_nll -= log_q(next);
      ++positions;
    }
  }
  if (positions == 0) dilemma::detail::fail("no tokens to score: every text encodes to a single token");
  const auto n = static_cast<double>(positions);
  result.kl = kl / n;
  result.top1_agreement = agree / n;
  result.teacher.tokens = positions;
  result.teacher.loss = teacher_nll / n;
  result.teacher.perplexity = std::exp(result.teacher.loss);
  result.student = result.teacher;
  result.student.loss = student_nll / n;
  result.student.perplexity = std::exp(result.student.loss);
  return result;
}

inline TeacherStudentResult compare_to_teacher(const model::OptModel& teacher, const model::OptModel& student,
                                               const text::BpeTokenizer& tokenizer, std::span<const std::string> texts,
                                               std::size_t max_tokens = 128, const model::RunContext& context = {}) {
  const auto sequences = encode_for_scoring(tokenizer, texts, max_tokens);
  return compare_to_teacher(teacher, student, sequences, context);
}

}  // namespace dilemma::eval
