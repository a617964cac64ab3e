// The model with quantized stages: its logits against the float reference,
// stage by stage against the whole model, the observer that calibration uses,
// thread-count independence, and the stage API (matrices, formats, bytes).

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>

#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/random_model.hpp"
#include "dilemma/parallel/thread_pool.hpp"
#include "reference_data.hpp"

using namespace dilemma;
using quant::Format;

namespace {

// tiny-opt's widths are 96 (embedding, project_in, lm_head), 192 and 768:
// group sizes 32 and 96 divide them all.
constexpr quant::QuantScheme g32{.group_size = 32};
constexpr quant::QuantScheme g96{.group_size = 96};

model::OptModel quantized_tiny_opt(Format format, const quant::QuantScheme& scheme) {
  auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  model.quantize(quant::FormatAssignment::uniform(format, scheme));
  return model;
}

// Largest |logit − reference| over every position of every reference prompt.
float worst_logit_error(const model::OptModel& model, const std::vector<testing::ReferencePrompt>& prompts) {
  float worst = 0;
  for (const auto& prompt : prompts) {
    auto session = model.new_session();
    const auto logits = model.forward(prompt.ids, session, model::Logits::all);
    const Eigen::Map<const model::Matrix> reference(prompt.logits.data.data(), logits.rows(), logits.cols());
    worst = std::max(worst, (logits - reference).cwiseAbs().maxCoeff());
  }
  return worst;
}

}  // namespace

TEST_CASE("quantized tiny-opt stays close to the float reference: f16 closest, then int8, then int4") {
  const auto prompts = testing::reference_prompts("tiny-opt");
  const float f16 = worst_logit_error(quantized_tiny_opt(Format::f16, g32), prompts);
  const float int8 = worst_logit_error(quantized_tiny_opt(Format::int8, g32), prompts);
  const float int4_small_groups = worst_logit_error(quantized_tiny_opt(Format::int4, g32), prompts);
  const float int4_large_groups = worst_logit_error(quantized_tiny_opt(Format::int4, g96), prompts);
  MESSAGE("tiny-opt max |Δlogit| (logits up to ~18): f16 ", f16, ", int8 ", int8, ", int4 G=32 ", int4_small_groups,
          ", int4 G=96 ", int4_large_groups);
  // tiny-opt's weights are stored in F16: f16 loses nothing but summation order.
  CHECK(f16 <= 1e-3f);
  CHECK(int8 <= 0.4f);
  CHECK(int8 < int4_small_groups);
  CHECK(std::isfinite(int4_small_groups));
  CHECK(std::isfinite(int4_large_groups));
  CHECK(int4_small_groups < int4_large_groups);
}

TEST_CASE("on f32 weights, f16 rounding costs less than int8") {
  const auto prompts = testing::reference_prompts("tiny-opt-preln");
  auto quantized = [](Format format) {
    auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
    model.quantize(quant::FormatAssignment::uniform(format, g32));
    return model;
  };
  const float f16 = worst_logit_error(quantized(Format::f16), prompts);
  const float int8 = worst_logit_error(quantized(Format::int8), prompts);
  MESSAGE("tiny-opt-preln max |Δlogit| (logits up to ~0.8): f16 ", f16, ", int8 ", int8);
  CHECK(f16 > 0.0f);
  CHECK(f16 < int8);
  CHECK(int8 <= 0.02f);
}

TEST_CASE("int8 keeps the greedy continuations of the trained model") {
  const auto model = quantized_tiny_opt(Format::int8, g32);
  std::size_t same = 0, total = 0;
  for (const auto& prompt : testing::reference_prompts("tiny-opt")) {
    auto session = model.new_session();
    auto logits = model.forward(prompt.ids, session);
    for (const TokenId expected : prompt.greedy_new_ids) {
      Eigen::Index next = 0;
      logits.row(0).maxCoeff(&next);
      same += static_cast<TokenId>(next) == expected;
      ++total;
      // Teacher forcing: continue with the reference token so that one
      // disagreement does not change every later position.
      const TokenId step[] = {expected};
      logits = model.forward(step, session);
    }
  }
  MESSAGE("int8 top-1 agreement with the f32 greedy tokens: ", same, "/", total);
  CHECK(static_cast<double>(same) >= 0.95 * static_cast<double>(total));
}

