#pragma once
// A Hugging Face OPT model directory (config.json + safetensors), checked
// against its config when opened and read one stage at a time, so that a node
// that runs three layers maps the file but materializes only those layers.
//
// The same class reads quantized checkpoints (model/quantized_checkpoint.hpp
// writes them): their safetensors `__metadata__` has a "dilemma.quantization"
// entry, they may hold any subset of the stages, and each stage loads in the
// format it was stored in. Plain checkpoints load in f32 whatever their dtype.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dilemma/error.hpp"
#include "dilemma/io/dtype.hpp"
#include "dilemma/io/safetensors.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/model/quantized_layout.hpp"
#include "dilemma/model/stage.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::model {

class OptCheckpoint {
 public:
  static OptCheckpoint open(const std::filesystem::path& model_dir);

  const std::filesystem::path& directory() const { return directory_; }
  const OptConfig& config() const { return config_; }
  // "model.decoder." for transformers checkpoints, "decoder." for the original facebook/opt-* files.
  const std::string& decoder_prefix() const { return prefix_; }

  // The quantization entry of a quantized checkpoint; nullopt for a plain one.
  const std::optional<QuantizationMetadata>& quantization() const { return quantization_; }
  // Whether the file holds stage i (always, for a plain checkpoint).
  bool has_stage(std::size_t index) const;

  // Stage i: 0 = embedding, 1..L = decoder layers, L+1 = head. A tied head
  // reuses `tied_embedding` when given (both stages in one process) and its
  // table is the embedding's in the file (a plain checkpoint, or a quantized
  // one that stores no separate lm_head.weight).
  Stage load_stage(std::size_t index, std::shared_ptr<quant::QuantizedMatrix> tied_embedding = nullptr) const;
  // Every stage, sharing the tied embedding between the first and last.
  std::vector<Stage> load_all_stages() const;

 private:
  struct Expected {
    std::string name;
    std::vector<std::int64_t> shape;
  };
  std::vector<Expected> expected_tensors() const;
  void validate() const;
  void validate_quantized() const;
  void validate_stored_matrix(const detail::StageTensors::MatrixTensor& matrix, const std::string& module,
                              std::size_t stage, std::optional<quant::Format> stage_format,
                              std::set<std::string>& accounted) const;
  // The tensor (module) that holds the head's lm_head: lm_head.weight, or the
  // token embedding when the model ties them and the file has no lm_head.weight.
  std::string lm_head_module() const;
  std::string stored_stage_names() const;
  Matrix read_matrix(const std::string& name) const;
  RowVector read_vector(const std::string& name) const;
  quant::QuantizedMatrix read_weight(const std::string& module) const;
  std::vector<float> read_floats(const std::string& name) const;
  Linear read_linear(const std::string& prefix, bool with_bias) const;
  LayerNorm read_layer_norm(const std::string& prefix) const;
  // The untied head sits outside the decoder in both naming schemes.
  static constexpr const char* lm_head_name() { return "lm_head.weight"; }

  OptCheckpoint(std::filesystem::path directory, OptConfig config, io::SafetensorsCheckpoint tensors)
      : directory_(std::move(directory)), config_(std::move(config)), tensors_(std::move(tensors)) {}

  std::filesystem::path directory_;
  OptConfig config_;
  io::SafetensorsCheckpoint tensors_;
  std::string prefix_;
  std::optional<QuantizationMetadata> quantization_;
};

