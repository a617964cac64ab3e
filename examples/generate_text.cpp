// Load a Hugging Face OPT checkpoint and continue a prompt: the few lines an
// application needs.
//
//   example_generate_text assets/models/tiny-opt "The University of Notre Dame is"

#include <cstdio>

#include <dilemma/dilemma.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR PROMPT\n", argv[0]);
    return 2;
  }
  try {
    const auto tokenizer = dilemma::text::BpeTokenizer::load(argv[1]);
    const auto model = dilemma::model::OptModel::load(argv[1]);

    dilemma::generation::GenerationOptions options;
    options.max_new_tokens = 20;
    const auto result = dilemma::generation::generate(model, tokenizer.encode(argv[2]), options);
    std::printf("%s%s\n", argv[2], tokenizer.decode(result.tokens).c_str());
  } catch (const dilemma::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
