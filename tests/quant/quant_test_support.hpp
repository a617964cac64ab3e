#pragma once
// Random weights and activations for the quantization tests, reproducible
// from a seed.

#include <cmath>
#include <cstdint>
#include <random>

#include "dilemma/model/matrix.hpp"

namespace dilemma::testing {

// Gaussian weights with a few large outliers, like trained transformer
// weights, whose groups then have very different scales.
inline model::Matrix random_weights(Eigen::Index rows, Eigen::Index cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  model::Matrix w(rows, cols);
  for (float& value : w.reshaped()) {
    value = normal(rng);
    if (uniform(rng) < 0.01f) value *= 20.0f;
  }
  return w;
}

inline model::Matrix random_activations(Eigen::Index rows, Eigen::Index cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  model::Matrix x(rows, cols);
  for (float& value : x.reshaped()) value = normal(rng);
  return x;
}

}  // namespace dilemma::testing
