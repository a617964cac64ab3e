// Run the stages of a model one at a time, as separate servers would: load
// each stage on its own, pass the activations along by hand, and print the
// size of every message that would cross the network.
//
//   example_run_one_stage assets/models/tiny-opt "Question: What is the capital of France?"

#include <cstdio>
#include <variant>

#include <dilemma/dilemma.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR PROMPT\n", argv[0]);
    return 2;
  }
  try {
    const auto tokenizer = dilemma::text::BpeTokenizer::load(argv[1]);
    const auto checkpoint = dilemma::model::OptCheckpoint::open(argv[1]);
    const auto stage_count = static_cast<std::size_t>(checkpoint.config().num_stages());

    dilemma::model::StageInput message = tokenizer.encode(argv[2]);
    for (std::size_t i = 0; i < stage_count; ++i) {
      // A server holding stage i would load only this stage's weights.
      const auto stage = checkpoint.load_stage(i);
      dilemma::model::StageState state;  // per request; kept between decode steps
      message = stage.run(message, state);
      const auto& out = std::get<dilemma::model::Matrix>(message);
      std::printf("%-10s %8zu parameters -> [%ld x %ld] = %zu bytes\n", stage.name().c_str(),
                  stage.parameter_count(), static_cast<long>(out.rows()), static_cast<long>(out.cols()),
                  static_cast<std::size_t>(out.size()) * sizeof(float));
    }
    const auto& logits = std::get<dilemma::model::Matrix>(message);
    Eigen::Index next = 0;
    logits.row(logits.rows() - 1).maxCoeff(&next);
    const dilemma::TokenId id[] = {static_cast<dilemma::TokenId>(next)};
    std::printf("next token: %d \"%s\"\n", id[0], tokenizer.decode(id).c_str());
  } catch (const dilemma::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
