// bench_model: prefill and decode throughput of dilemma's OPT runtime, with
// every stage in one format (f32, f16, int8 or int4), set against the
// machine's memory read bandwidth measured in the same run.
// What is counted, and why: docs/performance.md.
//
// A small hand-written harness rather than Google Benchmark: every measurement
// is an end-to-end model run with its own setup (a fresh session whose prefill
// is timed apart from the decode steps that follow it), and the numbers that
// matter are ratios across measurements (bytes per token × tokens/s ÷ the
// bandwidth measured beforehand), reported as one JSON document. Google
// Benchmark's per-function iteration loop and its reporters fit neither.
//
// Exit codes: 0 success, 1 bad input (a dilemma::Error), CLI11's codes for
// command-line mistakes, 3 for anything unexpected.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/random_model.hpp"
#include "dilemma/parallel/thread_pool.hpp"
#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/format.hpp"
#include "dilemma/version.hpp"
#include "machine_info.hpp"
#include "memory_bandwidth.hpp"
#include "model_cost.hpp"
#include "summary.hpp"

namespace dilemma::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

constexpr const char* tiny_opt_name = "tiny-opt";
constexpr const char* opt_350m_name = "opt-350m";

struct Settings {
  std::string out = "-";
  std::vector<std::string> models{tiny_opt_name, opt_350m_name};
  std::vector<std::string> formats{"f32"};
  std::string activations = "f32";  // int8: integer weights multiply int8-rounded activations (quant/activations.hpp)
  std::string tiny_opt_dir = build::tiny_opt_dir;
  std::size_t prompt_tokens = 128;
  std::size_t decode_tokens = 32;
  int warmup = 1;
  int repetitions = 7;
  std::size_t bandwidth_mib = 2048;
  int bandwidth_repetitions = 15;
  std::uint64_t seed = 1;
  unsigned threads = 1;  // for the matrix products, the calling thread included
  bool quick = false;
};

struct ModelRun {
  std::string name;
  std::string format;
  std::string activations;
  std::string source;
  model::OptConfig config;
  std::size_t parameter_count = 0;
  std::size_t weights_in_memory_bytes = 0;
  double setup_seconds = 0;
  Summary prefill_tokens_per_second;
  Summary decode_tokens_per_second;
  DecodeWeightTraffic weight_traffic;
  double kv_bytes_per_decoded_token = 0;  // mean over the decode steps
  double prefill_flops = 0;
};

// Decode throughput expressed as memory traffic, against both bandwidths.
struct DecodeEfficiency {
  double bytes_per_token = 0;
  double effective_gigabytes_per_second = 0;
  double of_single_thread_bandwidth = 0;
  double of_all_threads_bandwidth = 0;
};

DecodeEfficiency decode_efficiency(const ModelRun& run, const BandwidthReport& bandwidth) {
  DecodeEfficiency e;
  e.bytes_per_token = static_cast<double>(run.weight_traffic.total()) + run.kv_bytes_per_decoded_token;
  e.effective_gigabytes_per_second = e.bytes_per_token * run.decode_tokens_per_second.median / 1e9;
  e.of_single_thread_bandwidth = e.effective_gigabytes_per_second / bandwidth.single_thread.gigabytes_per_second.median;
  e.of_all_threads_bandwidth = e.effective_gigabytes_per_second / bandwidth.all_threads.gigabytes_per_second.median;
  return e;
}

// The tokens fed do not change the arithmetic, but a fixed sequence makes runs
// identical; std::mt19937_64's output is specified by the standard.
std::vector<TokenId> token_ids(std::size_t count, std::int64_t vocab_size, std::mt19937_64& rng) {
  std::vector<TokenId> ids(count);
  for (auto& id : ids) id = static_cast<TokenId>(rng() % static_cast<std::uint64_t>(vocab_size));
  return ids;
}

