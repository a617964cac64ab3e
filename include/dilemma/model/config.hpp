#pragma once
// OPT's model configuration, read from a Hugging Face config.json with the same
// defaults as transformers' OPTConfig for every absent field, and validated so
// that a wrong or lying config fails here, with the field's name, rather than
// as a shape mismatch deep inside a matrix product.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/io/json_file.hpp"

namespace dilemma::model {

enum class Activation { relu, gelu, gelu_tanh, silu };

struct OptConfig {
  // Field names and defaults follow transformers.OPTConfig.
  std::int64_t vocab_size = 50272;
  std::int64_t hidden_size = 768;
  std::int64_t num_hidden_layers = 12;
  std::int64_t ffn_dim = 3072;
  std::int64_t max_position_embeddings = 2048;
  bool do_layer_norm_before = true;
  bool remove_final_layer_norm = false;  // "_remove_final_layer_norm"
  std::int64_t word_embed_proj_dim = 768;  // defaults to hidden_size
  double dropout = 0.1;
  double attention_dropout = 0.0;
  double activation_dropout = 0.0;
  double layerdrop = 0.0;
  double init_std = 0.02;
  std::int64_t num_attention_heads = 12;
  Activation activation_function = Activation::relu;
  bool enable_bias = true;
  bool layer_norm_elementwise_affine = true;
  bool tie_word_embeddings = true;
  bool use_cache = true;
  std::int64_t pad_token_id = 1;
  std::int64_t bos_token_id = 2;
  std::int64_t eos_token_id = 2;
  std::string torch_dtype = "float32";

  // OPT's learned positions start at row 2 of embed_positions (a fairseq legacy).
  static constexpr std::int64_t position_offset = 2;
  // torch.nn.LayerNorm's default; OPTConfig has no field for it.
  static constexpr float layer_norm_eps = 1e-5f;

  std::int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // OPT-350m embeds into a smaller space and projects in and out of the decoder.
  bool has_projection() const { return word_embed_proj_dim != hidden_size; }
  bool has_final_layer_norm() const { return do_layer_norm_before && !remove_final_layer_norm; }
  // Stages: embedding, one per decoder layer, head.
  std::int64_t num_stages() const { return num_hidden_layers + 2; }

  // `source` names the file in error messages.
  static OptConfig from_json(const nlohmann::json& json, const std::string& source = "config.json");
  static OptConfig load(const std::filesystem::path& config_json);
  nlohmann::json to_json() const;
  // Throws dilemma::Error if the numbers cannot describe a working model.
  void validate(const std::string& source = "config") const;
};

// The shape of facebook/opt-350m, the DILEMMA paper's model.
inline OptConfig opt_350m_config() {
  OptConfig config;
  config.vocab_size = 50272;
  config.hidden_size = 1024;
  config.num_hidden_layers = 24;
  config.ffn_dim = 4096;
  config.num_attention_heads = 16;
  config.word_embed_proj_dim = 512;
  config.do_layer_norm_before = false;
  config.max_position_embeddings = 2048;
  config.dropout = 0.1;
  config.torch_dtype = "float16";
  return config;
}

namespace detail {

inline std::string activation_name(Activation activation) {
  switch (activation) {
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_new";
    case Activation::silu: return "silu";
  }
  return "relu";
}

inline Activation parse_activation(const std::string& name, const std::string& source) {
  if (name == "relu") return Activation::relu;
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::gelu_tanh;
  if (name == "silu" || name == "swish") return Activation::silu;
  dilemma::detail::fail("{}: activation_function \"{}\" is not supported (expected relu, gelu, gelu_new or silu)", source, name);
}

template <typename T>
void read_field(const nlohmann::json& json, const char* field, T& value, const std::string& source) {
  auto it = json.find(field);
  if (it == json.end() || it->is_null()) return;
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) dilemma::detail::fail("{}: field \"{}\" must be a boolean, got {}", source, field, it->dump());
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) dilemma::detail::fail("{}: field \"{}\" must be an integer, got {}", source, field, it->dump());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!it->is_number()) dilemma::detail::fail("{}: field \"{}\" must be a number, got {}", source, field, it->dump());
  } else {
    if (!it->is_string()) dilemma::detail::fail("{}: field \"{}\" must be a string, got {}", source, field, it->dump());
  }
  value = it->get<T>();
}

}  // namespace detail

