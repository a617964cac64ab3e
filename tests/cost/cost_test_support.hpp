#pragma once
// A model small enough to count every byte and FLOP of by hand.

#include "dilemma/model/config.hpp"

namespace dilemma::testing {

// vocab 10, hidden 32, one decoder layer, ffn 64, pre-LN (so the head has
// the final LayerNorm), no projection, 16 positions. Integer formats need
// groups of 32 (QuantScheme{32}) to divide its matrices.
inline model::OptConfig hand_config() {
  model::OptConfig config;
  config.vocab_size = 10;
  config.hidden_size = 32;
  config.word_embed_proj_dim = 32;
  config.num_hidden_layers = 1;
  config.ffn_dim = 64;
  config.num_attention_heads = 2;
  config.max_position_embeddings = 16;
  config.do_layer_norm_before = true;
  config.bos_token_id = 2;
  config.eos_token_id = 2;
  config.pad_token_id = 1;
  return config;
}

}  // namespace dilemma::testing