// Each repetition starts a fresh session, times the prefill of the prompt, then
// times the decode steps that follow it one token at a time through the KV cache.
ModelRun measure_model(std::string name, std::string format, std::string source, const model::OptModel& model,
                       double setup_seconds, const Settings& settings) {
  const auto& config = model.config();
  std::optional<parallel::ThreadPool> pool;
  model::RunContext context;
  if (settings.threads > 1) context.kernels.pool = &pool.emplace(settings.threads);
  context.kernels.activations = quant::parse_activation_precision(settings.activations, "--activations");
  std::mt19937_64 rng(settings.seed);
  const auto prompt = token_ids(settings.prompt_tokens, config.vocab_size, rng);
  const auto continuation = token_ids(settings.decode_tokens, config.vocab_size, rng);

  std::vector<double> prefill_rates;
  std::vector<double> decode_rates;
  double kv_bytes_read = 0;
  for (int repetition = 0; repetition < settings.warmup + settings.repetitions; ++repetition) {
    model::Session session = model.new_session();
    const auto prefill_start = Clock::now();
    model.forward(prompt, session, model::Logits::last, context);
    const double prefill_seconds = seconds_since(prefill_start);

    double decode_seconds = 0;
    kv_bytes_read = 0;
    for (const TokenId& id : continuation) {
      const auto step_start = Clock::now();
      model.forward(std::span(&id, 1), session, model::Logits::last, context);
      decode_seconds += seconds_since(step_start);
      kv_bytes_read += static_cast<double>(kv_cache_bytes(model, session));
    }
    if (repetition < settings.warmup) continue;
    prefill_rates.push_back(static_cast<double>(settings.prompt_tokens) / prefill_seconds);
    decode_rates.push_back(static_cast<double>(settings.decode_tokens) / decode_seconds);
  }

  ModelRun run;
  run.name = std::move(name);
  run.format = std::move(format);
  run.activations = settings.activations;
  run.source = std::move(source);
  run.config = config;
  run.parameter_count = model.parameter_count();
  run.weights_in_memory_bytes = model.weight_bytes();
  run.setup_seconds = setup_seconds;
  run.prefill_tokens_per_second = summarize(std::move(prefill_rates));
  run.decode_tokens_per_second = summarize(std::move(decode_rates));
  run.weight_traffic = decode_weight_traffic(model);
  run.kv_bytes_per_decoded_token = kv_bytes_read / static_cast<double>(settings.decode_tokens);
  run.prefill_flops = prefill_flops(model, settings.prompt_tokens);
  return run;
}

model::OptConfig model_config(const std::string& name, const Settings& settings) {
  return name == tiny_opt_name ? model::OptConfig::load(std::filesystem::path(settings.tiny_opt_dir) / "config.json")
                               : model::opt_350m_config();
}

// Checks every model's context length before minutes are spent measuring.
void check_context_lengths(const Settings& settings) {
  for (const auto& name : settings.models) {
    const auto max_positions = model_config(name, settings).max_position_embeddings;
    if (settings.prompt_tokens + settings.decode_tokens > static_cast<std::size_t>(max_positions)) {
      dilemma::detail::fail("{}: a prompt of {} tokens plus {} decoded tokens exceeds max_position_embeddings ({})",
                            name, settings.prompt_tokens, settings.decode_tokens, max_positions);
    }
  }
}

// Integer formats need a group size that divides every quantized width:
// tiny-opt's embedding, project_in and head are 96 wide (groups of 32), the
// OPT-350m shape takes the library's default of 64.
quant::QuantScheme scheme_for(const std::string& name) {
  return name == tiny_opt_name ? quant::QuantScheme{.group_size = 32} : quant::QuantScheme{};
}