TEST_CASE("with mixed formats, running the stages one by one equals the whole model") {
  auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  const std::vector<Format> formats = {Format::int8, Format::int4, Format::f16, Format::f32, Format::int8,
                                       Format::int4, Format::int4, Format::int8, Format::f16, Format::int4};
  model.quantize(formats, g32);
  for (std::size_t i = 0; i < formats.size(); ++i) CHECK(model.stages()[i].format() == formats[i]);
  const auto prompt = testing::reference_prompts("tiny-opt").at(2);
  auto whole = model.new_session();
  const auto expected = model.forward(prompt.ids, whole, model::Logits::all);

  std::vector<model::StageState> states(model.stages().size());
  model::StageInput message = prompt.ids;
  for (const auto& stage : model.stages()) message = stage.run(message, states[stage.index()]);
  CHECK((std::get<model::Matrix>(message) - expected).cwiseAbs().maxCoeff() == 0.0f);

  // Decode through the KV cache gives the prefill's rows.
  auto incremental = model.new_session();
  for (std::size_t t = 0; t < prompt.ids.size(); ++t) {
    const TokenId id[] = {prompt.ids[t]};
    const auto row = model.forward(id, incremental);
    CHECK((row - expected.row(static_cast<Eigen::Index>(t))).cwiseAbs().maxCoeff() <= 1e-3f);
  }
}

TEST_CASE("logits are bit-identical on 1 and 2 threads, prefill and decode") {
  auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  model.quantize(std::vector<Format>{Format::int4, Format::int8, Format::int4, Format::f16, Format::f32, Format::int8,
                                     Format::int4, Format::int8, Format::int4, Format::int8},
                 g32);
  parallel::ThreadPool pool(2);
  model::RunContext two_threads;
  two_threads.kernels.pool = &pool;
  const auto prompt = testing::reference_prompts("tiny-opt").at(1);
  auto one = model.new_session();
  auto two = model.new_session();
  CHECK((model.forward(prompt.ids, one, model::Logits::all) -
         model.forward(prompt.ids, two, model::Logits::all, two_threads))
            .cwiseAbs()
            .maxCoeff() == 0.0f);
  for (const TokenId id : {TokenId{100}, TokenId{7}, TokenId{2}}) {
    const TokenId step[] = {id};
    CHECK((model.forward(step, one) - model.forward(step, two, model::Logits::last, two_threads)).cwiseAbs().maxCoeff() ==
          0.0f);
  }
}

TEST_CASE("the observer sees every matrix product of a stage with its input, before the product") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  const auto& config = model.config();
  std::map<std::string, std::vector<std::pair<Eigen::Index, Eigen::Index>>> seen;  // per stage: name → shapes
  std::string current_stage;
  std::vector<std::string> order;
  model::RunContext context;
  context.observer = [&](std::string_view matrix, const model::Matrix& input) {
    const std::string key = current_stage + "." + std::string(matrix);
    seen[key].emplace_back(input.rows(), input.cols());
    order.push_back(std::string(matrix));
  };
  const std::vector<TokenId> ids = {2, 100, 7, 42, 9};
  model::StageInput message = ids;
  std::vector<model::StageState> states(model.stages().size());
  for (const auto& stage : model.stages()) {
    current_stage = stage.name();
    order.clear();
    message = stage.run(message, states[stage.index()], context);
    // Every matrix but the looked-up embedding table, in the stage's order.
    std::vector<std::string> expected;
    for (const auto& [name, weight] : stage.matrices()) {
      if (name != "embed_tokens") expected.push_back(name);
    }
    CHECK(order == expected);
    for (const auto& [name, weight] : stage.matrices()) {
      if (name == "embed_tokens") continue;
      const auto& shapes = seen.at(stage.name() + "." + name);
      REQUIRE(shapes.size() == 1);
      CHECK(shapes.front().first == 5);
      CHECK(shapes.front().second == weight->cols());
    }
  }
  CHECK(seen.size() == static_cast<std::size_t>(1 + 6 * config.num_hidden_layers + 2));
  CHECK(seen.contains("embedding.project_in"));
  CHECK(seen.contains("layer.7.fc2"));
  CHECK(seen.contains("head.project_out"));
  CHECK(seen.contains("head.lm_head"));
  CHECK_FALSE(seen.contains("embedding.embed_tokens"));

  // fc2's input is fc1's output after the activation: ReLU leaves no negatives.
  std::vector<float> fc2_minimum;
  context.observer = [&](std::string_view matrix, const model::Matrix& input) {
    if (matrix == "fc2") fc2_minimum.push_back(input.minCoeff());
  };
  auto session = model.new_session();
  model.forward(ids, session, model::Logits::last, context);
  REQUIRE(fc2_minimum.size() == 8);
  for (const float minimum : fc2_minimum) CHECK(minimum >= 0.0f);
}

