#include <doctest/doctest.h>

#include "dilemma/model/config.hpp"
#include "test_support.hpp"

using namespace dilemma;
using nlohmann::json;

TEST_CASE("config.json fields are read, absent fields take OPTConfig's defaults") {
  const auto tiny = model::OptConfig::load(testing::model_dir("tiny-opt") / "config.json");
  CHECK(tiny.hidden_size == 192);
  CHECK(tiny.num_hidden_layers == 8);
  CHECK(tiny.word_embed_proj_dim == 96);
  CHECK_FALSE(tiny.do_layer_norm_before);
  CHECK(tiny.has_projection());
  CHECK_FALSE(tiny.has_final_layer_norm());
  CHECK(tiny.num_stages() == 10);

  const auto defaults = model::OptConfig::from_json(json{{"model_type", "opt"}});
  CHECK(defaults.vocab_size == 50272);
  CHECK(defaults.hidden_size == 768);
  CHECK(defaults.num_hidden_layers == 12);
  CHECK(defaults.ffn_dim == 3072);
  CHECK(defaults.num_attention_heads == 12);
  CHECK(defaults.max_position_embeddings == 2048);
  CHECK(defaults.word_embed_proj_dim == 768);  // follows hidden_size
  CHECK(defaults.do_layer_norm_before);
  CHECK(defaults.enable_bias);
  CHECK(defaults.layer_norm_elementwise_affine);
  CHECK(defaults.tie_word_embeddings);
  CHECK(defaults.activation_function == model::Activation::relu);
  CHECK(defaults.bos_token_id == 2);
  CHECK(defaults.eos_token_id == 2);
  CHECK(defaults.pad_token_id == 1);

  // word_embed_proj_dim follows an explicit hidden_size too.
  CHECK(model::OptConfig::from_json(json{{"hidden_size", 64}, {"num_attention_heads", 4}}).word_embed_proj_dim == 64);
}

TEST_CASE("to_json round-trips") {
  const auto config = model::opt_350m_config();
  const auto again = model::OptConfig::from_json(config.to_json());
  CHECK(again.to_json() == config.to_json());
}

TEST_CASE("a config that cannot describe a model is rejected with the field's name") {
  auto error = [](json j) {
    try {
      model::OptConfig::from_json(j, "cfg.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error({{"hidden_size", 100}, {"num_attention_heads", 12}}) ==
        "cfg.json: hidden_size (100) must be divisible by num_attention_heads (12)");
  CHECK(error({{"num_hidden_layers", 0}}) == "cfg.json: field \"num_hidden_layers\" must be in [1, 4096], got 0");
  CHECK(error({{"vocab_size", -5}}) == "cfg.json: field \"vocab_size\" must be in [1, 16777216], got -5");
  CHECK(error({{"hidden_size", "1024"}}) == "cfg.json: field \"hidden_size\" must be an integer, got \"1024\"");
  CHECK(error({{"do_layer_norm_before", 1}}) == "cfg.json: field \"do_layer_norm_before\" must be a boolean, got 1");
  CHECK(error({{"activation_function", "tanh"}}) ==
        "cfg.json: activation_function \"tanh\" is not supported (expected relu, gelu, gelu_new or silu)");
  CHECK(error({{"model_type", "llama"}}) == "cfg.json: model_type is \"llama\", but dilemma runs OPT models (\"opt\")");
  CHECK(error({{"eos_token_id", 60000}}) ==
        "cfg.json: field \"eos_token_id\" (60000) is outside the vocabulary [0, 50272)");
  CHECK(error(json::array()) == "cfg.json: expected a JSON object, got array");
}

TEST_CASE("config files that are missing or not JSON are named in the error") {
  testing::ScratchDir dir;
  testing::write_file(dir / "config.json", "{\"hidden_size\": 64,");
  CHECK_THROWS_WITH_AS(model::OptConfig::load(dir / "config.json"),
                       doctest::Contains(((dir / "config.json").string() + ": invalid JSON: ").c_str()), Error);
  CHECK_THROWS_WITH_AS(model::OptConfig::load(dir / "missing.json"),
                       ((dir / "missing.json").string() + ": cannot open the model's config file").c_str(), Error);
}