// Builds one model in one format, measures it and frees it before the next is
// built, so that the process never holds two large models at once.
ModelRun benchmark_model(const std::string& name, const std::string& format_name, const Settings& settings) {
  const quant::Format format = quant::parse_format(format_name, "--formats");
  const auto start = Clock::now();
  auto built = [&]() -> std::pair<model::OptModel, std::string> {
    if (name == tiny_opt_name) {
      auto model = model::OptModel::load(settings.tiny_opt_dir);
      std::string source = fmt::format("checkpoint {} (config torch_dtype {}), converted to f32 on load",
                                       settings.tiny_opt_dir, model.config().torch_dtype);
      return {std::move(model), std::move(source)};
    }
    return {model::random_opt_model(model::opt_350m_config(), settings.seed),
            fmt::format("opt_350m_config() with random weights, seed {}, f32", settings.seed)};
  }();
  auto& [model, source] = built;
  if (format != quant::Format::f32) {
    const quant::QuantScheme scheme = scheme_for(name);
    model.quantize(std::vector<quant::Format>(model.stages().size(), format), scheme);
    source += fmt::format(", every stage quantized to {} (round to nearest{})", format_name,
                          quant::is_integer_format(format) ? fmt::format(", groups of {}", scheme.group_size) : "");
  }
  const double setup_seconds = seconds_since(start);
  return measure_model(name, format_name, std::move(source), model, setup_seconds, settings);
}

nlohmann::json model_json(const ModelRun& run, const BandwidthReport& bandwidth, const Settings& settings) {
  const DecodeEfficiency efficiency = decode_efficiency(run, bandwidth);
  const auto& traffic = run.weight_traffic;
  return {
      {"name", run.name},
      {"format", run.format},
      {"activations", run.activations},
      {"source", run.source},
      {"config", run.config.to_json()},
      {"parameter_count", run.parameter_count},
      {"weights_in_memory_bytes", run.weights_in_memory_bytes},
      {"setup_seconds", run.setup_seconds},
      {"prefill",
       {{"prompt_tokens", settings.prompt_tokens},
        {"tokens_per_second", run.prefill_tokens_per_second},
        {"flops", run.prefill_flops},
        {"gigaflops_per_second_at_median", run.prefill_flops * run.prefill_tokens_per_second.median /
                                               static_cast<double>(settings.prompt_tokens) / 1e9}}},
      {"decode",
       {{"decoded_tokens", settings.decode_tokens},
        {"context_tokens_first_step", settings.prompt_tokens + 1},
        {"context_tokens_last_step", settings.prompt_tokens + settings.decode_tokens},
        {"tokens_per_second", run.decode_tokens_per_second},
        {"bytes_per_token",
         {{"weights",
           {{"embedding", traffic.embedding},
            {"decoder_layers", traffic.decoder_layers},
            {"head", traffic.head},
            {"total", traffic.total()}}},
          {"kv_cache_mean", run.kv_bytes_per_decoded_token},
          {"total", efficiency.bytes_per_token}}},
        {"effective_gigabytes_per_second_at_median", efficiency.effective_gigabytes_per_second},
        {"fraction_of_bandwidth",
         {{"single_thread", efficiency.of_single_thread_bandwidth},
          {"all_threads", efficiency.of_all_threads_bandwidth}}}}},
  };
}

nlohmann::json bandwidth_json(const BandwidthReport& bandwidth, const Settings& settings) {
  auto entry = [](const ReadBandwidth& b) {
    return nlohmann::json{{"threads", b.threads}, {"gigabytes_per_second", b.gigabytes_per_second}};
  };
  return {{"buffer_bytes", bandwidth.buffer_bytes},
          {"reader", probe_reader},
          {"repetitions", settings.bandwidth_repetitions},
          {"single_thread", entry(bandwidth.single_thread)},
          {"all_threads", entry(bandwidth.all_threads)}};
}

