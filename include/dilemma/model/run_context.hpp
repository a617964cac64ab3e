#pragma once
// How a stage runs, as opposed to what it computes: which kernels and threads
// its matrix products use, and who watches their inputs. Passed down from
// OptModel::forward or Stage::run to every Linear product.

#include <functional>
#include <string_view>

#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/matmul.hpp"

namespace dilemma::model {

// Called before each weight product of a stage with the matrix's name within
// the stage ("self_attn.q_proj", "fc1", "lm_head", …; Stage::matrices() lists
// them) and the activations it is about to multiply, [tokens × in_features].
// Calibration accumulates XᵀX of every matrix's input this way. The embedding
// table is looked up, not multiplied, so "embed_tokens" has no input and is
// never reported.
using LinearObserver = std::function<void(std::string_view matrix, const Matrix& input)>;

struct RunContext {
  quant::KernelContext kernels{};
  LinearObserver observer{};

  void observe(std::string_view matrix, const Matrix& input) const {
    if (observer) observer(matrix, input);
  }
};

}  // namespace dilemma::model
