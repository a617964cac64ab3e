#include <doctest/doctest.h>

#include <map>
#include <span>

#include "dilemma/generation/sampler.hpp"

using namespace dilemma;
using generation::Sampler;
using generation::SamplingOptions;

TEST_CASE("greedy picks the first largest logit") {
  Sampler greedy(SamplingOptions{});
  const float logits[] = {0.5f, 3.0f, -1.0f, 3.0f};
  CHECK(greedy.next(logits) == 1);
}

TEST_CASE("top_k = 1 and a tiny top_p reduce sampling to greedy") {
  const float logits[] = {0.1f, 0.2f, 2.5f, 2.4f, -3.0f};
  Sampler top1(SamplingOptions{.temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .seed = 7});
  Sampler nucleus(SamplingOptions{.temperature = 1.0f, .top_k = 0, .top_p = 1e-6f, .seed = 7});
  for (int i = 0; i < 100; ++i) {
    CHECK(top1.next(logits) == 2);
    CHECK(nucleus.next(logits) == 2);
  }
}

TEST_CASE("sampling follows softmax(logits / temperature) and is reproducible from the seed") {
  const float logits[] = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler sampler(SamplingOptions{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 42});
  Sampler same_seed(SamplingOptions{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 42});
  std::map<TokenId, int> counts;
  constexpr int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    const TokenId id = sampler.next(logits);
    CHECK(same_seed.next(logits) == id);
    ++counts[id];
  }
  CHECK(counts[0] / double(draws) == doctest::Approx(0.5).epsilon(0.05));
  CHECK(counts[1] / double(draws) == doctest::Approx(0.3).epsilon(0.05));
  CHECK(counts[2] / double(draws) == doctest::Approx(0.2).epsilon(0.05));

  // top_p = 0.75 keeps {0.5, 0.3}: token 2 never appears, the others renormalize to 5/8 and 3/8.
  Sampler nucleus(SamplingOptions{.temperature = 1.0f, .top_k = 0, .top_p = 0.75f, .seed = 1});
  std::map<TokenId, int> kept;
  for (int i = 0; i < draws; ++i) ++kept[nucleus.next(logits)];
  CHECK(kept.count(2) == 0);
  CHECK(kept[0] / double(draws) == doctest::Approx(0.625).epsilon(0.05));
}

TEST_CASE("invalid sampling options and logits are errors") {
  CHECK_THROWS_WITH_AS(Sampler(SamplingOptions{.temperature = -1.0f}),
                       "sampling option temperature must be a finite number >= 0, got -1", Error);
  CHECK_THROWS_WITH_AS(Sampler(SamplingOptions{.temperature = 1.0f, .top_k = -2}),
                       "sampling option top_k must be >= 0 (0 disables it), got -2", Error);
  CHECK_THROWS_WITH_AS(Sampler(SamplingOptions{.temperature = 1.0f, .top_k = 0, .top_p = 0.0f}),
                       "sampling option top_p must be in (0, 1], got 0", Error);
  Sampler greedy(SamplingOptions{});
  // A NaN anywhere: first, after the largest value, before it.
  const float nan_first[] = {std::nanf(""), 0.0f, 1.0f};
  const float nan_after_max[] = {2.0f, 0.0f, std::nanf("")};
  const float nan_before_max[] = {0.0f, std::nanf(""), 2.0f};
  for (std::span<const float> logits : {std::span<const float>(nan_first), std::span<const float>(nan_after_max),
                                        std::span<const float>(nan_before_max)}) {
    CHECK_THROWS_WITH_AS(greedy.next(logits), "logits contain NaN: the model produced invalid values", Error);
  }
  Sampler sampling(SamplingOptions{.temperature = 1.0f});
  CHECK_THROWS_WITH_AS(sampling.next(nan_after_max), "logits contain NaN: the model produced invalid values", Error);
}