nlohmann::json settings_json(const Settings& settings) {
  return {{"models", settings.models},
          {"formats", settings.formats},
          {"activations", settings.activations},
          {"prompt_tokens", settings.prompt_tokens},
          {"decode_tokens", settings.decode_tokens},
          {"warmup", settings.warmup},
          {"repetitions", settings.repetitions},
          {"bandwidth_buffer_mib", settings.bandwidth_mib},
          {"bandwidth_repetitions", settings.bandwidth_repetitions},
          {"seed", settings.seed},
          {"threads", settings.threads},
          {"quick", settings.quick}};
}

void print_table(const std::vector<ModelRun>& runs, const BandwidthReport& bandwidth, const Settings& settings) {
  auto rate = [](const Summary& s) { return fmt::format("{:.1f} [{:.1f}-{:.1f}]", s.median, s.min, s.max); };
  fmt::print(stderr, "\nmemory read bandwidth, {} MiB buffer, GB/s median [min-max] of {}:\n",
             bandwidth.buffer_bytes >> 20, settings.bandwidth_repetitions);
  for (const auto* b : {&bandwidth.single_thread, &bandwidth.all_threads}) {
    fmt::print(stderr, "  {} thread(s): {}\n", b->threads, rate(b->gigabytes_per_second));
  }
  fmt::print(stderr, "\ntokens/s median [min-max] of {} repetitions; decode bytes/token = weights + mean KV cache\n",
             settings.repetitions);
  fmt::print(stderr, "{:<9} {:<5} {:>26} {:>22} {:>14} {:>10} {:>8} {:>8}\n", "model", "fmt",
             fmt::format("prefill tok/s (P={})", settings.prompt_tokens),
             fmt::format("decode tok/s (N={})", settings.decode_tokens), "MB/token", "eff. GB/s",
             fmt::format("of {}T", bandwidth.single_thread.threads),
             fmt::format("of {}T", bandwidth.all_threads.threads));
  for (const auto& run : runs) {
    const DecodeEfficiency e = decode_efficiency(run, bandwidth);
    fmt::print(stderr, "{:<9} {:<5} {:>26} {:>22} {:>14} {:>10.2f} {:>7.0f}% {:>7.0f}%\n", run.name, run.format,
               rate(run.prefill_tokens_per_second), rate(run.decode_tokens_per_second),
               fmt::format("{:.2f}+{:.2f}", static_cast<double>(run.weight_traffic.total()) / 1e6,
                           run.kv_bytes_per_decoded_token / 1e6),
               e.effective_gigabytes_per_second, 100 * e.of_single_thread_bandwidth, 100 * e.of_all_threads_bandwidth);
  }
}

// stdout for "-"; otherwise the file, opened before any measurement so that
// a wrong path fails at once.
class ReportSink {
 public:
  explicit ReportSink(const std::string& out) : path_(out) {
    if (path_ == "-") return;
    file_.open(path_);
    if (!file_) dilemma::detail::fail("{}: cannot open the output file for writing", path_);
  }

  void write(const nlohmann::json& report) {
    const std::string text = report.dump(2) + "\n";
    if (path_ == "-") {
      fmt::print("{}", text);
      return;
    }
    file_ << text;
    if (!file_.flush()) dilemma::detail::fail("{}: could not write the benchmark report", path_);
  }

 private:
  std::string path_;
  std::ofstream file_;
};

void run(const Settings& settings, const std::string& command_line) {
  check_context_lengths(settings);
  ReportSink sink(settings.out);
  nlohmann::json report = {
      {"benchmark", "bench_model"},
      {"dilemma_version", dilemma::version_string},
      {"date_utc", fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr)))},
      {"command_line", command_line},
      {"machine", machine_info()},
      {"build", build_info()},
      {"settings", settings_json(settings)},
      {"load_average_at_start", load_average()},
  };

  const unsigned threads = hardware_threads();
  fmt::print(stderr, "measuring memory read bandwidth ({} MiB, 1 and {} threads)\n", settings.bandwidth_mib, threads);
  const BandwidthReport bandwidth =
      measure_read_bandwidth(settings.bandwidth_mib << 20, threads, 1, settings.bandwidth_repetitions);

  std::vector<ModelRun> runs;
  for (const auto& name : settings.models) {
    for (const auto& format : settings.formats) {
      fmt::print(stderr, "benchmarking {} in {}\n", name, format);
      runs.push_back(benchmark_model(name, format, settings));
    }
  }

  report["load_average_at_end"] = load_average();
  report["memory_read_bandwidth"] = bandwidth_json(bandwidth, settings);
  report["models"] = nlohmann::json::array();
  for (const auto& run : runs) report["models"].push_back(model_json(run, bandwidth, settings));
  sink.write(report);
  print_table(runs, bandwidth, settings);
}

