// `dilemma quantize`: a model quantized stage by stage (round to nearest, or
// calibrated on text) and written as a quantized checkpoint directory that
// the other commands load like any model.

#include <memory>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "calibration_text.hpp"
#include "commands.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/quantized_checkpoint.hpp"
#include "dilemma/parallel/thread_pool.hpp"
#include "dilemma/quant/calibration/calibrate.hpp"
#include "dilemma/quant/format_assignment.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

namespace calibration = quant::calibration;

struct QuantizeOptions {
  std::string model_dir;
  std::string formats;
  std::string method = "rtn";
  CalibrationText calibration;
  std::optional<std::int64_t> group_size;
  unsigned threads = 1;
  std::string out_dir;
  bool json = false;
};

void run_quantize(const QuantizeOptions& options) {
  const auto method = calibration::parse_method(options.method, "--method");
  const bool with_text = !options.calibration.squad_file.empty();
  if (calibration::needs_inputs(method) && !with_text) {
    dilemma::detail::fail("--method {}: calibration needs text; give --calib SQUAD_FILE (and --paragraphs A:B)",
                          options.method);
  }
  if (!calibration::needs_inputs(method) && with_text) {
    dilemma::detail::fail("--calib: round-to-nearest (--method rtn) uses no calibration text; choose --method clip, "
                          "gptq or kd, or leave out --calib");
  }
  auto assignment = quant::FormatAssignment::parse(options.formats, "--formats");
  if (options.group_size) assignment.set_group_size(*options.group_size, "--group-size");

  auto model = model::OptModel::load(options.model_dir);
  const auto formats = assignment.resolve(model.stages().size());
  const std::size_t f32_bytes = model.weight_bytes();
  std::unique_ptr<parallel::ThreadPool> pool;
  if (options.threads > 1) pool = std::make_unique<parallel::ThreadPool>(options.threads);
  quant::KernelContext kernels;
  kernels.pool = pool.get();

  std::vector<std::vector<TokenId>> sequences;
  std::size_t calibration_tokens = 0;
  if (with_text) {
    sequences = calibration_sequences(options.calibration, text::BpeTokenizer::load(options.model_dir));
    for (const auto& ids : sequences) calibration_tokens += ids.size();
  }
  calibration::calibrate_model(model, std::move(sequences), formats, assignment.scheme(), method, {}, kernels);
  model::save_quantized_checkpoint(options.out_dir, model);
  model::copy_tokenizer_files(options.model_dir, options.out_dir);

  const std::size_t bytes = model.weight_bytes();
  const double ratio = static_cast<double>(bytes) / static_cast<double>(f32_bytes);
  std::vector<std::string> names;
  for (const auto format : formats) names.emplace_back(quant::format_name(format));
  if (options.json) {
    fmt::print("{}\n", nlohmann::json{{"out", options.out_dir},
                                      {"formats", names},
                                      {"method", options.method},
                                      {"group_size", assignment.scheme().group_size},
                                      {"calibration_tokens", calibration_tokens},
                                      {"weight_bytes", bytes},
                                      {"f32_weight_bytes", f32_bytes},
                                      {"ratio", ratio}}
                           .dump());
    return;
  }
  fmt::print("wrote {}: formats {}, method {}{}\n", options.out_dir, fmt::join(names, ","), options.method,
             with_text ? fmt::format(" (calibrated on {} tokens of paragraphs {})", calibration_tokens,
                                     options.calibration.paragraphs)
                       : std::string());
  fmt::print("weights {} bytes = {:.2f} % of f32 ({} bytes)\n", bytes, 100.0 * ratio, f32_bytes);
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto options = std::make_shared<QuantizeOptions>();
  auto* command = app.add_subcommand(
      "quantize", "Quantize a model stage by stage, optionally calibrated on text, and save it as a checkpoint");
  command->add_option("--model", options->model_dir, "Hugging Face OPT model directory (the f32 teacher)")
      ->required()
      ->check(CLI::ExistingDirectory);
  command
      ->add_option("--formats", options->formats,
                   "One format for every stage (f32, f16, int8, int4), a comma-separated list with one per stage "
                   "(embedding, layer.0 ... layer.L-1, head), or a JSON file")
      ->required();
  command
      ->add_option("--method", options->method,
                   "rtn (round to nearest), clip (searched clipping), gptq (error feedback) or kd (gptq with "
                   "searched clipping)")
      ->capture_default_str();
  add_calibration_options(*command, options->calibration);
  command->add_option("--group-size", options->group_size,
                      "Weights per scale of int8/int4 (a multiple of 32 that divides every quantized matrix's "
                      "width; default 64)");
  command->add_option("--threads", options->threads, "Threads for the matrix products, the calling one included")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  command->add_option("--out", options->out_dir, "Directory to write the quantized checkpoint to")->required();
  command->add_flag("--json", options->json, "Print what was written as JSON");
  command->callback([options] { run_quantize(*options); });
}

}  // namespace dilemma::cli
