// bench_kernels: throughput of dilemma's quantized matrix kernels on the
// weight shapes of OPT-350m, for every format and thread count, set against
// the memory read bandwidth measured in the same run (docs/kernels.md).
//
// What is measured, and why:
//   * GEMV (decode) reads every weight once per token, so its ceiling is the
//     memory bandwidth. The timed loop cycles through copies of the weight that
//     together exceed the last-level cache many times over, as a model's
//     layers do, so that every product streams its weights from DRAM; the
//     report gives the weight bytes read per second and that as a fraction of
//     the streaming-read bandwidth with the same number of threads. It also
//     gives the GEMV against a plain read of the same copies, matrix by
//     matrix: separate matrices read slower than the one long buffer of the
//     bandwidth probe even without arithmetic, and the second ratio tells the
//     kernel's share of the gap from the layout's.
//   * GEMM (prefill) is compute-bound; the report gives GFLOP/s (2·T·rows·cols
//     per product) and, for comparison with GEMV, the weight bytes per second.
//   * The group-size sweep weighs what a group size costs (bits per weight,
//     GEMV time) against what it buys (round-to-nearest error on random and
//     on trained weights): the evidence for QuantScheme's default.
//
// A hand-written harness for the same reasons as bench_model: the numbers that
// matter are ratios between measurements of one run, reported as one JSON
// document.
//
// Exit codes: 0 success, 1 bad input (a dilemma::Error), CLI11's codes for
// command-line mistakes, 3 for anything unexpected.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/io/dtype.hpp"
#include "dilemma/io/safetensors.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/stage.hpp"
#include "dilemma/parallel/thread_pool.hpp"
#include "dilemma/quant/activations.hpp"
#include "dilemma/quant/matmul.hpp"
#include "dilemma/quant/quantized_matrix.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"
#include "dilemma/version.hpp"
#include "machine_info.hpp"
#include "read_patterns.hpp"
#include "summary.hpp"

namespace dilemma::bench {
namespace {

using Clock = std::chrono::steady_clock;
using quant::ActivationPrecision;
using quant::Format;
using quant::KernelIsa;
using quant::QuantizedMatrix;
using quant::QuantScheme;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

struct Shape {
  std::string role;
  Eigen::Index rows;  // output features
  Eigen::Index cols;  // input features
};

// OPT-350m's linear layers as [out × in]; the head is the tied embedding
// applied to the 512-wide projected hidden state.
const std::vector<Shape> opt_350m_shapes = {
    {"q/k/v/out_proj", 1024, 1024}, {"fc1", 4096, 1024}, {"fc2", 1024, 4096}, {"lm_head", 50272, 512}};
const std::vector<Shape> quick_shapes = {{"quick-square", 256, 512}, {"quick-wide", 64, 2048}};

struct Settings {
  std::string out = "-";
  std::vector<std::string> formats{"f32", "f16", "int8", "int4"};
  std::vector<unsigned> threads{1, 2};
  std::vector<std::string> kernels{"auto"};
  std::vector<std::string> activations{"f32", "int8"};
  std::int64_t group_size = QuantScheme{}.group_size;
  bool asymmetric = false;
  Eigen::Index prefill_tokens = 128;
  std::size_t working_set_mib = 256;
  int repetitions = 11;
  bool group_sweep = true;
  Eigen::Index activation_error_tokens = 256;
  std::string tiny_opt_dir = build::tiny_opt_dir;
  std::uint32_t seed = 1;
  bool quick = false;
};

// ---------------------------------------------------------------- bandwidth

// A volatile store keeps the compiler from discarding sums nothing else reads.
volatile float read_sink = 0;

// Seconds for the pool's threads to read `buffer` once in `pattern`, in 4 MiB
// chunks handed out like the kernels' rows.
double timed_read(std::span<const float> buffer, parallel::ThreadPool& pool, ReadPattern pattern) {
  constexpr std::size_t chunk = (std::size_t{4} << 20) / sizeof(float);
  const std::size_t chunks = (buffer.size() + chunk - 1) / chunk;
  std::vector<float> partial(chunks);
  const auto start = Clock::now();
  pool.parallel_for(chunks, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t first = i * chunk;
      const auto length = static_cast<Eigen::Index>(std::min(chunk, buffer.size() - first));
      partial[i] = read_sum(buffer.subspan(first, static_cast<std::size_t>(length)), pattern);
    }
  });
  const double seconds = seconds_since(start);
  read_sink = std::accumulate(partial.begin(), partial.end(), 0.0f);
  return seconds;
}

// Bytes/s of reading `buffer` once: the faster of the read patterns (read_patterns.hpp).
double fastest_read_rate(std::span<const float> buffer, parallel::ThreadPool& pool) {
  double fastest = 0;
  for (ReadPattern pattern : all_read_patterns) {
    fastest = std::max(fastest, static_cast<double>(buffer.size_bytes()) / timed_read(buffer, pool, pattern));
  }
  return fastest;
}

