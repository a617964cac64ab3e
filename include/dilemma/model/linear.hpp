#pragma once
// y = x·Wᵀ + b with W stored as [out_features × in_features], the layout of
// PyTorch's nn.Linear and of the checkpoint, so that each output is the dot
// product of one contiguous weight row with the input: the memory-bound
// matrix–vector product of decode streams W exactly once.

#include <cstddef>

#include "dilemma/model/matrix.hpp"

namespace dilemma::model {

struct Linear {
  Matrix weight;   // [out_features, in_features]
  RowVector bias;  // [out_features], or empty when the model has no biases

  Eigen::Index in_features() const { return weight.cols(); }
  Eigen::Index out_features() const { return weight.rows(); }
  std::size_t parameter_count() const { return static_cast<std::size_t>(weight.size() + bias.size()); }

  Matrix operator()(const Matrix& x) const {
    Matrix y(x.rows(), weight.rows());
    y.noalias() = x * weight.transpose();
    if (bias.size() != 0) y.rowwise() += bias;
    return y;
  }
};

}  // namespace dilemma::model
