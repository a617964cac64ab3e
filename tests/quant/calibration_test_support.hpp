#pragma once
// Calibration inputs shaped like a transformer's: correlated features (every
// input is a mix of fewer latent directions) and a few channels with much
// larger magnitudes, so that H = XᵀX is far from diagonal and ill-conditioned.

#include <cstdint>
#include <random>

#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/calibration/input_statistics.hpp"
#include "quant_test_support.hpp"

namespace dilemma::testing {

inline model::Matrix correlated_activations(Eigen::Index tokens, Eigen::Index cols, std::uint32_t seed) {
  const Eigen::Index latent = cols / 2;
  const model::Matrix z = random_activations(tokens, latent, seed);
  model::Matrix mix = random_activations(latent, cols, seed + 1);
  for (Eigen::Index c = 0; c < cols; c += 17) mix.col(c) *= 8.0f;  // outlier channels
  return z * mix / std::sqrt(static_cast<float>(latent));
}

inline quant::calibration::InputStatistics statistics_of(const model::Matrix& x) {
  quant::calibration::InputStatistics stats(x.cols());
  stats.add(x);
  return stats;
}

}  // namespace dilemma::testing