TEST_CASE("a stage lists its matrices by name and reports its format and stored bytes") {
  auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  const auto& stages = std::as_const(model).stages();
  auto names = [](const model::Stage& stage) {
    std::vector<std::string> all;
    for (const auto& m : stage.matrices()) all.push_back(m.name);
    return all;
  };
  CHECK(names(stages[0]) == std::vector<std::string>{"embed_tokens", "project_in"});
  CHECK(names(stages[1]) == std::vector<std::string>{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                     "self_attn.out_proj", "fc1", "fc2"});
  CHECK(names(stages[9]) == std::vector<std::string>{"project_out", "lm_head"});
  const auto preln = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  CHECK(names(preln.stages()[0]) == std::vector<std::string>{"embed_tokens"});
  CHECK(names(preln.stages()[3]) == std::vector<std::string>{"lm_head"});

  // f32: every parameter takes 4 bytes.
  for (const auto& stage : stages) {
    CHECK(stage.format() == Format::f32);
    CHECK(stage.weight_bytes() == 4 * stage.parameter_count());
  }
  const std::size_t f32_bytes = model.weight_bytes();
  CHECK(f32_bytes == 4 * model.parameter_count());

  // int4 with G = 32: 4 bits per weight plus a float per 32 weights; the
  // biases, LayerNorms and positions stay f32.
  model.stages()[1].quantize(Format::int4, g32);
  const auto& layer = stages[1];
  CHECK(layer.format() == Format::int4);
  const std::size_t weights = 4 * 192 * 192 + 2 * 192 * 768;
  const std::size_t others = layer.parameter_count() - weights;
  CHECK(layer.weight_bytes() == weights / 2 + weights / 32 * 4 + others * 4);
  CHECK(model.weight_bytes() == f32_bytes - 4 * weights + layer.weight_bytes() - others * 4);

  // One matrix in another format makes the stage mixed.
  auto matrices = model.stages()[2].matrices();
  *matrices[4].weight = quant::QuantizedMatrix::quantize(matrices[4].weight->dequantize(), Format::int8, g32);
  CHECK(stages[2].format() == std::nullopt);
}

TEST_CASE("tied embedding and head share their f32 table until one of them changes") {
  auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  auto& embedding = std::get<model::Embedding>(model.stages().front().weights());
  auto& head = std::get<model::Head>(model.stages().back().weights());
  REQUIRE(embedding.embed_tokens == head.lm_head);
  const std::size_t shared_bytes = model.weight_bytes();
  CHECK(shared_bytes == 4 * model.parameter_count());

  // Reading through the const view keeps them shared.
  CHECK(std::as_const(model.stages().back()).matrices().back().weight == embedding.embed_tokens.get());
  CHECK(embedding.embed_tokens == head.lm_head);

  // Writing through the head's view gives the head its own copy.
  auto writable = model.stages().back().matrices();
  CHECK(embedding.embed_tokens != head.lm_head);
  CHECK(writable.back().weight == head.lm_head.get());
  CHECK(model.weight_bytes() == shared_bytes + head.lm_head->bytes());

  // Quantizing the embedding leaves the head's table in f32, and the other way round.
  auto again = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  again.stages().front().quantize(Format::int8, g32);
  CHECK(again.stages().front().format() == Format::int8);
  CHECK(again.stages().back().format() == Format::f32);
}

TEST_CASE("a quantized embedding table dequantizes exactly the rows it looks up") {
  auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  const auto f32_table = std::get<model::Embedding>(model.stages().front().weights()).embed_tokens->dequantize();
  model.stages().front().quantize(Format::int4, g32);
  const auto& embedding = std::get<model::Embedding>(model.stages().front().weights());
  const auto table = embedding.embed_tokens->dequantize();
  const std::vector<TokenId> ids = {2, 8263, 0, 2};
  const auto hidden = embedding(ids, 3);
  for (std::size_t t = 0; t < ids.size(); ++t) {
    const auto row = static_cast<Eigen::Index>(t);
    const model::RowVector expected = table.row(ids[t]) + embedding.embed_positions.row(3 + row + 2);
    CHECK((hidden.row(row) - expected).cwiseAbs().maxCoeff() == 0.0f);
    CHECK((table.row(ids[t]) - f32_table.row(ids[t])).cwiseAbs().maxCoeff() > 0.0f);
  }
}

