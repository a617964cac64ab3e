#pragma once

#include <cstdint>

namespace dilemma {

// A token's index in a tokenizer's vocabulary and in a model's embedding matrix.
// 32 bits as in Hugging Face's exported ids (NumPy int32) and every real vocabulary.
using TokenId = std::int32_t;

}  // namespace dilemma
