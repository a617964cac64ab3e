#include "model_options.hpp"

#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/format_assignment.hpp"

namespace dilemma::cli {

void add_model_options(CLI::App& command, ModelOptions& options) {
  command.add_option("--model", options.model_dir, "OPT model directory: Hugging Face, or a quantized checkpoint")
      ->required()
      ->check(CLI::ExistingDirectory);
  auto* formats = command.add_option(
      "--formats", options.formats,
      "Quantize the model (round to nearest) before running it: one format for every stage (f32, f16, int8, int4), "
      "a comma-separated list with one per stage (embedding, layer.0 ... layer.L-1, head), or a JSON file "
      "({\"formats\": [...]} or {\"default\": F, \"stages\": {\"layer.3\": F}}). Default: the formats the "
      "checkpoint stores (f32 for a Hugging Face checkpoint)");
  command
      .add_option("--group-size", options.group_size,
                  "Weights per scale of int8/int4 (a multiple of 32 that divides every quantized matrix's width; "
                  "default 64)")
      ->needs(formats);
  command.add_option("--threads", options.threads, "Threads for the matrix products, the calling one included")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  command
      .add_option("--activations", options.activations,
                  "Activations of the int8/int4 weights' products: f32; bf16 (rounded to bfloat16; faster int4 on "
                  "AVX-512 BF16); or int8 (rounded per group; integer dot products). Errors: docs/kernels.md")
      ->capture_default_str()
      ->check(CLI::IsMember(quant::activation_precision_names()));
}

std::vector<std::string> LoadedModel::format_names() const {
  std::vector<std::string> names;
  for (const auto& format : model.formats()) names.emplace_back(format ? quant::format_name(*format) : "mixed");
  return names;
}

LoadedModel load_model(const ModelOptions& options) {
  LoadedModel loaded{model::OptModel::load(options.model_dir), nullptr};
  if (!options.formats.empty()) {
    auto assignment = quant::FormatAssignment::parse(options.formats, "--formats");
    if (options.group_size) assignment.set_group_size(*options.group_size, "--group-size");
    loaded.model.quantize(assignment);
  }
  if (options.threads > 1) loaded.pool = std::make_unique<parallel::ThreadPool>(options.threads);
  loaded.activations = quant::parse_activation_precision(options.activations, "--activations");
  return loaded;
}

}  // namespace dilemma::cli