namespace detail {

inline std::string shape_string(std::span<const std::int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

}  // namespace detail

inline OptCheckpoint OptCheckpoint::open(const std::filesystem::path& model_dir) {
  if (!std::filesystem::is_directory(model_dir)) {
    dilemma::detail::fail("{}: not a model directory (expected config.json and model.safetensors in it)",
                          model_dir.string());
  }
  // Config first: its errors explain the tensors' shapes, and the order of
  // evaluation of constructor arguments is unspecified.
  OptConfig config = OptConfig::load(model_dir / "config.json");
  OptCheckpoint checkpoint(model_dir, std::move(config), io::SafetensorsCheckpoint::open(model_dir));
  const auto& tensors = checkpoint.tensors_;
  const auto metadata = tensors.metadata();
  if (const auto entry = metadata.find(std::string(quantization_metadata_key)); entry != metadata.end()) {
    // Written by save_quantized_checkpoint, always with transformers' names;
    // it may hold no embedding to recognize them by.
    checkpoint.prefix_ = "model.decoder.";
    checkpoint.quantization_ = QuantizationMetadata::parse(entry->second, checkpoint.config_,
                                                           tensors.source().string());
    checkpoint.validate_quantized();
    return checkpoint;
  }
  if (tensors.contains("model.decoder.embed_tokens.weight")) {
    checkpoint.prefix_ = "model.decoder.";
  } else if (tensors.contains("decoder.embed_tokens.weight")) {
    checkpoint.prefix_ = "decoder.";
  } else {
    dilemma::detail::fail(
        "{}: no token embedding found: expected a tensor \"model.decoder.embed_tokens.weight\" "
        "(transformers) or \"decoder.embed_tokens.weight\" (original OPT checkpoints)",
        model_dir.string());
  }
  checkpoint.validate();
  return checkpoint;
}

inline std::vector<OptCheckpoint::Expected> OptCheckpoint::expected_tensors() const {
  const auto& c = config_;
  const std::int64_t h = c.hidden_size, f = c.ffn_dim, p = c.word_embed_proj_dim;
  std::vector<Expected> expected;
  auto add = [&](std::string name, std::vector<std::int64_t> shape) {
    expected.push_back({prefix_ + std::move(name), std::move(shape)});
  };
  auto add_norm = [&](const std::string& name) {
    if (!c.layer_norm_elementwise_affine) return;
    add(name + ".weight", {h});
    add(name + ".bias", {h});
  };
  auto add_linear = [&](const std::string& name, std::int64_t out, std::int64_t in) {
    add(name + ".weight", {out, in});
    if (c.enable_bias) add(name + ".bias", {out});
  };
  add("embed_tokens.weight", {c.vocab_size, p});
  add("embed_positions.weight", {c.max_position_embeddings + OptConfig::position_offset, h});
  if (c.has_projection()) {
    add("project_in.weight", {h, p});
    add("project_out.weight", {p, h});
  }
  if (c.has_final_layer_norm()) add_norm("final_layer_norm");
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string layer = fmt::format("layers.{}.", i);
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      add_linear(layer + "self_attn." + proj, h, h);
    }
    add_norm(layer + "self_attn_layer_norm");
    add_linear(layer + "fc1", f, h);
    add_linear(layer + "fc2", h, f);
    add_norm(layer + "final_layer_norm");
  }
  if (!c.tie_word_embeddings) expected.push_back({lm_head_name(), {c.vocab_size, p}});
  return expected;
}

inline void OptCheckpoint::validate() const {
  std::set<std::string> accounted;
  for (const auto& [name, shape] : expected_tensors()) {
    if (!tensors_.contains(name)) {
      dilemma::detail::fail("{}: tensor \"{}\" is missing (config.json describes {} layers, hidden_size {})",
                            directory_.string(), name, config_.num_hidden_layers, config_.hidden_size);
    }
    const io::TensorView view = tensors_.tensor(name);
    if (!io::is_floating(view.dtype)) {
      dilemma::detail::fail("{}: tensor \"{}\" has dtype {}, expected a floating-point dtype (F32, F16 or BF16)",
                            tensors_.file_of(name).string(), name, io::dtype_name(view.dtype));
    }
    if (!std::ranges::equal(view.shape, shape)) {
      dilemma::detail::fail("{}: tensor \"{}\" has shape {}, but config.json implies {}",
                            tensors_.file_of(name).string(), name, detail::shape_string(view.shape),
                            detail::shape_string(shape));
    }
    accounted.insert(name);
  }
  // transformers saves a tied lm_head.weight in some checkpoints; it is ignored
  // then, as transformers itself ignores it.
  if (config_.tie_word_embeddings) accounted.insert(lm_head_name());
  for (const auto& name : tensors_.tensor_names()) {
    if (!accounted.contains(name)) {
      dilemma::detail::fail("{}: unexpected tensor \"{}\": not part of an OPT model with this config.json",
                            tensors_.file_of(name).string(), name);
    }
  }
}