// Σ of `bytes` as 64-bit words: a linear read that keeps up with DRAM. Not
// read_sum, which adds floats: integer codes read as floats are denormals and
// NaNs, whose arithmetic some CPUs slow down, and the read would time that.
std::uint64_t word_sum(std::span<const std::byte> bytes) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i + sizeof(sum) <= bytes.size(); i += sizeof(sum)) {
    std::uint64_t word;
    std::memcpy(&word, bytes.data() + i, sizeof(word));
    sum += word;
  }
  return sum;
}

// Bytes/s of reading the storage of every copy once, one matrix after the
// other and each split into one contiguous share per thread, as a GEMV pass
// reads them (one pool call per matrix, like the kernels), without arithmetic.
double copies_read_rate(const std::vector<QuantizedMatrix>& copies, parallel::ThreadPool& pool) {
  std::vector<std::uint64_t> partial(pool.size());
  std::size_t bytes = 0;
  const auto start = Clock::now();
  for (const auto& q : copies) {
    const std::span<const std::byte> storage = q.storage();
    const std::size_t share = (storage.size() + pool.size() - 1) / pool.size();
    pool.parallel_for(pool.size(), 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t t = begin; t < end; ++t) {
        const std::size_t first = std::min(storage.size(), t * share);
        partial[t] += word_sum(storage.subspan(first, std::min(share, storage.size() - first)));
      }
    });
    bytes += storage.size();
  }
  const double seconds = seconds_since(start);
  read_sink = static_cast<float>(std::accumulate(partial.begin(), partial.end(), std::uint64_t{0}));
  return static_cast<double>(bytes) / seconds;
}

std::vector<double> read_bandwidth_samples(std::span<const float> buffer, parallel::ThreadPool& pool, int repetitions) {
  // Warm-up: faults nothing in (the buffer is filled) but wakes the workers.
  timed_read(buffer, pool, ReadPattern::linear);
  std::vector<double> rates;
  for (int i = 0; i < repetitions; ++i) rates.push_back(fastest_read_rate(buffer, pool) / 1e9);
  return rates;
}

// One thread reading `buffer` as blocks of `rows` consecutive rows of
// `row_bytes`, 64 bytes of each row in turn: the access pattern of a GEMV that
// takes `rows` rows at once to share each load of x, without its arithmetic.
// Against rows = 1 (one linear stream) it shows what interleaving alone costs
// (docs/performance.md, "One row at a time").
double interleaved_read_rate(std::span<const float> buffer, std::size_t rows, std::size_t row_bytes) {
  using Line = Eigen::Array<float, 16, 1>;  // 64 bytes
  const std::size_t row_floats = row_bytes / sizeof(float), block = rows * row_floats;
  const std::size_t blocks = buffer.size() / block;
  Line sum = Line::Zero();
  const auto start = Clock::now();
  for (std::size_t b = 0; b < blocks; ++b) {
    const float* first = buffer.data() + b * block;
    for (std::size_t c = 0; c < row_floats; c += Line::SizeAtCompileTime) {
      for (std::size_t r = 0; r < rows; ++r) sum += Eigen::Map<const Line>(first + r * row_floats + c);
    }
  }
  const double seconds = seconds_since(start);
  read_sink = sum.sum();
  return static_cast<double>(blocks * block * sizeof(float)) / seconds / 1e9;
}

struct InterleavedRead {
  std::size_t rows = 1, row_bytes = 0;
  Summary gigabytes_per_second;
};

std::vector<InterleavedRead> measure_interleaved_reads(std::span<const float> buffer, int repetitions) {
  std::vector<InterleavedRead> reads;
  for (const auto& [rows, row_bytes] : {std::pair<std::size_t, std::size_t>{1, 1024}, {2, 1024}, {8, 1024},
                                        {1, 16384}, {8, 16384}}) {
    std::vector<double> rates;
    for (int i = 0; i < repetitions; ++i) rates.push_back(interleaved_read_rate(buffer, rows, row_bytes));
    reads.push_back({rows, row_bytes, summarize(std::move(rates))});
  }
  return reads;
}

// ---------------------------------------------------------------- kernels

struct Pools {
  std::map<unsigned, std::unique_ptr<parallel::ThreadPool>> by_threads;
  parallel::ThreadPool& operator[](unsigned threads) {
    auto& pool = by_threads[threads];
    if (!pool) pool = std::make_unique<parallel::ThreadPool>(threads);
    return *pool;
  }
};

// Enough copies of `q` that one pass over them reads `working_set_bytes`,
// at least two, so that consecutive products never find their weights in cache.
std::vector<QuantizedMatrix> cold_copies(const QuantizedMatrix& q, std::size_t working_set_bytes) {
  const std::size_t count = std::max<std::size_t>(2, (working_set_bytes + q.bytes() - 1) / q.bytes());
  return std::vector<QuantizedMatrix>(count, q);
}

// A kernel's timings, each paired with a bandwidth probe run just before it
// with the same threads: on a shared machine the bandwidth available drifts
// with other processes' load, and a ratio of neighbouring samples cancels most
// of that drift where a ratio to a run-wide median would not.
struct Timing {
  Summary seconds;                     // per product
  Summary fraction_of_read_bandwidth;  // weight bytes/s over the neighbouring probe's bytes/s
  // GEMV only: weight bytes/s over a plain read of the same copies just before (copies_read_rate)
  std::optional<Summary> fraction_of_copies_read;
};

