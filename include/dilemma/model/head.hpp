#pragma once
// The last stage: the decoder's final LayerNorm (pre-LN models), the projection
// out of the decoder (OPT-350m) and the language-model head, whose weight is the
// token embedding matrix when tie_word_embeddings holds.

#include <cstddef>
#include <memory>
#include <optional>

#include "dilemma/model/layer_norm.hpp"
#include "dilemma/model/linear.hpp"

namespace dilemma::model {

struct Head {
  std::optional<LayerNorm> final_layer_norm;
  std::optional<Linear> project_out;   // [word_embed_proj_dim, hidden], no bias
  std::shared_ptr<const Matrix> lm_head;  // [vocab_size, word_embed_proj_dim]

  std::size_t parameter_count() const {
    return static_cast<std::size_t>(lm_head->size()) +
           (final_layer_norm ? final_layer_norm->parameter_count() : 0) +
           (project_out ? project_out->parameter_count() : 0);
  }

  // hidden: [tokens, hidden] → logits: [tokens, vocab_size].
  Matrix operator()(Matrix hidden) const {
    if (final_layer_norm) final_layer_norm->apply_in_place(hidden);
    if (project_out) hidden = (*project_out)(hidden);
    Matrix logits(hidden.rows(), lm_head->rows());
    logits.noalias() = hidden * lm_head->transpose();
    return logits;
  }
};

}  // namespace dilemma::model