inline bool OptCheckpoint::has_stage(std::size_t index) const {
  if (!quantization_) return index < static_cast<std::size_t>(config_.num_stages());
  return quantization_->stages.contains(index);
}

inline std::string OptCheckpoint::stored_stage_names() const {
  const auto names = quant::detail::stage_names(static_cast<std::size_t>(config_.num_stages()));
  std::vector<std::string> stored;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (has_stage(i)) stored.push_back(names[i]);
  }
  return fmt::format("{}", fmt::join(stored, ", "));
}

inline std::string OptCheckpoint::lm_head_module() const {
  if (!config_.tie_word_embeddings) return "lm_head";
  if (!quantization_) return prefix_ + "embed_tokens";
  // A quantized file stores the head's own table unless it is the embedding's.
  const bool shares_embedding =
      !tensors_.contains(lm_head_name()) && tensors_.contains(prefix_ + "embed_tokens.weight");
  return shares_embedding ? prefix_ + "embed_tokens" : "lm_head";
}

inline void OptCheckpoint::validate_quantized() const {
  const std::string file = tensors_.source().string();
  const auto names = quant::detail::stage_names(static_cast<std::size_t>(config_.num_stages()));
  std::set<std::string> accounted;
  for (const auto& [index, format] : quantization_->stages) {
    const auto layout = detail::stage_tensors(config_, index, prefix_);
    for (const auto& [name, shape] : layout.floats) {
      if (!tensors_.contains(name)) {
        dilemma::detail::fail("{}: tensor \"{}\" is missing (__metadata__ lists stage {})", file, name, names[index]);
      }
      const io::TensorView view = tensors_.tensor(name);
      if (!io::is_floating(view.dtype)) {
        dilemma::detail::fail("{}: tensor \"{}\" has dtype {}, expected a floating-point dtype (F32, F16 or BF16)",
                              file, name, io::dtype_name(view.dtype));
      }
      if (!std::ranges::equal(view.shape, shape)) {
        dilemma::detail::fail("{}: tensor \"{}\" has shape {}, but config.json implies {}", file, name,
                              detail::shape_string(view.shape), detail::shape_string(shape));
      }
      accounted.insert(name);
    }
    for (const auto& matrix : layout.matrices) {
      validate_stored_matrix(matrix, matrix.matrix == "lm_head" ? lm_head_module() : matrix.module, index, format,
                             accounted);
    }
  }
  for (const auto& name : tensors_.tensor_names()) {
    if (!accounted.contains(name)) {
      dilemma::detail::fail("{}: unexpected tensor \"{}\": not part of the stages __metadata__ lists ({})", file, name,
                            stored_stage_names());
    }
  }
}

