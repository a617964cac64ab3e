#include <doctest/doctest.h>

#include "cost_test_support.hpp"
#include "dilemma/cost/stage_work.hpp"
#include "dilemma/model/random_model.hpp"
#include "test_support.hpp"

using namespace dilemma;
using quant::Format;

TEST_CASE("float32 stage sizes are the stages' parameter counts × 4, for tiny-opt and a pre-LN model") {
  const auto tiny = model::OptConfig::load(testing::model_dir("tiny-opt") / "config.json");
  for (const model::OptConfig& config : {tiny, testing::hand_config()}) {
    const model::OptModel model = model::random_opt_model(config, 7);
    for (const auto& stage : model.stages()) {
      CAPTURE(stage.name());
      const cost::StageShape shape = cost::stage_shape(config, stage.index());
      CHECK(shape.name == stage.name());
      CHECK(shape.kind == stage.kind());
      CHECK(cost::weight_bytes(shape, Format::f32, {}) == 4.0 * static_cast<double>(stage.parameter_count()));
    }
  }
}

TEST_CASE("a stage's bytes in every format are what the runtime's quantized stage stores") {
  const auto tiny = model::OptConfig::load(testing::model_dir("tiny-opt") / "config.json");
  const model::OptModel model = model::random_opt_model(tiny, 3);
  const quant::QuantScheme groups_of_32{32, false};  // divides tiny-opt's 96-wide tables
  for (const auto& stage : model.stages()) {
    for (Format format : quant::all_formats) {
      CAPTURE(stage.name());
      CAPTURE(quant::format_name(format));
      model::Stage quantized = stage;
      quantized.quantize(format, groups_of_32);
      CHECK(cost::weight_bytes(cost::stage_shape(tiny, stage.index()), format, groups_of_32) ==
            static_cast<double>(quantized.weight_bytes()));
    }
  }
}

TEST_CASE("integer formats pack values per row and pay one float32 scale per group") {
  const quant::QuantScheme scheme;  // groups of 64, symmetric int4
  CHECK(cost::matrix_bytes({3, 128}, Format::int8, scheme) == 3 * (128 + 2 * 4));
  CHECK(cost::matrix_bytes({3, 128}, Format::int4, scheme) == 3 * (64 + 2 * 4));
  CHECK(cost::matrix_bytes({3, 128}, Format::int4, {64, true}) == 3 * (64 + 2 * 8));
  CHECK(cost::matrix_bytes({3, 128}, Format::f16, scheme) == 3 * 128 * 2);
  CHECK(cost::matrix_bytes({5, 256}, Format::int8, scheme) * 8 ==
        5 * 256 * quant::bits_per_weight(Format::int8, scheme));
  CHECK(cost::matrix_bytes({5, 256}, Format::int4, scheme) * 8 ==
        5 * 256 * quant::bits_per_weight(Format::int4, scheme));
  CHECK_THROWS_WITH_AS(cost::matrix_bytes({3, 96}, Format::int8, scheme),
                       "a group size of 64 does not divide the 96 columns of a [3 × 96] matrix", Error);

  // The hand model's decoder layer: q, k, v, out [32×32], fc1 [64×32],
  // fc2 [32×64] and 352 float32 vector values (biases 5·32 + 64, two
  // LayerNorms 2·64), in groups of 32.
  const cost::StageShape layer = cost::stage_shape(testing::hand_config(), 1);
  const quant::QuantScheme groups_of_32{32, false};
  CHECK(layer.vector_values == 352);
  CHECK(cost::weight_bytes(layer, Format::f32, groups_of_32) == 34176);
  CHECK(cost::weight_bytes(layer, Format::int8, groups_of_32) == 4 * 1152 + 2304 + 2304 + 1408);
  CHECK(cost::weight_bytes(layer, Format::int4, groups_of_32) == 4 * 640 + 1280 + 1280 + 1408);
}

TEST_CASE("integer formats store a stage only if the group size divides all its matrices") {
  const auto tiny = model::OptConfig::load(testing::model_dir("tiny-opt") / "config.json");
  const cost::StageShape embedding = cost::stage_shape(tiny, 0), layer = cost::stage_shape(tiny, 1);
  CHECK_FALSE(cost::can_store(embedding, Format::int8, {}));  // 96 columns, groups of 64
  CHECK(cost::can_store(embedding, Format::int8, {32, false}));
  CHECK(cost::can_store(embedding, Format::f16, {}));
  CHECK(cost::can_store(layer, Format::int4, {}));                 // 192 and 768 columns
  CHECK_FALSE(cost::can_store(layer, Format::int4, {48, false}));  // not a multiple of the 32-column int4 block
}

TEST_CASE("work of one stage call: FLOPs and bytes as the runtime executes it") {
  const model::OptConfig config = testing::hand_config();
  // Decoder prefill of 4 tokens: projections 2·4·(4·32² + 2·32·64), attention 4·4·4·32.
  cost::Work work = cost::stage_work(config, 1, Format::f32, {}, 4, 0);
  CHECK(work.flops == 67584);
  CHECK(work.bytes == 34176 + 1024 + 1024);  // weights, keys and values of 4 tokens, activations in and out
  // One decode step after 4 cached tokens attends to 5.
  work = cost::stage_work(config, 1, Format::f32, {}, 1, 4);
  CHECK(work.flops == 16384 + 640);
  CHECK(work.bytes == 34176 + 1280 + 256);
  // The embedding reads one row of each table per token (positions stay f32).
  work = cost::stage_work(config, 0, Format::f32, {}, 3, 0);
  CHECK(work.flops == 0);
  CHECK(work.bytes == 3 * 128 + 3 * 128 + 12 + 3 * 128);
  work = cost::stage_work(config, 0, Format::f16, {}, 3, 0);
  CHECK(work.bytes == 3 * 64 + 3 * 128 + 12 + 3 * 128);
  // The head computes one row of logits whatever the prompt length.
  CHECK(cost::stage_work(config, 2, Format::f32, {}, 4, 0).flops == 2 * 10 * 32);
  CHECK(cost::stage_work(config, 2, Format::f32, {}, 4, 0).bytes ==
        cost::stage_work(config, 2, Format::f32, {}, 1, 4).bytes);
  CHECK(cost::kv_cache_bytes(config, 1, 7) == 1792);
  CHECK(cost::kv_cache_bytes(config, 0, 7) == 0);
  CHECK_THROWS_WITH_AS(cost::stage_name(config, 3), "stage 3 does not exist: the model has 3 stages", Error);
}
