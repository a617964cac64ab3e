#pragma once
// LayerNorm over each token's features, as torch.nn.LayerNorm (biased variance,
// eps inside the square root), with optional affine parameters.

#include <cmath>
#include <cstddef>

#include "dilemma/model/matrix.hpp"

namespace dilemma::model {

struct LayerNorm {
  RowVector weight;  // empty when layer_norm_elementwise_affine is false
  RowVector bias;
  float eps = 1e-5f;

  std::size_t parameter_count() const { return static_cast<std::size_t>(weight.size() + bias.size()); }

  void apply_in_place(Matrix& x) const {
    const auto features = static_cast<float>(x.cols());
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      auto row = x.row(t);
      const float mean = row.sum() / features;
      row.array() -= mean;
      const float variance = row.squaredNorm() / features;
      row *= 1.0f / std::sqrt(variance + eps);
      if (weight.size() != 0) row.array() *= weight.array();
      if (bias.size() != 0) row += bias;
    }
  }
};

}  // namespace dilemma::model
