#pragma once
// The last stage: the decoder's final LayerNorm (pre-LN models), the projection
// out of the decoder (OPT-350m) and the language-model head, whose weight is the
// token embedding matrix when tie_word_embeddings holds.

#include <cstddef>
#include <memory>
#include <optional>

#include "dilemma/model/layer_norm.hpp"
#include "dilemma/model/linear.hpp"
#include "dilemma/quant/matmul.hpp"

namespace dilemma::model {

struct Head {
  std::optional<LayerNorm> final_layer_norm;
  std::optional<Linear> project_out;  // [word_embed_proj_dim, hidden], no bias
  // [vocab_size, word_embed_proj_dim]; the embedding's table when tied and
  // both stages share a format in one process (see Embedding::embed_tokens).
  std::shared_ptr<quant::QuantizedMatrix> lm_head;

  std::size_t parameter_count() const {
    return static_cast<std::size_t>(lm_head->rows() * lm_head->cols()) +
           (final_layer_norm ? final_layer_norm->parameter_count() : 0) +
           (project_out ? project_out->parameter_count() : 0);
  }

  // hidden: [tokens, hidden] → logits: [tokens, vocab_size].
  Matrix operator()(Matrix hidden, const RunContext& context = {}) const {
    if (final_layer_norm) final_layer_norm->apply_in_place(hidden);
    if (project_out) {
      context.observe("project_out", hidden);
      hidden = (*project_out)(hidden, context);
    }
    context.observe("lm_head", hidden);
    return quant::gemm(*lm_head, hidden, context.kernels);
  }
};

}  // namespace dilemma::model