// `copies`: when given, each repetition also reads them plainly (copies_read_rate) for the second ratio.
template <typename Pass>
Timing time_paired(Pass&& pass, std::size_t passes_per_sample, std::size_t weight_bytes,
                   std::span<const float> bandwidth_buffer, parallel::ThreadPool& pool, int repetitions,
                   const std::vector<QuantizedMatrix>* copies = nullptr) {
  pass();  // warm-up
  std::vector<double> seconds;
  std::vector<double> fractions;
  std::vector<double> copies_fractions;
  for (int rep = 0; rep < repetitions; ++rep) {
    const double read_rate = fastest_read_rate(bandwidth_buffer, pool);
    const double copies_rate = copies != nullptr ? copies_read_rate(*copies, pool) : 0.0;
    const auto start = Clock::now();
    pass();
    const double per_product = seconds_since(start) / static_cast<double>(passes_per_sample);
    seconds.push_back(per_product);
    const double weight_rate = static_cast<double>(weight_bytes) / per_product;
    fractions.push_back(weight_rate / read_rate);
    if (copies != nullptr) copies_fractions.push_back(weight_rate / copies_rate);
  }
  Timing timing{summarize(std::move(seconds)), summarize(std::move(fractions)), std::nullopt};
  if (copies != nullptr) timing.fraction_of_copies_read = summarize(std::move(copies_fractions));
  return timing;
}

// GEMV: one sample is a pass over all copies.
Timing time_gemv(const std::vector<QuantizedMatrix>& copies, const quant::KernelContext& context,
                 std::span<const float> bandwidth_buffer, int repetitions) {
  const Eigen::Index cols = copies.front().cols();
  const model::Matrix x = model::Matrix::Random(1, cols);
  std::vector<float> y(static_cast<std::size_t>(copies.front().rows()));
  const std::span<const float> input(x.data(), static_cast<std::size_t>(cols));
  const auto pass = [&] {
    for (const auto& q : copies) quant::gemv(q, input, y, context);
  };
  const Timing timing =
      time_paired(pass, copies.size(), copies.front().bytes(), bandwidth_buffer, *context.pool, repetitions, &copies);
  read_sink = y.front();
  return timing;
}

// GEMM of `tokens` rows: one sample is one product, each with the next copy,
// so that its weights come from memory as in a prefill.
Timing time_gemm(const std::vector<QuantizedMatrix>& copies, Eigen::Index tokens, const quant::KernelContext& context,
                 std::span<const float> bandwidth_buffer, int repetitions) {
  const model::Matrix x = model::Matrix::Random(tokens, copies.front().cols());
  model::Matrix y(tokens, copies.front().rows());
  std::size_t next = 0;
  const auto pass = [&] { quant::gemm(copies[next++ % copies.size()], x, y, context); };
  const Timing timing = time_paired(pass, 1, copies.front().bytes(), bandwidth_buffer, *context.pool, repetitions);
  read_sink = y(0, 0);
  return timing;
}

model::Matrix random_weights(Eigen::Index rows, Eigen::Index cols, std::uint32_t seed) {
  // Gaussian with 1% outliers 20× larger, the shape of trained transformer weights.
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  model::Matrix w(rows, cols);
  for (float& value : w.reshaped()) {
    value = normal(rng);
    if (uniform(rng) < 0.01f) value *= 20.0f;
  }
  return w;
}

struct Measurement {
  std::string kind;  // "gemv" or "gemm"
  Shape shape;
  Format format;
  quant::ActivationPrecision activations;
  KernelIsa isa;
  unsigned threads;
  std::size_t bytes;  // weights + scales + offsets
  Eigen::Index tokens;
  Timing timing;

  double weight_gigabytes_per_second() const { return static_cast<double>(bytes) / timing.seconds.median / 1e9; }
  double gigaflops() const {
    return 2.0 * static_cast<double>(tokens * shape.rows * shape.cols) / timing.seconds.median / 1e9;
  }
};

// ---------------------------------------------------------------- group sweep

struct SweepPoint {
  Format format;
  QuantScheme scheme;
  double bits_per_weight;
  double relative_error_random;   // ‖W − Ŵ‖²_F / ‖W‖²_F
  double relative_error_trained;  // the same over tiny-opt's fc2 weights, or -1 without them
  Timing gemv;                    // 1 thread, fc1 shape
};

double relative_error(const std::vector<model::Matrix>& weights, Format format, const QuantScheme& scheme) {
  double error = 0;
  double norm = 0;
  for (const auto& w : weights) {
    const model::Matrix restored = QuantizedMatrix::quantize(w, format, scheme).dequantize();
    error += (w - restored).cast<double>().squaredNorm();
    norm += w.cast<double>().squaredNorm();
  }
  return error / norm;
}

