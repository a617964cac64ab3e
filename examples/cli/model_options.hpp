#pragma once
// The options every command that runs a model shares: which model, in which
// formats, on how many threads.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/run_context.hpp"
#include "dilemma/parallel/thread_pool.hpp"
#include "dilemma/quant/activations.hpp"

namespace dilemma::cli {

struct ModelOptions {
  std::string model_dir;
  std::string formats;         // empty: the formats the checkpoint stores
  std::optional<std::int64_t> group_size;
  unsigned threads = 1;
  std::string activations = "f32";  // or int8: integer weights meet int8-rounded activations
};

// Registers --model, --formats, --group-size, --threads and --activations on `command`.
void add_model_options(CLI::App& command, ModelOptions& options);

// A model loaded and quantized as the options say, with the threads to run it on.
struct LoadedModel {
  model::OptModel model;
  std::unique_ptr<parallel::ThreadPool> pool;  // null for one thread
  quant::ActivationPrecision activations = quant::ActivationPrecision::f32;

  model::RunContext run_context() const {
    model::RunContext context;
    context.kernels.pool = pool.get();
    context.kernels.activations = activations;
    return context;
  }
  // Each stage's format ("mixed" when its matrices differ), for reports.
  std::vector<std::string> format_names() const;
};

LoadedModel load_model(const ModelOptions& options);

}  // namespace dilemma::cli
