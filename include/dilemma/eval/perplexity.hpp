#pragma once
// Mean next-token cross-entropy (nats) and perplexity of a model over texts,
// defined as the bundled references define it: each text encoded with BOS,
// truncated to max_tokens ids, one forward pass per text, the terms
// -log softmax(logits[t])[ids[t+1]] for t = 0..T-2 over the full vocabulary,
// averaged over all terms of all texts (token-weighted).

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dilemma/model/opt_model.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::eval {

struct LossResult {
  double loss = 0.0;        // mean nats per predicted token
  double perplexity = 0.0;  // exp(loss)
  std::size_t tokens = 0;   // number of predicted tokens (terms)
  std::size_t texts = 0;
};

// Sum of -log p(ids[t+1] | ids[..t]) over one already-encoded text.
inline double sequence_nll(const model::OptModel& model, std::span<const TokenId> ids,
                           const model::RunContext& context = {}) {
  if (ids.size() < 2) return 0.0;
  auto session = model.new_session();
  const model::Matrix logits = model.forward(ids, session, model::Logits::all, context);
  double total = 0.0;
  for (Eigen::Index t = 0; t + 1 < logits.rows(); ++t) {
    const auto row = logits.row(t);
    const double max = row.maxCoeff();
    const double log_sum = max + std::log((row.array().cast<double>() - max).exp().sum());
    total += log_sum - row(ids[static_cast<std::size_t>(t) + 1]);
  }
  return total;
}

inline LossResult evaluate_loss(const model::OptModel& model, const text::BpeTokenizer& tokenizer,
                                std::span<const std::string> texts, std::size_t max_tokens = 128,
                                const model::RunContext& context = {}) {
  if (max_tokens < 2) dilemma::detail::fail("max_tokens must be at least 2 to predict a token, got {}", max_tokens);
  LossResult result;
  double total = 0.0;
  for (const auto& text : texts) {
    auto ids = tokenizer.encode(text, text::BpeTokenizer::Bos::add);
    if (ids.size() > max_tokens) ids.resize(max_tokens);
    total += sequence_nll(model, ids, context);
    result.tokens += ids.size() - 1;
    ++result.texts;
  }
  if (result.tokens == 0) dilemma::detail::fail("no tokens to score: every text encodes to a single token");
  result.loss = total / static_cast<double>(result.tokens);
  result.perplexity = std::exp(result.loss);
  return result;
}

}  // namespace dilemma::eval
