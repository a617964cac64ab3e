#pragma once
// Saving stages in their formats as a Hugging Face-like model directory
// (config.json + model.safetensors), so that an edge node receives only its
// quantized stages, never the float weights. Integer codes are stored as I8
// (int8) or packed U8 (int4) with float32 scales (and offsets) per group,
// float formats as F32 / F16, and the safetensors `__metadata__` entry
// "dilemma.quantization" records the scheme and each stage's format, so that
// OptCheckpoint::open needs nothing else to load them back bit for bit.
// Layout: model/quantized_layout.hpp and docs/quantization-scheme.md.

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/io/safetensors.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/quantized_layout.hpp"
#include "dilemma/model/stage.hpp"

namespace dilemma::model {

namespace detail {

inline std::span<const std::byte> float_bytes(const float* data, Eigen::Index count) {
  return std::as_bytes(std::span<const float>(data, static_cast<std::size_t>(count)));
}

// The stage's f32 tensors other than its matrices, named as stage_tensors() names them.
inline void add_float_tensors(const Stage& stage, const std::string& prefix, std::vector<io::TensorToWrite>& out) {
  auto add = [&](std::string name, const auto& values, std::vector<std::int64_t> shape) {
    out.push_back({std::move(name), io::DType::f32, std::move(shape), float_bytes(values.data(), values.size())});
  };
  auto add_norm = [&](const std::string& name, const LayerNorm& norm) {
    if (norm.weight.size() != 0) add(name + ".weight", norm.weight, {norm.weight.size()});
    if (norm.bias.size() != 0) add(name + ".bias", norm.bias, {norm.bias.size()});
  };
  auto add_bias = [&](const std::string& name, const Linear& linear) {
    if (linear.bias.size() != 0) add(name + ".bias", linear.bias, {linear.bias.size()});
  };
  switch (stage.kind()) {
    case StageKind::embedding: {
      const auto& embedding = std::get<Embedding>(stage.weights());
      add(prefix + "embed_positions.weight", embedding.embed_positions,
          {embedding.embed_positions.rows(), embedding.embed_positions.cols()});
      return;
    }
    case StageKind::decoder_layer: {
      const auto& layer = std::get<DecoderLayer>(stage.weights());
      const std::string name = fmt::format("{}layers.{}.", prefix, stage.index() - 1);
      add_bias(name + "self_attn.q_proj", layer.self_attn.q_proj);
      add_bias(name + "self_attn.k_proj", layer.self_attn.k_proj);
      add_bias(name + "self_attn.v_proj", layer.self_attn.v_proj);
      add_bias(name + "self_attn.out_proj", layer.self_attn.out_proj);
      add_norm(name + "self_attn_layer_norm", layer.self_attn_layer_norm);
      add_bias(name + "fc1", layer.fc1);
      add_bias(name + "fc2", layer.fc2);
      add_norm(name + "final_layer_norm", layer.final_layer_norm);
      return;
    }
    case StageKind::head: {
      const auto& head = std::get<Head>(stage.weights());
      if (head.final_layer_norm) add_norm(prefix + "final_layer_norm", *head.final_layer_norm);
      return;
    }
  }
}

}  // namespace detail

// Writes `stages` (any subset of the stages of one model with `config`, each
// in its own format) to `dir`: config.json and model.safetensors. Integer
// matrices must share one scheme (group size, int4 asymmetry). A tied lm_head
// that shares storage with a saved embedding (f32 in one process) is stored
// once, as the embedding's table.
inline void save_quantized_checkpoint(const std::filesystem::path& dir, const OptConfig& config,
                                      std::span<const Stage* const> stages) {
  const std::string target = dir.string();
  if (stages.empty()) dilemma::detail::fail("{}: no stages to save", target);
  std::vector<const Stage*> ordered(stages.begin(), stages.end());
  std::ranges::sort(ordered, {}, &Stage::index);
  const auto stage_count = static_cast<std::size_t>(config.num_stages());
  const auto names = quant::detail::stage_names(stage_count);
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    const Stage& stage = *ordered[i];
    if (stage.index() >= stage_count || names[stage.index()] != stage.name()) {
      dilemma::detail::fail("{}: stage {} ({}) is not a stage of the model config.json describes ({})", target,
                            stage.index(), stage.name(), quant::detail::describe_stages(stage_count));
    }
    if (i > 0 && ordered[i - 1]->index() == stage.index()) {
      dilemma::detail::fail("{}: stage {} is given twice", target, stage.name());
    }
  }

  const std::string prefix = "model.decoder.";
  const Stage* embedding = ordered.front()->kind() == StageKind::embedding ? ordered.front() : nullptr;
  const Stage* head = ordered.back()->kind() == StageKind::head ? ordered.back() : nullptr;
  const bool lm_head_is_embedding =
      embedding != nullptr && head != nullptr && config.tie_word_embeddings &&
      std::get<Head>(head->weights()).lm_head == std::get<Embedding>(embedding->weights()).embed_tokens;