// tiny-opt's fc2 weights [192 × 768]: trained weights whose width every swept
// group size divides (its other matrices are 96 or 192 wide).
std::vector<model::Matrix> trained_weights(const std::string& dir) {
  const auto path = std::filesystem::path(dir) / "model.safetensors";
  if (!std::filesystem::exists(path)) return {};
  const auto file = io::SafetensorsFile::open(path);
  std::vector<model::Matrix> weights;
  for (int layer = 0;; ++layer) {
    const std::string name = fmt::format("model.decoder.layers.{}.fc2.weight", layer);
    const auto names = file.tensor_names();
    if (std::find(names.begin(), names.end(), name) == names.end()) break;
    const io::TensorView view = file.tensor(name);
    model::Matrix w(view.shape[0], view.shape[1]);
    io::convert_to_f32(view.dtype, view.data, std::span(w.data(), static_cast<std::size_t>(w.size())));
    weights.push_back(std::move(w));
  }
  return weights;
}

// ---------------------------------------------------------------- activation rounding

// How long rounding one activation vector to int8 takes: a product with int8
// activations does it once per GEMV, and once per token in a GEMM, before any
// weight is read. Per call, for the reference (quant::quantize_activations)
// and for each kernel set's version of it, on vectors as long as the inputs of
// OPT-350m's lm_head (512), q/k/v/out and fc1 (1024), and fc2 (4096).
struct RoundingTime {
  std::string rounding;  // "reference" or a kernel set
  Eigen::Index columns;
  Summary nanoseconds;  // per call
};

std::vector<RoundingTime> time_activation_rounding(const std::vector<KernelIsa>& isas, Eigen::Index group_size,
                                                   int repetitions) {
  constexpr int calls_per_sample = 1000;
  std::vector<RoundingTime> times;
  for (const Eigen::Index columns : {512, 1024, 4096}) {
    if (columns % group_size != 0) continue;
    const model::Matrix x = random_weights(1, columns, 11);
    const std::span<const float> values(x.data(), static_cast<std::size_t>(columns));
    const auto time = [&](std::string rounding, const auto& round_once) {
      std::vector<double> samples;
      for (int r = 0; r < repetitions; ++r) {
        const auto start = Clock::now();
        for (int call = 0; call < calls_per_sample; ++call) read_sink = static_cast<float>(round_once().sums[0]);
        samples.push_back(seconds_since(start) / calls_per_sample * 1e9);
      }
      times.push_back({std::move(rounding), columns, summarize(std::move(samples))});
    };
    time("reference", [&] { return quant::quantize_activations(values, group_size); });
    for (KernelIsa isa : isas) {
      time(std::string(quant::kernel_isa_name(isa)),
           [&] { return quant::detail::quantize_activations_with(isa, values, group_size); });
    }
  }
  return times;
}

// ---------------------------------------------------------------- activation error

// How far bfloat16 or int8 activations move a layer's output, on the
// activations tiny-opt really produces: the inputs of every decoder layer's
// q_proj, fc1 and fc2 on the start of the first SQuAD dev paragraphs. Norms
// are summed over layers.
struct ActivationError {
  std::string matrix;  // q_proj, fc1 or fc2
  Format format;
  ActivationPrecision activations;  // bf16 or int8
  double squared_reference = 0;   // Σ ‖W·x‖²
  double squared_quantized = 0;   // Σ ‖Ŵ·x‖²
  double squared_weight = 0;      // Σ ‖Ŵ·x − W·x‖²: weight rounding alone
  double squared_activation = 0;  // Σ ‖Ŵ·x̂ − Ŵ·x‖²: activation rounding alone
  double squared_total = 0;       // Σ ‖Ŵ·x̂ − W·x‖²
};

// The inputs of one decoder layer's q_proj, fc1 and fc2, computed with the
// layer's own parts in the order DecoderLayer applies them.
std::array<model::Matrix, 3> layer_inputs(const model::DecoderLayer& layer, const model::Matrix& input) {
  model::Matrix attention_in = input;
  if (layer.layer_norm_before) layer.self_attn_layer_norm.apply_in_place(attention_in);
  model::KvCache cache;
  model::Matrix hidden = input + layer.self_attn(attention_in, cache);
  if (!layer.layer_norm_before) layer.self_attn_layer_norm.apply_in_place(hidden);
  model::Matrix ffn_in = hidden;
  if (layer.layer_norm_before) layer.final_layer_norm.apply_in_place(ffn_in);
  model::Matrix inner = ffn_in * layer.fc1.weight.dequantize().transpose();
  inner.rowwise() += layer.fc1.bias;
  model::detail::activate_in_place(inner, layer.activation);
  return {attention_in, ffn_in, inner};
}

