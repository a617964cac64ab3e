#pragma once
// dilemma: joint placement and quantization of OPT language models across small
// edge servers, and the runtime that executes the plan.
//
// The data flow, header by header:
//   checkpoint (io/safetensors, model/checkpoint)
//     → teacher model, a sequence of stages (model/opt_model, model/stage)
//     → text in and out (text/bpe_tokenizer, generation/generate)
//     → quality of a model on SQuAD (eval/perplexity)

#include "dilemma/error.hpp"
#include "dilemma/version.hpp"

#include "dilemma/io/dtype.hpp"
#include "dilemma/io/mapped_file.hpp"
#include "dilemma/io/npy.hpp"
#include "dilemma/io/safetensors.hpp"

#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/random_model.hpp"
#include "dilemma/model/stage.hpp"

#include "dilemma/text/bpe_tokenizer.hpp"

#include "dilemma/generation/generate.hpp"
#include "dilemma/generation/sampler.hpp"

#include "dilemma/eval/perplexity.hpp"
#include "dilemma/eval/squad.hpp"
