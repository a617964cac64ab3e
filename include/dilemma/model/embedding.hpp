#pragma once
// The first stage: token embeddings (projected into the decoder's width for
// OPT-350m-style models) plus OPT's learned positions.

#include <cstddef>
#include <memory>
#include <optional>
#include <span>

#include "dilemma/error.hpp"
#include "dilemma/model/linear.hpp"
#include "dilemma/quant/quantized_matrix.hpp"
#include "dilemma/token_id.hpp"

namespace dilemma::model {

struct Embedding {
  // Shared with a tied head while both run in one process in the same format
  // (Stage::matrices() gives each stage its own copy before changing it).
  std::shared_ptr<quant::QuantizedMatrix> embed_tokens;  // [vocab_size, word_embed_proj_dim]
  std::optional<Linear> project_in;                      // [hidden, word_embed_proj_dim], no bias
  Matrix embed_positions;                                // [max_position_embeddings + 2, hidden]
  Eigen::Index position_offset = 2;

  std::size_t parameter_count() const {
    return static_cast<std::size_t>(embed_tokens->rows() * embed_tokens->cols() + embed_positions.size()) +
           (project_in ? project_in->parameter_count() : 0);
  }
  Eigen::Index max_positions() const { return embed_positions.rows() - position_offset; }

  // Embeds tokens that sit at positions first_position, first_position+1, …
  // A quantized table is dequantized only in the rows looked up.
  Matrix operator()(std::span<const TokenId> ids, Eigen::Index first_position, const RunContext& context = {}) const {
    const auto count = static_cast<Eigen::Index>(ids.size());
    if (first_position < 0 || first_position + count > max_positions()) {
      dilemma::detail::fail("positions {}..{} exceed the model's max_position_embeddings ({})", first_position,
                            first_position + count - 1, max_positions());
    }
    Matrix tokens(count, embed_tokens->cols());
    for (Eigen::Index t = 0; t < count; ++t) {
      const TokenId id = ids[static_cast<std::size_t>(t)];
      if (id < 0 || id >= embed_tokens->rows()) {
        dilemma::detail::fail("token id {} at index {} is outside the vocabulary [0, {})", id, t,
                              embed_tokens->rows());
      }
      embed_tokens->dequantize_row(id, std::span(tokens.row(t).data(), static_cast<std::size_t>(tokens.cols())));
    }
    Matrix hidden;
    if (project_in) {
      context.observe("project_in", tokens);
      hidden = (*project_in)(tokens, context);
    } else {
      hidden = std::move(tokens);
    }
    hidden += embed_positions.middleRows(first_position + position_offset, count);
    return hidden;
  }
};

}  // namespace dilemma::model
