#pragma once
// The float containers every stage exchanges. Activations are row-major
// [tokens × features] so that one token's vector is contiguous: that is the
// unit sent between servers in decode, and the row a stage appends to its KV cache.

#include <Eigen/Core>

namespace dilemma::model {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic>;
using Activations = Matrix;

}  // namespace dilemma::model
