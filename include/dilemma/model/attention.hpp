#pragma once
// OPT's causal multi-head self-attention over the new tokens and the layer's
// KV cache. q is scaled by head_dim^-1/2 after its bias, as in OPTAttention.

#include <cmath>
#include <cstddef>
#include <limits>

#include "dilemma/model/kv_cache.hpp"
#include "dilemma/model/linear.hpp"

namespace dilemma::model {

struct SelfAttention {
  Linear q_proj, k_proj, v_proj, out_proj;
  Eigen::Index num_heads = 1;

  std::size_t parameter_count() const {
    return q_proj.parameter_count() + k_proj.parameter_count() + v_proj.parameter_count() +
           out_proj.parameter_count();
  }

  // x: [new_tokens, hidden]. The new tokens occupy positions
  // cache.size() .. cache.size()+new_tokens-1 and are appended to the cache.
  Matrix operator()(const Matrix& x, KvCache& cache, const RunContext& context = {}) const {
    const Eigen::Index hidden = q_proj.out_features();
    const Eigen::Index head_dim = hidden / num_heads;
    const Eigen::Index past = cache.size();
    const Eigen::Index tokens = x.rows();

    context.observe("self_attn.q_proj", x);
    Matrix queries = q_proj(x, context);
    queries *= 1.0f / std::sqrt(static_cast<float>(head_dim));
    context.observe("self_attn.k_proj", x);
    Matrix keys_in = k_proj(x, context);
    context.observe("self_attn.v_proj", x);
    cache.append(keys_in, v_proj(x, context));
    const auto keys = cache.keys();
    const auto values = cache.values();

    Matrix attended(tokens, hidden);
    Matrix scores(tokens, past + tokens);
    for (Eigen::Index h = 0; h < num_heads; ++h) {
      const Eigen::Index col = h * head_dim;
      scores.noalias() = queries.middleCols(col, head_dim) * keys.middleCols(col, head_dim).transpose();
      for (Eigen::Index t = 0; t < tokens; ++t) {
        // Token t sees the past and the new tokens up to itself.
        const Eigen::Index visible = past + t + 1;
        auto row = scores.row(t);
        row.tail(row.size() - visible).setConstant(-std::numeric_limits<float>::infinity());
        const float max = row.head(visible).maxCoeff();
        row = (row.array() - max).exp();
        row /= row.sum();
      }
      attended.middleCols(col, head_dim).noalias() = scores * values.middleCols(col, head_dim);
    }
    context.observe("self_attn.out_proj", attended);
    return out_proj(attended, context);
  }
};

}  // namespace dilemma::model