TEST_CASE("quantizing refuses what cannot work, before changing anything") {
  SUBCASE("a group size that does not divide a matrix's width names the matrix and the sizes that fit") {
    auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
    CHECK_THROWS_WITH_AS(model.quantize(quant::FormatAssignment::uniform(Format::int8)),
                         "group size 64 does not divide the 96 columns of embedding.embed_tokens [8264 × 96] "
                         "(group sizes that fit every matrix given an integer format: 32, 96)",
                         Error);
    for (const auto& stage : std::as_const(model).stages()) CHECK(stage.format() == Format::f32);
    // Layers alone are 192 and 768 wide: 64 fits them.
    const auto layers_only = quant::FormatAssignment::parse("f32,int4,int4,int4,int4,int4,int4,int4,int4,f32");
    model.quantize(layers_only);
    CHECK(model.stages()[1].format() == Format::int4);
  }
  SUBCASE("the wrong number of formats") {
    auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
    const std::vector<Format> three = {Format::f32, Format::int8, Format::f32};
    CHECK_THROWS_WITH_AS(model.quantize(three, g32),
                         "quantize(): 3 formats given, expected N = 2 + layers = 4 (embedding, layer.0 … layer.1, "
                         "head)",
                         Error);
  }
  SUBCASE("re-quantizing a quantized stage") {
    auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
    model.quantize(std::vector<Format>{Format::f32, Format::int8, Format::f32, Format::f32}, g32);
    // The same format and scheme again is a no-op.
    model.quantize(std::vector<Format>{Format::f32, Format::int8, Format::f32, Format::f32}, g32);
    CHECK_THROWS_WITH_AS(model.quantize(std::vector<Format>{Format::int4, Format::int4, Format::f32, Format::f32}, g32),
                         "stage layer.0 is int8, not f32: cannot quantize it to int4 (quantize from f32 weights; "
                         "re-quantizing quantized weights compounds their rounding error)",
                         Error);
    CHECK(model.stages()[0].format() == Format::f32);  // checked before anything changed
    CHECK_THROWS_WITH_AS(model.stages()[1].quantize(Format::int8, {.group_size = 64}),
                         "stage layer.0 is int8, not f32: cannot quantize it to int8 with group size 64 (quantize "
                         "from f32 weights; re-quantizing quantized weights compounds their rounding error)",
                         Error);
  }
  SUBCASE("a group size that is not a multiple of 32") {
    auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
    CHECK_THROWS_WITH_AS(model.quantize(std::vector<Format>(4, Format::int4), {.group_size = 48}),
                         "quantize(): group size 48 is not a positive multiple of 32", Error);
  }
}

TEST_CASE("OPT-350m's shapes run quantized to int4 with the default group size") {
  // Its widths (512, 1024, 4096) with 2 of its 24 layers and a smaller vocabulary, to stay quick.
  auto config = model::opt_350m_config();
  config.num_hidden_layers = 2;
  config.vocab_size = 8192;
  auto model = model::random_opt_model(config, 350);
  model.quantize(quant::FormatAssignment::uniform(Format::int4));
  // 4.5 bits per weight (a float scale per 64) in every matrix, the tied
  // table now once per stage; positions, biases and LayerNorms in f32.
  const std::size_t h = 1024, f = 4096, p = 512, vocab = 8192, positions = 2050, layers = 2;
  const std::size_t matrix_weights = 2 * vocab * p + 2 * h * p + layers * (4 * h * h + 2 * h * f);
  const std::size_t others = positions * h + layers * (4 * h + f + h + 4 * h);
  CHECK(model.weight_bytes() == matrix_weights / 2 + matrix_weights / 64 * 4 + 4 * others);
  const std::vector<TokenId> prompt = {2, 100, 7, 5000};
  auto session = model.new_session();
  const auto logits = model.forward(prompt, session, model::Logits::all);
  CHECK(logits.rows() == 4);
  CHECK(logits.allFinite());
}