std::vector<ActivationError> activation_errors(const std::string& tiny_opt_dir, const QuantScheme& scheme,
                                               Eigen::Index max_tokens) {
  const std::filesystem::path dir = tiny_opt_dir;
  const auto squad = dir.parent_path().parent_path() / "data" / "squad" / "dev-v1.1.json";
  if (!std::filesystem::exists(dir / "model.safetensors") || !std::filesystem::exists(squad)) return {};
  const auto checkpoint = model::OptCheckpoint::open(dir);
  const auto tokenizer = text::BpeTokenizer::load(dir);
  std::vector<TokenId> ids;
  for (const auto& paragraph : eval::load_squad(squad)) {
    const auto more = tokenizer.encode(paragraph.context);
    ids.insert(ids.end(), more.begin(), more.end());
    if (static_cast<Eigen::Index>(ids.size()) >= max_tokens) break;
  }
  ids.resize(static_cast<std::size_t>(std::min<Eigen::Index>(
      {max_tokens, static_cast<Eigen::Index>(ids.size()), checkpoint.config().max_position_embeddings})));

  const std::array<const char*, 3> names = {"q_proj", "fc1", "fc2"};
  std::vector<ActivationError> errors;
  for (const char* name : names) {
    for (Format format : {Format::int8, Format::int4}) {
      for (ActivationPrecision activations : {ActivationPrecision::bf16, ActivationPrecision::int8}) {
        errors.push_back({name, format, activations});
      }
    }
  }
  model::StageState embedding_state;
  model::Matrix hidden = checkpoint.load_stage(0).run(ids, embedding_state);
  for (std::int64_t layer_index = 0; layer_index < checkpoint.config().num_hidden_layers; ++layer_index) {
    const model::Stage stage = checkpoint.load_stage(static_cast<std::size_t>(layer_index) + 1);
    const auto& layer = std::get<model::DecoderLayer>(stage.weights());
    const auto inputs = layer_inputs(layer, hidden);
    const std::array<model::Matrix, 3> weights = {layer.self_attn.q_proj.weight.dequantize(),
                                                  layer.fc1.weight.dequantize(), layer.fc2.weight.dequantize()};
    for (ActivationError& e : errors) {
      const auto which = static_cast<std::size_t>(std::find(names.begin(), names.end(), e.matrix) - names.begin());
      const model::Matrix& x = inputs[which];
      const model::Matrix reference = x * weights[which].transpose();
      const auto q = QuantizedMatrix::quantize(weights[which], e.format, scheme, e.matrix);
      const model::Matrix float_activations = quant::gemm(q, x, {nullptr, quant::best_kernel_isa()});
      const model::Matrix rounded_activations = quant::gemm(q, x, {nullptr, quant::best_kernel_isa(), e.activations});
      e.squared_reference += reference.cast<double>().squaredNorm();
      e.squared_quantized += float_activations.cast<double>().squaredNorm();
      e.squared_weight += (float_activations - reference).cast<double>().squaredNorm();
      e.squared_activation += (rounded_activations - float_activations).cast<double>().squaredNorm();
      e.squared_total += (rounded_activations - reference).cast<double>().squaredNorm();
    }
    model::StageState state;
    hidden = stage.run(hidden, state);
  }
  return errors;
}

// ---------------------------------------------------------------- report

void to_json(nlohmann::json& json, const Timing& timing) {
  json = {{"seconds", timing.seconds}, {"fraction_of_read_bandwidth", timing.fraction_of_read_bandwidth}};
  if (timing.fraction_of_copies_read) json["fraction_of_copies_read"] = *timing.fraction_of_copies_read;
}

nlohmann::json measurement_json(const Measurement& m) {
  nlohmann::json j = m.timing;  // its times and fractions of the bandwidth, as to_json above writes them
  j.update(nlohmann::json{{"kind", m.kind},
                          {"role", m.shape.role},
                          {"rows", m.shape.rows},
                          {"cols", m.shape.cols},
                          {"format", quant::format_name(m.format)},
                          {"activations", quant::activation_precision_name(m.activations)},
                          {"kernels", quant::kernel_isa_name(m.isa)},
                          {"threads", m.threads},
                          {"weight_bytes", m.bytes},
                          {"tokens", m.tokens},
                          {"weight_gigabytes_per_second_at_median", m.weight_gigabytes_per_second()}});
  if (m.kind == "gemm") j["gigaflops_per_second_at_median"] = m.gigaflops();
  return j;
}

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

std::string summary_text(const Summary& s, double scale, const char* format) {
  return fmt::format(fmt::runtime(format), s.median * scale, s.min * scale, s.max * scale);
}