// --quick shrinks every size the user did not set: a smoke run, not a measurement.
void apply_quick_defaults(const CLI::App& app, Settings& settings) {
  auto unless_given = [&app](const char* option, auto& field, auto value) {
    if (app.count(option) == 0) field = static_cast<std::remove_reference_t<decltype(field)>>(value);
  };
  unless_given("--prompt-tokens", settings.prompt_tokens, 32);
  unless_given("--decode-tokens", settings.decode_tokens, 8);
  unless_given("--repetitions", settings.repetitions, 3);
  unless_given("--bandwidth-mib", settings.bandwidth_mib, 512);
  unless_given("--bandwidth-repetitions", settings.bandwidth_repetitions, 3);
}

}  // namespace
}  // namespace dilemma::bench

int main(int argc, char** argv) {
  using dilemma::bench::Settings;
  Settings settings;
  CLI::App app{"Prefill and decode throughput of dilemma's OPT runtime in each format against measured memory bandwidth",
               "bench_model"};
  app.set_version_flag("--version", dilemma::version_string);
  app.add_option("--out", settings.out, "Write the JSON report here ('-': stdout)")->capture_default_str();
  app.add_option("--models", settings.models, "Models to run, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember({dilemma::bench::tiny_opt_name, dilemma::bench::opt_350m_name}))
      ->capture_default_str();
  app.add_option("--formats", settings.formats, "Formats to run every stage in, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember({"f32", "f16", "int8", "int4"}))
      ->capture_default_str();
  app.add_option("--activations", settings.activations,
                 "Activations of the integer formats' products: f32, bf16 (rounded to bfloat16), or int8 (rounded per "
                 "group, integer dot products)")
      ->check(CLI::IsMember(dilemma::quant::activation_precision_names()))
      ->capture_default_str();
  app.add_option("--tiny-opt-dir", settings.tiny_opt_dir, "The tiny-opt checkpoint directory")->capture_default_str();
  app.add_option("-P,--prompt-tokens", settings.prompt_tokens, "Prompt length of each prefill")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("-N,--decode-tokens", settings.decode_tokens, "Tokens decoded one at a time after each prefill")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--warmup", settings.warmup, "Untimed repetitions before the timed ones")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--repetitions", settings.repetitions, "Timed repetitions of each model measurement")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--bandwidth-mib", settings.bandwidth_mib,
                 "Size of the bandwidth buffer; keep it well above the last-level cache")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--bandwidth-repetitions", settings.bandwidth_repetitions, "Timed passes per thread count")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--threads", settings.threads, "Threads for the matrix products, the calling one included")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--seed", settings.seed, "Seed of the random OPT-350m weights and of the token ids")
      ->capture_default_str();
  app.add_flag("--quick", settings.quick,
               "Smoke run: P=32, N=8, 3 repetitions, 3 passes over 512 MiB, for every option not set explicitly");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (settings.quick) dilemma::bench::apply_quick_defaults(app, settings);

  std::string command_line = argv[0];
  for (int i = 1; i < argc; ++i) command_line += fmt::format(" {}", argv[i]);
  try {
    dilemma::bench::run(settings, command_line);
  } catch (const dilemma::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "internal error: {}\n", e.what());
    return 3;
  }
  return 0;
}