inline void OptCheckpoint::validate_stored_matrix(const detail::StageTensors::MatrixTensor& matrix,
                                                  const std::string& module, std::size_t stage,
                                                  std::optional<quant::Format> stage_format,
                                                  std::set<std::string>& accounted) const {
  const std::string file = tensors_.source().string();
  const auto stage_name = quant::detail::stage_names(static_cast<std::size_t>(config_.num_stages())).at(stage);
  const std::string name = module + ".weight";
  if (!tensors_.contains(name)) {
    dilemma::detail::fail("{}: tensor \"{}\" is missing (__metadata__ lists stage {})", file, name, stage_name);
  }
  const io::TensorView view = tensors_.tensor(name);
  const auto format = detail::format_of_stored_dtype(view.dtype);
  if (!format) {
    dilemma::detail::fail(
        "{}: tensor \"{}\" has dtype {}, which stores no format (F32 for f32, F16 for f16, I8 for int8, U8 for int4)",
        file, name, io::dtype_name(view.dtype));
  }
  if (stage_format && *format != *stage_format) {
    dilemma::detail::fail("{}: tensor \"{}\" has dtype {} ({}), but __metadata__ says stage {} is {}", file, name,
                          io::dtype_name(view.dtype), quant::format_name(*format), stage_name,
                          quant::format_name(*stage_format));
  }
  const auto shape = detail::stored_shape(*format, matrix.rows, matrix.cols);
  if (!std::ranges::equal(view.shape, shape)) {
    dilemma::detail::fail("{}: tensor \"{}\" has shape {}, expected {} for {} weights [{} × {}]{}", file, name,
                          detail::shape_string(view.shape), detail::shape_string(shape), quant::format_name(*format),
                          matrix.rows, matrix.cols, *format == quant::Format::int4 ? " (two codes per byte)" : "");
  }
  accounted.insert(name);
  if (!quant::is_integer_format(*format)) return;

  const quant::QuantScheme& scheme = quantization_->scheme;
  if (matrix.cols % scheme.group_size != 0) {
    dilemma::detail::fail("{}: tensor \"{}\": group size {} does not divide its {} columns", file, name,
                          scheme.group_size, matrix.cols);
  }
  const std::int64_t groups = matrix.cols / scheme.group_size;
  auto check_group_tensor = [&](const std::string& suffix, const char* what) {
    const std::string group_name = module + suffix;
    if (!tensors_.contains(group_name)) {
      dilemma::detail::fail("{}: tensor \"{}\" is missing ({} {} needs one float32 {} per group)", file, group_name,
                            quant::format_name(*format), name, what);
    }
    const io::TensorView group_view = tensors_.tensor(group_name);
    if (group_view.dtype != io::DType::f32) {
      dilemma::detail::fail("{}: tensor \"{}\" has dtype {}, expected F32", file, group_name,
                            io::dtype_name(group_view.dtype));
    }
    const std::vector<std::int64_t> expected = {matrix.rows, groups};
    if (!std::ranges::equal(group_view.shape, expected)) {
      dilemma::detail::fail("{}: tensor \"{}\" has shape {}, expected {} ({} rows × {} groups of {})", file,
                            group_name, detail::shape_string(group_view.shape), detail::shape_string(expected),
                            matrix.rows, groups, scheme.group_size);
    }
    accounted.insert(group_name);
  };
  check_group_tensor(".scales", "scale");
  if (quant::has_offsets(*format, scheme)) check_group_tensor(".offsets", "offset");
}

