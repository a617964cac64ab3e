// Stages run on their own, from explicit inputs, as the distributed runtime
// will run them on different servers.

#include <doctest/doctest.h>

#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/random_model.hpp"
#include "reference_data.hpp"

using namespace dilemma;

TEST_CASE("running the stages one by one equals the whole model's forward pass") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  const auto prompt = testing::reference_prompts("tiny-opt").at(2);
  auto whole = model.new_session();
  const auto expected = model.forward(prompt.ids, whole, model::Logits::all);

  std::vector<model::StageState> states(model.stages().size());
  model::StageInput message = prompt.ids;
  for (const auto& stage : model.stages()) {
    message = stage.run(message, states[stage.index()]);
  }
  const auto& logits = std::get<model::Matrix>(message);
  CHECK((logits - expected).cwiseAbs().maxCoeff() == 0.0f);
  for (const auto& state : states) CHECK(state.tokens_seen == static_cast<Eigen::Index>(prompt.ids.size()));
  CHECK(states[1].kv_cache.size() == static_cast<Eigen::Index>(prompt.ids.size()));
}

TEST_CASE("stages are named and ordered embedding, layers, head") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  const auto stages = model.stages();
  REQUIRE(stages.size() == 10);
  CHECK(stages[0].name() == "embedding");
  CHECK(stages[1].name() == "layer.0");
  CHECK(stages[8].name() == "layer.7");
  CHECK(stages[9].name() == "head");
  CHECK(stages[0].kind() == model::StageKind::embedding);
  CHECK(stages[9].kind() == model::StageKind::head);
  CHECK(model.parameter_count() == testing::reference_json("tiny-opt").at("parameters").get<std::size_t>());
}

TEST_CASE("a stage given the wrong kind of input says so") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  model::StageState state;
  const model::StageInput ids = std::vector<TokenId>{2, 5};
  const model::StageInput hidden = model::Matrix::Zero(2, 64);
  const model::StageInput too_wide = model::Matrix::Zero(2, 65);
  CHECK_THROWS_WITH_AS(model.stages()[0].run(hidden, state), "stage embedding expects token ids, got activations",
                       Error);
  CHECK_THROWS_WITH_AS(model.stages()[1].run(ids, state), "stage layer.0 expects activations, got token ids", Error);
  CHECK_THROWS_WITH_AS(model.stages()[3].run(too_wide, state), "stage head expects activations of width 64, got 65",
                       Error);
}

TEST_CASE("token ids and positions outside the model are errors, not reads out of bounds") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  auto session = model.new_session();
  const TokenId bad[] = {2, 8264};
  CHECK_THROWS_WITH_AS(model.forward(bad, session), "token id 8264 at index 1 is outside the vocabulary [0, 8264)",
                       Error);
  const TokenId negative[] = {-1};
  CHECK_THROWS_WITH_AS(model.forward(negative, session), "token id -1 at index 0 is outside the vocabulary [0, 8264)",
                       Error);
  std::vector<TokenId> too_long(129, 2);
  CHECK_THROWS_WITH_AS(model.forward(too_long, session),
                       "positions 0..128 exceed the model's max_position_embeddings (128)", Error);
  CHECK(session.length() == 0);
}

TEST_CASE("an OPT-350m-shaped model runs prefill and decode") {
  const auto config = model::opt_350m_config();
  const auto model = model::random_opt_model(config, 350);
  CHECK(model.stages().size() == 26);
  // 331M parameters: 24 layers of 12.6M, 25.7M tied embedding, 2.1M positions, 1M projections.
  CHECK(model.parameter_count() == 331196416);

  const std::vector<TokenId> prompt = {2, 100, 7, 5000, 50271, 9, 31, 2};
  auto session = model.new_session();
  const auto prefill = model.forward(prompt, session, model::Logits::all);
  REQUIRE(prefill.rows() == 8);
  REQUIRE(prefill.cols() == 50272);
  CHECK(prefill.allFinite());

  // Decoding the same tokens one at a time gives the same logits.
  auto incremental = model.new_session();
  for (std::size_t t = 0; t < prompt.size(); ++t) {
    const TokenId id[] = {prompt[t]};
    const auto row = model.forward(id, incremental);
    CHECK((row - prefill.row(static_cast<Eigen::Index>(t))).cwiseAbs().maxCoeff() < 1e-4f);
  }
  CHECK(incremental.length() == 8);
}
