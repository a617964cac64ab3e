#pragma once
// y = x·Wᵀ + b with W stored as [out_features × in_features], the layout of
// PyTorch's nn.Linear and of the checkpoint, so that each output is the dot
// product of one contiguous weight row with the input: the memory-bound
// matrix–vector product of decode streams W exactly once. W may be in any
// format of quant::Format; the product runs the quant kernels (f32 decode
// through the f32 GEMV kernel, prefill through Eigen's GEMM on f32 or
// dequantized panels), so that one code path serves the teacher and every
// student.

#include <cstddef>
#include <string_view>

#include "dilemma/model/matrix.hpp"
#include "dilemma/model/run_context.hpp"
#include "dilemma/quant/matmul.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::model {

struct Linear {
  quant::QuantizedMatrix weight;  // [out_features, in_features]
  RowVector bias;                 // [out_features], or empty when the model has no biases

  Eigen::Index in_features() const { return weight.cols(); }
  Eigen::Index out_features() const { return weight.rows(); }
  std::size_t parameter_count() const {
    return static_cast<std::size_t>(weight.rows() * weight.cols() + bias.size());
  }
  // Bytes as stored: the weight with its scales and offsets, and the f32 bias.
  std::size_t bytes() const { return weight.bytes() + static_cast<std::size_t>(bias.size()) * sizeof(float); }

  Matrix operator()(const Matrix& x, const RunContext& context = {}) const {
    Matrix y;
    quant::gemm(weight, x, y, context.kernels);
    if (bias.size() != 0) y.rowwise() += bias;
    return y;
  }
};

// An f32 weight from float values; `name` starts the error if one is not finite.
inline quant::QuantizedMatrix f32_weight(const Matrix& values, std::string_view name = "weight") {
  return quant::QuantizedMatrix::quantize(values, quant::Format::f32, {}, name);
}

}  // namespace dilemma::model
