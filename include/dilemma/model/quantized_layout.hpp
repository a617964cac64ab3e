#pragma once
// How a quantized checkpoint lays out the stages it holds: the tensors of each
// stage (named as in Hugging Face OPT checkpoints), the safetensors dtype of
// each format, and the `__metadata__` entry that describes the scheme and each
// stage's format. docs/quantization-scheme.md ("Quantized checkpoints") is the
// specification; model/quantized_checkpoint.hpp writes such files and
// OptCheckpoint reads them.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/io/dtype.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/quant/format.hpp"
#include "dilemma/quant/format_assignment.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::model {

// The `__metadata__` key whose presence makes a checkpoint a quantized one.
inline constexpr std::string_view quantization_metadata_key = "dilemma.quantization";
inline constexpr int quantization_layout_version = 1;

// What the `__metadata__` entry says: the scheme of every integer matrix and,
// for each stage the file holds (by index), its format, or nullopt when its
// matrices differ ("mixed"; each matrix's format is then its tensor's dtype).
struct QuantizationMetadata {
  quant::QuantScheme scheme;
  std::map<std::size_t, std::optional<quant::Format>> stages;

  nlohmann::json to_json(const OptConfig& config) const {
    const auto names = quant::detail::stage_names(static_cast<std::size_t>(config.num_stages()));
    nlohmann::json stage_formats = nlohmann::json::object();
    for (const auto& [index, format] : stages) {
      stage_formats[names.at(index)] = format ? std::string(quant::format_name(*format)) : "mixed";
    }
    return {{"version", quantization_layout_version},
            {"group_size", scheme.group_size},
            {"int4_asymmetric", scheme.int4_asymmetric},
            {"stages", stage_formats}};
  }

  // `file` starts every error message.
  static QuantizationMetadata parse(std::string_view text, const OptConfig& config, const std::string& file) {
    const std::string where = fmt::format("{}: __metadata__ \"{}\"", file, quantization_metadata_key);
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      dilemma::detail::fail("{} is not valid JSON: {}", where, e.what());
    }
    if (!json.is_object()) dilemma::detail::fail("{}: expected a JSON object, got {}", where, json.type_name());
    auto field = [&](const char* name) -> const nlohmann::json& {
      const auto it = json.find(name);
      if (it == json.end()) dilemma::detail::fail("{}: missing field \"{}\"", where, name);
      return *it;
    };
    if (field("version") != quantization_layout_version) {
      dilemma::detail::fail("{}: version {} is not supported (this library reads version {})", where,
                            field("version").dump(), quantization_layout_version);
    }
    QuantizationMetadata metadata;
    if (!field("group_size").is_number_integer()) {
      dilemma::detail::fail("{}: \"group_size\" must be an integer, got {}", where, field("group_size").dump());
    }
    metadata.scheme.group_size = field("group_size").get<std::int64_t>();
    if (!field("int4_asymmetric").is_boolean()) {
      dilemma::detail::fail("{}: \"int4_asymmetric\" must be true or false, got {}", where,
                            field("int4_asymmetric").dump());
    }
    metadata.scheme.int4_asymmetric = field("int4_asymmetric").get<bool>();
    quant::detail::check_scheme(metadata.scheme, where);

    const auto& stages = field("stages");
    if (!stages.is_object() || stages.empty()) {
      dilemma::detail::fail("{}: \"stages\" must be an object naming at least one stage, got {}", where,
                            stages.dump());
    }
    const auto stage_count = static_cast<std::size_t>(config.num_stages());
    const auto names = quant::detail::stage_names(stage_count);
    for (const auto& [name, value] : stages.items()) {
      const auto it = std::ranges::find(names, name);
      if (it == names.end()) {
        dilemma::detail::fail("{}: unknown stage \"{}\" (config.json describes {})", where, name,
                              quant::detail::describe_stages(stage_count));
      }
      const std::string format = value.is_string() ? value.get<std::string>() : value.dump();
      std::optional<quant::Format> parsed;
      if (format != "mixed") {
        parsed = quant::try_parse_format(format);
        if (!parsed) {
          dilemma::detail::fail("{}: stage \"{}\" has unknown format \"{}\" (expected f32, f16, int8, int4 or mixed)",
                                where, name, format);
        }
      }
      metadata.stages.emplace(static_cast<std::size_t>(it - names.begin()), parsed);
    }
    return metadata;
  }
};