void print_tables(const std::vector<Measurement>& results, const std::map<unsigned, Summary>& bandwidth,
                  const std::vector<SweepPoint>& sweep, const std::vector<ActivationError>& activation_errors,
                  const Settings& settings) {
  fmt::print(stderr, "\nmemory read bandwidth, GB/s median [min-max] of the probes at the start and end of the run:\n");
  for (const auto& [threads, s] : bandwidth) {
    fmt::print(stderr, "  {} thread(s): {}\n", threads, summary_text(s, 1, "{:.1f} [{:.1f}-{:.1f}]"));
  }
  for (const char* kind : {"gemv", "gemm"}) {
    const bool gemv = std::string_view(kind) == "gemv";
    fmt::print(stderr,
               "\n{} — median [min-max] of {} repetitions{}; of BW: weight bytes/s over the read bandwidth "
               "probed just before each repetition (median of the ratios){}\n",
               gemv ? "GEMV y = W·x (decode), weights streamed from DRAM" : "GEMM Y = X·Wᵀ (prefill)",
               settings.repetitions, gemv ? "" : fmt::format(", {} tokens", settings.prefill_tokens),
               gemv ? "; of read: over a plain read of the same copies just before" : "");
    fmt::print(stderr, "{:<16} {:>12} {:<6} {:<4} {:<7} {:>3} {:>9} {:>26} {:>9} {:>8}{}\n", "role", "shape", "format",
               "act", "kernels", "thr", "MB", gemv ? "µs" : "ms", "GB/s", "of BW", gemv ? "  of read" : "   GFLOP/s");
    for (const auto& m : results) {
      if (m.kind != kind) continue;
      fmt::print(
          stderr, "{:<16} {:>12} {:<6} {:<4} {:<7} {:>3} {:>9.2f} {:>26} {:>9.1f} {:>7.0f}%{}\n", m.shape.role,
          fmt::format("{}×{}", m.shape.rows, m.shape.cols), quant::format_name(m.format),
          quant::activation_precision_name(m.activations), quant::kernel_isa_name(m.isa), m.threads,
          static_cast<double>(m.bytes) / 1e6,
          summary_text(m.timing.seconds, gemv ? 1e6 : 1e3, gemv ? "{:.1f} [{:.1f}-{:.1f}]" : "{:.2f} [{:.2f}-{:.2f}]"),
          m.weight_gigabytes_per_second(), 100 * m.timing.fraction_of_read_bandwidth.median,
          m.timing.fraction_of_copies_read ? fmt::format(" {:>8.0f}%", 100 * m.timing.fraction_of_copies_read->median)
                                           : fmt::format(" {:>9.1f}", m.gigaflops()));
    }
  }
  if (!activation_errors.empty()) {
    fmt::print(stderr,
               "\nbf16 and int8 activations on tiny-opt ({} tokens of SQuAD dev, all layers): relative output error "
               "‖·‖/‖W·x‖\n",
               settings.activation_error_tokens);
    fmt::print(stderr, "{:<7} {:<6} {:<11} {:>16} {:>20} {:>16}\n", "matrix", "format", "activations",
               "weights only", "activations only", "both");
    for (const auto& e : activation_errors) {
      fmt::print(stderr, "{:<7} {:<6} {:<11} {:>16.3e} {:>20.3e} {:>16.3e}\n", e.matrix, quant::format_name(e.format),
                 quant::activation_precision_name(e.activations),
                 std::sqrt(e.squared_weight / e.squared_reference),
                 std::sqrt(e.squared_activation / e.squared_quantized),
                 std::sqrt(e.squared_total / e.squared_reference));
    }
  }
  if (sweep.empty()) return;
  fmt::print(stderr, "\ngroup size sweep: round-to-nearest error ‖W−Ŵ‖²/‖W‖² and GEMV time ({}, 1 thread)\n",
             settings.quick ? "quick-square shape" : "fc1 shape 4096×1024");
  fmt::print(stderr, "{:<6} {:>5} {:>5} {:>13} {:>13} {:>24} {:>8}\n", "format", "group", "bits", "err random",
             "err trained", "GEMV µs", "of BW");
  for (const auto& p : sweep) {
    fmt::print(stderr, "{:<6} {:>5} {:>5.2f} {:>13.3e} {:>13.3e} {:>24} {:>7.0f}%\n",
               fmt::format("{}{}", quant::format_name(p.format), p.scheme.int4_asymmetric ? "a" : ""),
               p.scheme.group_size, p.bits_per_weight, p.relative_error_random, p.relative_error_trained,
               summary_text(p.gemv.seconds, 1e6, "{:.1f} [{:.1f}-{:.1f}]"),
               100 * p.gemv.fraction_of_read_bandwidth.median);
  }
}

// ---------------------------------------------------------------- run

