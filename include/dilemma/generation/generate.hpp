#pragma once
// Autoregressive generation with a KV cache: one prefill over the prompt, then
// one decode step per new token, until EOS, the token limit or the model's
// context length.

#include <chrono>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "dilemma/generation/sampler.hpp"
#include "dilemma/model/opt_model.hpp"

namespace dilemma::generation {

struct GenerationOptions {
  int max_new_tokens = 32;
  SamplingOptions sampling;
  bool stop_at_eos = true;
  model::RunContext run_context;  // kernels and threads of every forward pass
};

enum class StopReason { eos, max_new_tokens, context_full };

inline const char* to_string(StopReason reason) {
  switch (reason) {
    case StopReason::eos: return "eos";
    case StopReason::max_new_tokens: return "max_new_tokens";
    case StopReason::context_full: return "context_full";
  }
  return "unknown";
}

struct GenerationResult {
  std::vector<TokenId> tokens;  // generated ids, EOS included when it ended the run
  StopReason stop_reason = StopReason::max_new_tokens;
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;  // all decode steps together
};

// `on_token` sees every generated id as soon as it is chosen (for streaming).
inline GenerationResult generate(const model::OptModel& model, std::span<const TokenId> prompt,
                                 const GenerationOptions& options,
                                 const std::function<void(TokenId)>& on_token = {}) {
  if (prompt.empty()) detail::fail("generate() needs a prompt of at least one token (OPT prompts start with BOS)");
  if (options.max_new_tokens < 0) detail::fail("max_new_tokens must be >= 0, got {}", options.max_new_tokens);
  const Eigen::Index context = model.config().max_position_embeddings;
  if (static_cast<Eigen::Index>(prompt.size()) > context) {
    detail::fail("the prompt has {} tokens, more than the model's context of {}", prompt.size(), context);
  }
  using Clock = std::chrono::steady_clock;
  Sampler sampler(options.sampling);
  GenerationResult result;
  auto session = model.new_session();

  auto start = Clock::now();
  model::Matrix logits = model.forward(prompt, session, model::Logits::last, options.run_context);
  result.prefill_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  start = Clock::now();
  while (static_cast<int>(result.tokens.size()) < options.max_new_tokens) {
    const TokenId next = sampler.next(std::span<const float>(logits.data(), static_cast<std::size_t>(logits.cols())));
    result.tokens.push_back(next);
    if (on_token) on_token(next);
    if (options.stop_at_eos && next == model.config().eos_token_id) {
      result.stop_reason = StopReason::eos;
      break;
    }
    if (static_cast<int>(result.tokens.size()) == options.max_new_tokens) break;
    if (session.length() >= context) {
      result.stop_reason = StopReason::context_full;
      break;
    }
    const TokenId step[] = {next};
    logits = model.forward(step, session, model::Logits::last, options.run_context);
  }
  result.decode_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace dilemma::generation
