#pragma once
// Picks the next token from a row of logits: greedy, or temperature, top-k and
// top-p (nucleus) sampling applied in that order, as transformers does.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "dilemma/error.hpp"
#include "dilemma/token_id.hpp"

namespace dilemma::generation {

struct SamplingOptions {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = no top-k filter
  float top_p = 1.0f;        // 1 = no nucleus filter
  std::uint64_t seed = 0;

  void validate() const {
    if (!(temperature >= 0.0f) || !std::isfinite(temperature)) {
      detail::fail("sampling option temperature must be a finite number >= 0, got {}", temperature);
    }
    if (top_k < 0) detail::fail("sampling option top_k must be >= 0 (0 disables it), got {}", top_k);
    if (!(top_p > 0.0f && top_p <= 1.0f)) detail::fail("sampling option top_p must be in (0, 1], got {}", top_p);
  }
};

class Sampler {
 public:
  explicit Sampler(SamplingOptions options) : options_(options), rng_(options.seed) { options_.validate(); }

  TokenId next(std::span<const float> logits) {
    if (logits.empty()) detail::fail("cannot sample from an empty row of logits");
    if (options_.temperature == 0.0f) return greedy(logits);
    if (std::ranges::any_of(logits, [](float v) { return std::isnan(v); })) fail_nan();
    // Candidates sorted by logit, best first; ties keep the lower id first.
    std::vector<TokenId> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::size_t keep = order.size();
    if (options_.top_k > 0) keep = std::min(keep, static_cast<std::size_t>(options_.top_k));
    auto by_logit = [&](TokenId a, TokenId b) {
      return logits[static_cast<std::size_t>(a)] > logits[static_cast<std::size_t>(b)] ||
             (logits[static_cast<std::size_t>(a)] == logits[static_cast<std::size_t>(b)] && a < b);
    };
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(), by_logit);
    order.resize(keep);

    std::vector<double> probabilities(keep);
    const double max = logits[static_cast<std::size_t>(order.front())];
    for (std::size_t i = 0; i < keep; ++i) {
      probabilities[i] = std::exp((logits[static_cast<std::size_t>(order[i])] - max) / options_.temperature);
    }
    double total = std::accumulate(probabilities.begin(), probabilities.end(), 0.0);
    if (options_.top_p < 1.0f) {
      // Smallest prefix whose mass reaches top_p; the best token always stays.
      double mass = 0.0;
      std::size_t nucleus = 0;
      while (nucleus < keep && mass < options_.top_p * total) mass += probabilities[nucleus++];
      probabilities.resize(std::max<std::size_t>(nucleus, 1));
      total = std::accumulate(probabilities.begin(), probabilities.end(), 0.0);
    }
    // mt19937_64's output sequence is fixed by the standard, unlike the
    // standard distributions, so a seed gives the same tokens everywhere.
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
    double cumulative = 0.0;
    for (std::size_t i = 0; i < probabilities.size(); ++i) {
      cumulative += probabilities[i];
      if (u < cumulative) return order[i];
    }
    return order[probabilities.size() - 1];
  }

 private:
  // The first largest logit, in one pass that also finds a NaN: the user waits
  // for it on every token (8 µs for tiny-opt's 8,264 logits in two passes).
  static TokenId greedy(std::span<const float> logits) {
    std::size_t best = 0;
    float best_value = logits[0];
    for (std::size_t i = 0; i < logits.size(); ++i) {
      const float value = logits[i];
      if (!(value <= best_value)) {  // larger, or NaN
        if (std::isnan(value)) fail_nan();
        best_value = value;
        best = i;
      }
    }
    return static_cast<TokenId>(best);
  }

  [[noreturn]] static void fail_nan() { detail::fail("logits contain NaN: the model produced invalid values"); }

  SamplingOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace dilemma::generation