  QuantizationMetadata metadata;
  std::optional<std::string> group_size_source;
  std::optional<std::string> asymmetry_source;
  std::vector<io::TensorToWrite> tensors;
  // The integer tensors in the checkpoint's layout, which the matrices hand
  // out as copies (quant::QuantizedMatrix keeps a row's codes and scales
  // together in memory); a list, so that `tensors` may point into its elements.
  // Float weights are stored in the checkpoint's layout and written in place.
  std::list<std::vector<std::byte>> copies;
  auto keep = [&copies](std::vector<std::byte> bytes) {
    return std::span<const std::byte>(copies.emplace_back(std::move(bytes)));
  };
  auto keep_floats = [&keep](const std::vector<float>& values) {
    const auto bytes = std::as_bytes(std::span(values));
    return keep({bytes.begin(), bytes.end()});
  };
  for (const Stage* stage : ordered) {
    metadata.stages.emplace(stage->index(), stage->format());
    const auto layout = detail::stage_tensors(config, stage->index(), prefix);
    const auto matrices = stage->matrices();
    for (const auto& expected : layout.matrices) {
      const auto found = std::ranges::find(matrices, expected.matrix, &ConstNamedMatrix::name);
      if (found == matrices.end()) {
        dilemma::detail::fail("{}: stage {} has no matrix {}, which config.json implies", target, stage->name(),
                              expected.matrix);
      }
      const quant::QuantizedMatrix& weight = *found->weight;
      if (weight.rows() != expected.rows || weight.cols() != expected.cols) {
        dilemma::detail::fail("{}: {}.{} is [{} × {}], but config.json implies [{} × {}]", target, stage->name(),
                              expected.matrix, weight.rows(), weight.cols(), expected.rows, expected.cols);
      }
      if (expected.matrix == "lm_head" && lm_head_is_embedding) continue;
      const quant::Format format = weight.format();
      tensors.push_back({expected.module + ".weight", detail::stored_dtype(format),
                         detail::stored_shape(format, weight.rows(), weight.cols()),
                         quant::is_integer_format(format) ? keep(weight.data()) : weight.storage()});
      if (!quant::is_integer_format(format)) continue;
      // One scheme per file: every integer matrix has its group size, every
      // int4 matrix its asymmetry (which int8 does not have).
      const std::string here = fmt::format("{}.{}", stage->name(), expected.matrix);
      if (!group_size_source) {
        metadata.scheme.group_size = weight.scheme().group_size;
        group_size_source = here;
      } else if (weight.scheme().group_size != metadata.scheme.group_size) {
        dilemma::detail::fail(
            "{}: {} has group size {}, but {} has group size {}: a checkpoint holds one quantization scheme", target,
            here, weight.scheme().group_size, *group_size_source, metadata.scheme.group_size);
      }
      if (format == quant::Format::int4) {
        if (!asymmetry_source) {
          metadata.scheme.int4_asymmetric = weight.scheme().int4_asymmetric;
          asymmetry_source = here;
        } else if (weight.scheme().int4_asymmetric != metadata.scheme.int4_asymmetric) {
          auto kind = [](bool asymmetric) { return asymmetric ? "asymmetric" : "symmetric"; };
          dilemma::detail::fail("{}: {} is {} int4, but {} is {} int4: a checkpoint holds one quantization scheme",
                                target, here, kind(weight.scheme().int4_asymmetric), *asymmetry_source,
                                kind(metadata.scheme.int4_asymmetric));
        }
      }
      const std::vector<std::int64_t> groups = {weight.rows(), weight.groups_per_row()};
      tensors.push_back({expected.module + ".scales", io::DType::f32, groups, keep_floats(weight.scales())});
      if (quant::has_offsets(format, weight.scheme())) {
        tensors.push_back({expected.module + ".offsets", io::DType::f32, groups, keep_floats(weight.offsets())});
      }
    }
    detail::add_float_tensors(*stage, prefix, tensors);
  }

  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) dilemma::detail::fail("{}: cannot create the directory: {}", target, error.message());
  {
    std::ofstream out(dir / "config.json", std::ios::trunc);
    out << config.to_json().dump(2) << '\n';
    if (!out) dilemma::detail::fail("{}: cannot write config.json", target);
  }
  const std::map<std::string, std::string> file_metadata = {
      {"format", "pt"}, {std::string(quantization_metadata_key), metadata.to_json(config).dump()}};
  io::write_safetensors(dir / io::SafetensorsCheckpoint::single_file_name, tensors, file_metadata);
}

// The stages of `model` given by index (all of them when `stage_indices` is empty).
inline void save_quantized_checkpoint(const std::filesystem::path& dir, const OptModel& model,
                                      std::span<const std::size_t> stage_indices = {}) {
  std::vector<const Stage*> stages;
  if (stage_indices.empty()) {
    for (const Stage& stage : model.stages()) stages.push_back(&stage);
  }
  for (const std::size_t index : stage_indices) {
    if (index >= model.stages().size()) {
      dilemma::detail::fail("{}: stage {} does not exist (the model has {} stages)", dir.string(), index,
                            model.stages().size());
    }
    stages.push_back(&model.stages()[index]);
  }
  save_quantized_checkpoint(dir, model.config(), stages);
}

// The tokenizer and generation files of a model directory, copied next to a
// saved checkpoint so that the directory is a complete model for the CLI.
// Files the source does not have are skipped.
inline void copy_tokenizer_files(const std::filesystem::path& source_dir, const std::filesystem::path& target_dir) {
  for (const char* name : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                           "tokenizer.json", "generation_config.json"}) {
    std::error_code error;
    if (!std::filesystem::exists(source_dir / name, error)) continue;
    std::filesystem::copy_file(source_dir / name, target_dir / name, std::filesystem::copy_options::overwrite_existing,
                               error);
    if (error) {
      dilemma::detail::fail("{}: cannot copy {} from {}: {}", target_dir.string(), name, source_dir.string(),
                            error.message());
    }
  }
}

}  // namespace dilemma::model
