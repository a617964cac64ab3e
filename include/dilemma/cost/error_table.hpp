#pragma once
// The accuracy side of the plan: E[stage][format], how far the student (the
// quantized model) drifts from the teacher when one stage runs in one format.
// DILEMMA's budget is Σ_stages E[stage][format] ≤ ε, so E must be additive
// over stages; the paper's normalized weight difference is:
//   E[s][f] = ‖W_s − Q_f(W_s)‖²_F / Σ_s' ‖W_s'‖²_F.
// The quantization code measures it on real weights; the planner takes it as
// data (JSON below), and proxy_error_table() stands in where no measured
// table exists yet.
//
// JSON: {"metric": "...", "stages": {"embedding": {"f32": 0, "f16": 1e-8,
//        "int8": 2e-6, "int4": 6e-4}, "layer.0": {...}, ..., "head": {...}}}
// A format missing from a stage's entry cannot be used for that stage.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/cost/stage_work.hpp"
#include "dilemma/error.hpp"
#include "dilemma/io/json_file.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::cost {

using FormatErrors = std::array<std::optional<double>, quant::all_formats.size()>;

// Which teacher–student error E measures: the paper's normalized weight
// difference, or the output-aware error on calibration activations.
enum class ErrorMetric { weight, output };

inline std::string_view error_metric_name(ErrorMetric metric) {
  return metric == ErrorMetric::weight ? "weight" : "output";
}

inline ErrorMetric parse_error_metric(std::string_view name, std::string_view what = "error metric") {
  if (name == "weight") return ErrorMetric::weight;
  if (name == "output") return ErrorMetric::output;
  dilemma::detail::fail("{}: unknown error metric \"{}\" (expected weight or output)", what, name);
}

struct ErrorTable {
  std::string metric;
  std::vector<std::string> stage_names;
  std::vector<FormatErrors> errors;  // parallel to stage_names

  std::optional<double> error(std::size_t stage, quant::Format format) const {
    return errors.at(stage)[static_cast<std::size_t>(format)];
  }

  // Σ over stages of each stage's largest listed error: the error of the
  // coarsest model the table allows, the reference of a budget given as a
  // fraction ("30%" in `dilemma plan`).
  double coarsest_error() const {
    double sum = 0.0;
    for (const FormatErrors& stage : errors) {
      double coarsest = 0.0;
      for (const auto& error : stage) {
        if (error) coarsest = std::max(coarsest, *error);
      }
      sum += coarsest;
    }
    return sum;
  }

  static ErrorTable from_json(const nlohmann::json& json, const std::string& source = "errors.json");
  static ErrorTable load(const std::filesystem::path& path);
  nlohmann::json to_json() const;
};

inline ErrorTable ErrorTable::from_json(const nlohmann::json& json, const std::string& source) {
  using dilemma::detail::fail;
  if (!json.is_object()) fail("{}: expected a JSON object, got {}", source, json.type_name());
  ErrorTable table;
  if (auto it = json.find("metric"); it != json.end()) {
    if (!it->is_string()) fail("{}: metric: expected a string, got {}", source, it->dump());
    table.metric = it->get<std::string>();
  }
  auto stages = json.find("stages");
  if (stages == json.end() || !stages->is_object() || stages->empty()) {
    fail("{}: expected \"stages\": an object mapping each stage name to its errors per format", source);
  }
  for (const auto& stage : stages->items()) {
    const std::string what = fmt::format("{}: stages.{}", source, stage.key());
    if (!stage.value().is_object())
      fail("{}: expected an object of errors per format, got {}", what, stage.value().dump());
    FormatErrors errors{};
    for (const auto& entry : stage.value().items()) {
      const quant::Format format = quant::parse_format(entry.key(), what);
      if (!entry.value().is_number()) fail("{}.{}: expected a number, got {}", what, entry.key(), entry.value().dump());
      const double value = entry.value().get<double>();
      if (!(value >= 0.0) || !std::isfinite(value))
        fail("{}.{}: an error must be finite and >= 0, got {}", what, entry.key(), value);
      errors[static_cast<std::size_t>(format)] = value;
    }
    table.stage_names.push_back(stage.key());
    table.errors.push_back(errors);
  }
  return table;
}

inline ErrorTable ErrorTable::load(const std::filesystem::path& path) {
  const nlohmann::json json = io::read_json_file(path, "the error table");
  return from_json(json, path.string());
}

inline nlohmann::json ErrorTable::to_json() const {
  nlohmann::json stages = nlohmann::json::object();
  for (std::size_t s = 0; s < stage_names.size(); ++s) {
    nlohmann::json entry = nlohmann::json::object();
    for (quant::Format format : quant::all_formats) {
      if (auto value = errors[s][static_cast<std::size_t>(format)])
        entry[std::string(quant::format_name(format))] = *value;
    }
    stages[stage_names[s]] = entry;
  }
  return {{"metric", metric}, {"stages", stages}};
}

// A stand-in for measured errors: the normalized weight difference that
// round-to-nearest quantization gives Gaussian weights. Relative MSE of one
// matrix: f16 rounds to 11 significant bits, (2⁻¹¹)²/3; a symmetric integer
// format with absmax scaling over groups of g has step m/L (m ≈ σ·√(2 ln 2g),
// the expected group maximum; L = 127 or 7 levels, 7.5 for asymmetric int4),
// so MSE/σ² = (m/σ)²/(12 L²). Each stage weighs by its share of all matrix
// weights, so the errors of every stage in one format sum to that format's
// whole-model error.
inline ErrorTable proxy_error_table(const model::OptConfig& config, const quant::QuantScheme& scheme = {}) {
  const double group_max_squared = 2.0 * std::log(2.0 * static_cast<double>(scheme.group_size));
  auto integer_error = [&](double levels) { return group_max_squared / (12.0 * levels * levels); };
  const std::array<double, quant::all_formats.size()> relative = {0.0, std::pow(2.0, -22) / 3.0, integer_error(127.0),
                                                                  integer_error(scheme.int4_asymmetric ? 7.5 : 7.0)};

  const auto count = static_cast<std::size_t>(config.num_stages());
  std::vector<double> weights(count, 0.0);
  double total = 0.0;
  for (std::size_t s = 0; s < count; ++s) {
    for (const MatrixShape& matrix : stage_shape(config, s).matrices) {
      weights[s] += static_cast<double>(matrix.rows) * static_cast<double>(matrix.cols);
    }
    total += weights[s];
  }
  ErrorTable table;
  table.metric = "proxy: normalized weight difference of round-to-nearest quantization of Gaussian weights";
  for (std::size_t s = 0; s < count; ++s) {
    table.stage_names.push_back(stage_name(config, s));
    FormatErrors errors{};
    for (std::size_t f = 0; f < relative.size(); ++f) errors[f] = relative[f] * weights[s] / total;
    table.errors.push_back(errors);
  }
  return table;
}

}  // namespace dilemma::cost