namespace detail {

// Every tensor of one stage, for a given decoder prefix ("model.decoder.").
struct StageTensors {
  struct MatrixTensor {
    std::string matrix;  // name within the stage, as Stage::matrices() gives it
    std::string module;  // tensor name without ".weight" / ".scales" / ".offsets"
    std::int64_t rows = 0;
    std::int64_t cols = 0;
  };
  struct FloatTensor {
    std::string name;
    std::vector<std::int64_t> shape;
  };
  std::vector<MatrixTensor> matrices;
  std::vector<FloatTensor> floats;  // LayerNorms, biases, positions: stored F32
};

inline StageTensors stage_tensors(const OptConfig& c, std::size_t stage, const std::string& prefix) {
  const std::int64_t h = c.hidden_size, f = c.ffn_dim, p = c.word_embed_proj_dim;
  const auto layers = static_cast<std::size_t>(c.num_hidden_layers);
  StageTensors tensors;
  auto add_norm = [&](const std::string& name) {
    if (!c.layer_norm_elementwise_affine) return;
    tensors.floats.push_back({name + ".weight", {h}});
    tensors.floats.push_back({name + ".bias", {h}});
  };
  if (stage == 0) {
    tensors.matrices.push_back({"embed_tokens", prefix + "embed_tokens", c.vocab_size, p});
    if (c.has_projection()) tensors.matrices.push_back({"project_in", prefix + "project_in", h, p});
    tensors.floats.push_back(
        {prefix + "embed_positions.weight", {c.max_position_embeddings + OptConfig::position_offset, h}});
  } else if (stage == layers + 1) {
    if (c.has_final_layer_norm()) add_norm(prefix + "final_layer_norm");
    if (c.has_projection()) tensors.matrices.push_back({"project_out", prefix + "project_out", p, h});
    tensors.matrices.push_back({"lm_head", "lm_head", c.vocab_size, p});
  } else {
    const std::string layer = fmt::format("{}layers.{}.", prefix, stage - 1);
    auto add_linear = [&](const std::string& name, std::int64_t out, std::int64_t in) {
      tensors.matrices.push_back({name, layer + name, out, in});
      if (c.enable_bias) tensors.floats.push_back({layer + name + ".bias", {out}});
    };
    for (const char* proj : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"}) {
      add_linear(proj, h, h);
    }
    add_norm(layer + "self_attn_layer_norm");
    add_linear("fc1", f, h);
    add_linear("fc2", h, f);
    add_norm(layer + "final_layer_norm");
  }
  return tensors;
}

// The dtype a format's codes are stored in, and back: int4 is packed two codes
// per byte into U8, int8 codes are I8.
inline io::DType stored_dtype(quant::Format format) {
  switch (format) {
    case quant::Format::f32: return io::DType::f32;
    case quant::Format::f16: return io::DType::f16;
    case quant::Format::int8: return io::DType::i8;
    case quant::Format::int4: return io::DType::u8;
  }
  return io::DType::f32;
}

inline std::optional<quant::Format> format_of_stored_dtype(io::DType dtype) {
  for (quant::Format format : quant::all_formats) {
    if (stored_dtype(format) == dtype) return format;
  }
  return std::nullopt;
}

inline std::vector<std::int64_t> stored_shape(quant::Format format, std::int64_t rows, std::int64_t cols) {
  return {rows, format == quant::Format::int4 ? cols / 2 : cols};
}

}  // namespace detail
}  // namespace dilemma::model