void run(const Settings& settings, const std::string& command_line) {
  ReportSink sink(settings.out);
  std::vector<Format> formats;
  for (const auto& name : settings.formats) formats.push_back(quant::parse_format(name, "--formats"));
  std::vector<KernelIsa> isas;
  for (const auto& name : settings.kernels) isas.push_back(quant::kernel_isa_from_setting(name));
  std::vector<ActivationPrecision> activation_modes;
  for (const auto& name : settings.activations) {
    activation_modes.push_back(quant::parse_activation_precision(name, "--activations"));
  }
  const QuantScheme scheme{.group_size = settings.group_size, .int4_asymmetric = settings.asymmetric};
  const std::size_t working_set = settings.working_set_mib << 20;
  const auto& shapes = settings.quick ? quick_shapes : opt_350m_shapes;

  nlohmann::json report = {
      {"benchmark", "bench_kernels"},
      {"dilemma_version", dilemma::version_string},
      {"date_utc", fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr)))},
      {"command_line", command_line},
      {"machine", machine_info()},
      {"build", build_info()},
      {"settings",
       {{"formats", settings.formats},
        {"threads", settings.threads},
        {"kernels", settings.kernels},
        {"activations", settings.activations},
        {"group_size", settings.group_size},
        {"int4_asymmetric", settings.asymmetric},
        {"prefill_tokens", settings.prefill_tokens},
        {"working_set_mib", settings.working_set_mib},
        {"repetitions", settings.repetitions},
        {"activation_error_tokens", settings.activation_error_tokens},
        {"quick", settings.quick}}},
      {"available_kernels", nlohmann::json::array()},
      {"load_average_at_start", load_average()},
  };
  for (KernelIsa isa : quant::available_kernel_isas())
    report["available_kernels"].push_back(quant::kernel_isa_name(isa));

  Pools pools;
  const std::vector<float> bandwidth_buffer(working_set / sizeof(float), 1.0f);
  std::map<unsigned, std::vector<double>> bandwidth_samples;
  const auto probe_bandwidth = [&] {
    for (unsigned threads : settings.threads) {
      fmt::print(stderr, "memory read bandwidth, {} thread(s)\n", threads);
      auto samples = read_bandwidth_samples(bandwidth_buffer, pools[threads], settings.repetitions);
      auto& all = bandwidth_samples[threads];
      all.insert(all.end(), samples.begin(), samples.end());
    }
  };
  probe_bandwidth();
  fmt::print(stderr, "interleaved row reads, 1 thread\n");
  const std::vector<InterleavedRead> interleaved = measure_interleaved_reads(bandwidth_buffer, settings.repetitions);

  std::vector<Measurement> results;
  std::uint32_t seed = settings.seed;
  for (const Shape& shape : shapes) {
    const model::Matrix w = random_weights(shape.rows, shape.cols, seed++);
    for (Format format : formats) {
      const auto copies = cold_copies(QuantizedMatrix::quantize(w, format, scheme, shape.role), working_set);
      for (ActivationPrecision activations : activation_modes) {
        // Float weights always meet float activations.
        if (activations != ActivationPrecision::f32 && !quant::is_integer_format(format)) continue;
        for (KernelIsa isa : isas) {
          for (unsigned threads : settings.threads) {
            fmt::print(stderr, "{} {}×{} {} activations {} {} {} thread(s)\n", shape.role, shape.rows, shape.cols,
                       quant::format_name(format), quant::activation_precision_name(activations),
                       quant::kernel_isa_name(isa), threads);
            const quant::KernelContext context{&pools[threads], isa, activations};
            results.push_back({"gemv", shape, format, activations, isa, threads, copies.front().bytes(), 1,
                               time_gemv(copies, context, bandwidth_buffer, settings.repetitions)});
            results.push_back(
                {"gemm", shape, format, activations, isa, threads, copies.front().bytes(), settings.prefill_tokens,
                 time_gemm(copies, settings.prefill_tokens, context, bandwidth_buffer, settings.repetitions)});
          }
        }
      }
    }
  }

  std::vector<SweepPoint> sweep;
  if (settings.group_sweep) {
    fmt::print(stderr, "group size sweep\n");
    const Shape& fc1 = settings.quick ? quick_shapes.front() : opt_350m_shapes[1];
    const model::Matrix w = random_weights(fc1.rows, fc1.cols, seed++);
    const std::vector<model::Matrix> random_sample = {w};
    const auto trained = trained_weights(settings.tiny_opt_dir);
    for (const auto& [format, asymmetric] :
         {std::pair{Format::int8, false}, std::pair{Format::int4, false}, std::pair{Format::int4, true}}) {
      for (std::int64_t group : {32, 64, 128}) {
        const QuantScheme point{.group_size = group, .int4_asymmetric = asymmetric};
        const auto copies = cold_copies(QuantizedMatrix::quantize(w, format, point, fc1.role), working_set);
        sweep.push_back({format, point, quant::bits_per_weight(format, point),
                         relative_error(random_sample, format, point),
                         trained.empty() ? -1.0 : relative_error(trained, format, point),
                         time_gemv(copies, {&pools[1], isas.front()}, bandwidth_buffer, settings.repetitions)});
      }
    }
  }

  std::vector<RoundingTime> rounding;
  if (std::ranges::find(activation_modes, ActivationPrecision::int8) != activation_modes.end()) {
    fmt::print(stderr, "rounding activations to int8\n");
    rounding = time_activation_rounding(isas, settings.group_size, settings.repetitions);
  }

  std::vector<ActivationError> errors;
  if (settings.activation_error_tokens > 0) {
    fmt::print(stderr, "bf16- and int8-activation error on tiny-opt\n");
    errors = activation_errors(settings.tiny_opt_dir, scheme, settings.activation_error_tokens);
  }

  probe_bandwidth();
  std::map<unsigned, Summary> bandwidth;
  for (auto& [threads, samples] : bandwidth_samples) bandwidth[threads] = summarize(samples);

  report["load_average_at_end"] = load_average();
  report["memory_read_bandwidth"] = nlohmann::json::array();
  for (const auto& [threads, s] : bandwidth) {
    report["memory_read_bandwidth"].push_back(
        {{"threads", threads},
         {"buffer_bytes", bandwidth_buffer.size() * sizeof(float)},
         {"reader", probe_reader},
         {"gigabytes_per_second", s}});
  }
  report["interleaved_read_bandwidth"] = nlohmann::json::array();
  for (const auto& read : interleaved) {
    report["interleaved_read_bandwidth"].push_back({{"threads", 1},
                                                    {"rows", read.rows},
                                                    {"row_bytes", read.row_bytes},
                                                    {"gigabytes_per_second", read.gigabytes_per_second}});
  }
  report["results"] = nlohmann::json::array();
  for (const auto& m : results) report["results"].push_back(measurement_json(m));
  report["group_size_sweep"] = nlohmann::json::array();
  for (const auto& p : sweep) {
    report["group_size_sweep"].push_back(
        {{"format", quant::format_name(p.format)},
         {"group_size", p.scheme.group_size},
         {"int4_asymmetric", p.scheme.int4_asymmetric},
         {"bits_per_weight", p.bits_per_weight},
         {"relative_error_random_weights", p.relative_error_random},
         {"relative_error_tiny_opt_fc2",
          p.relative_error_trained < 0 ? nlohmann::json(nullptr) : nlohmann::json(p.relative_error_trained)},
         {"gemv_one_thread", p.gemv}});
  }
  report["int8_activation_rounding"] = nlohmann::json::array();
  for (const auto& t : rounding) {
    report["int8_activation_rounding"].push_back({{"rounding", t.rounding},
                                                  {"columns", t.columns},
                                                  {"group_size", settings.group_size},
                                                  {"nanoseconds_per_call", t.nanoseconds}});
  }
  report["activation_error_tiny_opt"] = nlohmann::json::array();
  for (const auto& e : errors) {
    report["activation_error_tiny_opt"].push_back(
        {{"matrix", e.matrix},
         {"format", quant::format_name(e.format)},
         {"activations", quant::activation_precision_name(e.activations)},
         {"relative_error_weights_only", std::sqrt(e.squared_weight / e.squared_reference)},
         {"relative_error_activations_only", std::sqrt(e.squared_activation / e.squared_quantized)},
         {"relative_error_both", std::sqrt(e.squared_total / e.squared_reference)}});
  }
  sink.write(report);
  fmt::print(stderr, "\none thread reading rows of the buffer 64 bytes at a time, GB/s median [min-max]:\n");
  for (const auto& read : interleaved) {
    fmt::print(stderr, "  {} interleaved row(s) of {:>5} bytes: {}\n", read.rows, read.row_bytes,
               summary_text(read.gigabytes_per_second, 1, "{:.1f} [{:.1f}-{:.1f}]"));
  }
  print_tables(results, bandwidth, sweep, errors, settings);
  if (!rounding.empty()) {
    fmt::print(stderr, "\nrounding activations to int8 (groups of {}), ns per call, median [min-max] of {} samples:\n",
               settings.group_size, settings.repetitions);
    for (const auto& t : rounding) {
      fmt::print(stderr, "  {:>5} columns, {:<9} {}\n", t.columns, t.rounding,
                 summary_text(t.nanoseconds, 1, "{:.0f} [{:.0f}-{:.0f}]"));
    }
  }
}