inline OptConfig OptConfig::from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) dilemma::detail::fail("{}: expected a JSON object, got {}", source, json.type_name());
  if (auto type = json.find("model_type"); type != json.end() && *type != "opt") {
    dilemma::detail::fail("{}: model_type is {}, but dilemma runs OPT models (\"opt\")", source, type->dump());
  }
  OptConfig c;
  using detail::read_field;
  read_field(json, "vocab_size", c.vocab_size, source);
  read_field(json, "hidden_size", c.hidden_size, source);
  c.word_embed_proj_dim = c.hidden_size;
  read_field(json, "num_hidden_layers", c.num_hidden_layers, source);
  read_field(json, "ffn_dim", c.ffn_dim, source);
  read_field(json, "max_position_embeddings", c.max_position_embeddings, source);
  read_field(json, "do_layer_norm_before", c.do_layer_norm_before, source);
  read_field(json, "_remove_final_layer_norm", c.remove_final_layer_norm, source);
  read_field(json, "word_embed_proj_dim", c.word_embed_proj_dim, source);
  read_field(json, "dropout", c.dropout, source);
  read_field(json, "attention_dropout", c.attention_dropout, source);
  read_field(json, "activation_dropout", c.activation_dropout, source);
  read_field(json, "layerdrop", c.layerdrop, source);
  read_field(json, "init_std", c.init_std, source);
  read_field(json, "num_attention_heads", c.num_attention_heads, source);
  read_field(json, "enable_bias", c.enable_bias, source);
  read_field(json, "layer_norm_elementwise_affine", c.layer_norm_elementwise_affine, source);
  read_field(json, "tie_word_embeddings", c.tie_word_embeddings, source);
  read_field(json, "use_cache", c.use_cache, source);
  read_field(json, "pad_token_id", c.pad_token_id, source);
  read_field(json, "bos_token_id", c.bos_token_id, source);
  read_field(json, "eos_token_id", c.eos_token_id, source);
  read_field(json, "torch_dtype", c.torch_dtype, source);
  std::string activation = "relu";
  read_field(json, "activation_function", activation, source);
  c.activation_function = detail::parse_activation(activation, source);
  c.validate(source);
  return c;
}

inline OptConfig OptConfig::load(const std::filesystem::path& config_json) {
  const nlohmann::json json = io::read_json_file(config_json, "the model's config file");
  return from_json(json, config_json.string());
}

inline nlohmann::json OptConfig::to_json() const {
  return {
      {"model_type", "opt"},
      {"architectures", {"OPTForCausalLM"}},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"num_hidden_layers", num_hidden_layers},
      {"ffn_dim", ffn_dim},
      {"max_position_embeddings", max_position_embeddings},
      {"do_layer_norm_before", do_layer_norm_before},
      {"_remove_final_layer_norm", remove_final_layer_norm},
      {"word_embed_proj_dim", word_embed_proj_dim},
      {"dropout", dropout},
      {"attention_dropout", attention_dropout},
      {"activation_dropout", activation_dropout},
      {"layerdrop", layerdrop},
      {"init_std", init_std},
      {"num_attention_heads", num_attention_heads},
      {"activation_function", detail::activation_name(activation_function)},
      {"enable_bias", enable_bias},
      {"layer_norm_elementwise_affine", layer_norm_elementwise_affine},
      {"tie_word_embeddings", tie_word_embeddings},
      {"use_cache", use_cache},
      {"pad_token_id", pad_token_id},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"torch_dtype", torch_dtype},
  };
}

inline void OptConfig::validate(const std::string& source) const {
  // Generous upper bounds catch lying configs before they turn into huge
  // allocations; real OPT models (up to 175B) are far below them.
  constexpr std::int64_t max_dim = 1 << 20;
  auto positive = [&](const char* field, std::int64_t value, std::int64_t limit) {
    if (value <= 0 || value > limit) {
      dilemma::detail::fail("{}: field \"{}\" must be in [1, {}], got {}", source, field, limit, value);
    }
  };
  positive("vocab_size", vocab_size, std::int64_t{1} << 24);
  positive("hidden_size", hidden_size, max_dim);
  positive("num_hidden_layers", num_hidden_layers, 4096);
  positive("ffn_dim", ffn_dim, max_dim);
  positive("max_position_embeddings", max_position_embeddings, max_dim);
  positive("word_embed_proj_dim", word_embed_proj_dim, max_dim);
  positive("num_attention_heads", num_attention_heads, 4096);
  if (hidden_size % num_attention_heads != 0) {
    dilemma::detail::fail("{}: hidden_size ({}) must be divisible by num_attention_heads ({})", source, hidden_size,
                 num_attention_heads);
  }
  for (auto [field, id] : {std::pair{"bos_token_id", bos_token_id}, {"eos_token_id", eos_token_id}}) {
    if (id < 0 || id >= vocab_size) {
      dilemma::detail::fail("{}: field \"{}\" ({}) is outside the vocabulary [0, {})", source, field, id, vocab_size);
    }
  }
}

}  // namespace dilemma::model