inline Matrix OptCheckpoint::read_matrix(const std::string& name) const {
  const io::TensorView view = tensors_.tensor(name);
  Matrix m(view.shape[0], view.shape[1]);
  io::convert_to_f32(view.dtype, view.data, std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
  return m;
}

inline RowVector OptCheckpoint::read_vector(const std::string& name) const {
  const io::TensorView view = tensors_.tensor(name);
  RowVector v(view.shape[0]);
  io::convert_to_f32(view.dtype, view.data, std::span<float>(v.data(), static_cast<std::size_t>(v.size())));
  return v;
}

inline std::vector<float> OptCheckpoint::read_floats(const std::string& name) const {
  const io::TensorView view = tensors_.tensor(name);
  std::vector<float> values(static_cast<std::size_t>(view.element_count()));
  io::convert_to_f32(view.dtype, view.data, values);
  return values;
}

inline quant::QuantizedMatrix OptCheckpoint::read_weight(const std::string& module) const {
  const std::string name = module + ".weight";
  const io::TensorView view = tensors_.tensor(name);
  const std::string what = fmt::format("{}: tensor \"{}\"", tensors_.file_of(name).string(), name);
  if (!quantization_) {
    // Plain checkpoints compute in f32 whatever their dtype.
    if (view.dtype == io::DType::f32) {
      return quant::QuantizedMatrix::from_data(quant::Format::f32, {}, view.shape[0], view.shape[1], view.data, {}, {},
                                               what);
    }
    return f32_weight(read_matrix(name), what);
  }
  // validate_quantized() has checked the dtype, the shapes and the group tensors.
  const quant::Format format = *detail::format_of_stored_dtype(view.dtype);
  const quant::QuantScheme& scheme = quantization_->scheme;
  const Eigen::Index cols = format == quant::Format::int4 ? 2 * view.shape[1] : view.shape[1];
  std::vector<float> scales, offsets;
  if (quant::is_integer_format(format)) {
    scales = read_floats(module + ".scales");
    if (quant::has_offsets(format, scheme)) offsets = read_floats(module + ".offsets");
  }
  return quant::QuantizedMatrix::from_data(format, quant::is_integer_format(format) ? scheme : quant::QuantScheme{},
                                           view.shape[0], cols, view.data, scales, offsets, what);
}

inline Linear OptCheckpoint::read_linear(const std::string& prefix, bool with_bias) const {
  Linear linear{read_weight(prefix), {}};
  if (with_bias) linear.bias = read_vector(prefix + ".bias");
  return linear;
}

inline LayerNorm OptCheckpoint::read_layer_norm(const std::string& prefix) const {
  LayerNorm norm;
  norm.eps = OptConfig::layer_norm_eps;
  if (config_.layer_norm_elementwise_affine) {
    norm.weight = read_vector(prefix + ".weight");
    norm.bias = read_vector(prefix + ".bias");
  }
  return norm;
}

inline Stage OptCheckpoint::load_stage(std::size_t index, std::shared_ptr<quant::QuantizedMatrix> tied_embedding) const {
  const auto& c = config_;
  const auto layers = static_cast<std::size_t>(c.num_hidden_layers);
  if (index > layers + 1) {
    dilemma::detail::fail("{}: stage {} does not exist (the model has {} stages: embedding, {} layers, head)",
                          directory_.string(), index, layers + 2, layers);
  }
  if (!has_stage(index)) {
    dilemma::detail::fail("{}: stage {} ({}) is not in this checkpoint, which holds {}", tensors_.source().string(),
                          quant::detail::stage_names(layers + 2).at(index), index, stored_stage_names());
  }
  const std::string& d = prefix_;
  auto shared_weight = [&](const std::string& module) {
    return std::make_shared<quant::QuantizedMatrix>(read_weight(module));
  };
  if (index == 0) {
    Embedding embedding;
    embedding.embed_tokens = tied_embedding ? tied_embedding : shared_weight(d + "embed_tokens");
    if (c.has_projection()) embedding.project_in = read_linear(d + "project_in", false);
    embedding.embed_positions = read_matrix(d + "embed_positions.weight");
    embedding.position_offset = OptConfig::position_offset;
    return Stage(index, std::move(embedding));
  }
  if (index == layers + 1) {
    Head head;
    if (c.has_final_layer_norm()) head.final_layer_norm = read_layer_norm(d + "final_layer_norm");
    if (c.has_projection()) head.project_out = read_linear(d + "project_out", false);
    const std::string module = lm_head_module();
    head.lm_head = tied_embedding && module == d + "embed_tokens" ? tied_embedding : shared_weight(module);
    return Stage(index, std::move(head));
  }
  const std::string layer = fmt::format("{}layers.{}.", d, index - 1);
  DecoderLayer decoder;
  decoder.self_attn_layer_norm = read_layer_norm(layer + "self_attn_layer_norm");
  decoder.self_attn.q_proj = read_linear(layer + "self_attn.q_proj", c.enable_bias);
  decoder.self_attn.k_proj = read_linear(layer + "self_attn.k_proj", c.enable_bias);
  decoder.self_attn.v_proj = read_linear(layer + "self_attn.v_proj", c.enable_bias);
  decoder.self_attn.out_proj = read_linear(layer + "self_attn.out_proj", c.enable_bias);
  decoder.self_attn.num_heads = c.num_attention_heads;
  decoder.final_layer_norm = read_layer_norm(layer + "final_layer_norm");
  decoder.fc1 = read_linear(layer + "fc1", c.enable_bias);
  decoder.fc2 = read_linear(layer + "fc2", c.enable_bias);
  decoder.layer_norm_before = c.do_layer_norm_before;
  decoder.activation = c.activation_function;
  return Stage(index, std::move(decoder));
}

inline std::vector<Stage> OptCheckpoint::load_all_stages() const {
  std::vector<Stage> stages;
  stages.reserve(static_cast<std::size_t>(config_.num_stages()));
  stages.push_back(load_stage(0));
  const auto embed_tokens = std::get<Embedding>(stages.front().weights()).embed_tokens;
  for (std::size_t i = 1; i < static_cast<std::size_t>(config_.num_stages()); ++i) {
    stages.push_back(load_stage(i, config_.tie_word_embeddings ? embed_tokens : nullptr));
  }
  return stages;
}

}  // namespace dilemma::model