// --quick shrinks every size the user did not set, for a smoke run of seconds.
void apply_quick_defaults(const CLI::App& app, Settings& settings) {
  auto unless_given = [&app](const char* option, auto& field, auto value) {
    if (app.count(option) == 0) field = static_cast<std::remove_reference_t<decltype(field)>>(value);
  };
  unless_given("--prefill-tokens", settings.prefill_tokens, 9);
  unless_given("--repetitions", settings.repetitions, 2);
  unless_given("--working-set-mib", settings.working_set_mib, 16);
}

}  // namespace
}  // namespace dilemma::bench

int main(int argc, char** argv) {
  using dilemma::bench::Settings;
  Settings settings;
  CLI::App app{"GEMV and GEMM throughput of dilemma's quantized kernels against measured memory bandwidth",
               "bench_kernels"};
  app.set_version_flag("--version", dilemma::version_string);
  app.add_option("--out", settings.out, "Write the JSON report here ('-': stdout)")->capture_default_str();
  app.add_option("--formats", settings.formats, "Formats to measure, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember({"f32", "f16", "int8", "int4"}))
      ->capture_default_str();
  app.add_option("--threads", settings.threads, "Thread counts, comma-separated")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--kernels", settings.kernels, "Kernel sets (auto, scalar, avx2, avx512), comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--activations", settings.activations,
                 "Activation precisions for integer weights (f32, bf16, int8), comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember(dilemma::quant::activation_precision_names()))
      ->capture_default_str();
  app.add_option("--group-size", settings.group_size, "Group size of the integer formats")->capture_default_str();
  app.add_flag("--asymmetric", settings.asymmetric, "Asymmetric int4 (scale and offset per group)");
  app.add_option("-T,--prefill-tokens", settings.prefill_tokens, "Tokens of each GEMM")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--working-set-mib", settings.working_set_mib,
                 "Bytes of weight copies cycled through per GEMV pass, and of the bandwidth buffer; keep it well "
                 "above the last-level cache")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--repetitions", settings.repetitions, "Timed repetitions of every measurement")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("!--no-group-sweep", settings.group_sweep, "Skip the group size sweep");
  app.add_option("--activation-error-tokens", settings.activation_error_tokens,
                 "Tokens of SQuAD dev text for the bf16- and int8-activation errors on tiny-opt (0: skip)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--tiny-opt-dir", settings.tiny_opt_dir,
                 "tiny-opt checkpoint, for the sweep's trained weights and the activation errors")
      ->capture_default_str();
  app.add_option("--seed", settings.seed, "Seed of the random weights")->capture_default_str();
  app.add_flag("--quick", settings.quick,
               "Smoke run: two small shapes, 2 repetitions, 16 MiB working set, 9 tokens, unless set explicitly");
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
