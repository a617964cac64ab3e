#pragma once
// Measured stage times: each stage × format timed on one reference machine
// (the quantization work's `dilemma profile`), which the cost model scales to
// every server by its speed_factor.
//
// JSON: {"machine": "...", "prompt_tokens": 128,
//        "stages": {"layer.0": {"int8": {"prefill": "4.1 ms", "decode": "95 us",
//                                        "weight_bytes": 1234567}, ...}, ...}}
// "prefill" is one call on a prompt of prompt_tokens tokens, "decode" one call
// on one token; both are durations (seconds or a string with a unit).
// "weight_bytes" is optional and overrides the size computed from the shapes
// when the quantized checkpoint lays tensors out differently. A format missing
// from a stage's entry cannot be used for that stage.
//
// `dilemma profile` also measures the teacher–student error of each stage in
// each format, in the same object: "weight_difference" ‖W − Ŵ‖²_F and
// "output_error" (1/n) Σ ‖(W − Ŵ)x‖² summed over the stage's matrices, and
// "normalized_weight_difference", "normalized_output_error", the same divided
// by the whole teacher model's Σ‖W‖²_F and Σ (1/n)‖Wx‖² (so that they add up
// over stages). All four are optional; error_table() turns one normalized
// metric into the planner's accuracy table E.

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/cost/error_table.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/edge/units.hpp"
#include "dilemma/error.hpp"
#include "dilemma/io/json_file.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::cost {

struct ProfiledTimes {
  double prefill_seconds = 0.0;  // one call on Profile::prompt_tokens tokens
  double decode_seconds = 0.0;   // one call on one token
  std::optional<double> weight_bytes;
  std::optional<double> weight_difference;             // ‖W − Ŵ‖²_F over the stage's matrices
  std::optional<double> normalized_weight_difference;  // … / Σ_model ‖W‖²_F
  std::optional<double> output_error;                  // (1/n) Σ ‖(W − Ŵ)x‖² over the stage's matrices
  std::optional<double> normalized_output_error;       // … / Σ_model (1/n) Σ ‖Wx‖²
};

struct Profile {
  std::string machine;
  std::int64_t prompt_tokens = 0;
  std::vector<std::string> stage_names;
  std::vector<std::array<std::optional<ProfiledTimes>, quant::all_formats.size()>> times;  // parallel to stage_names

  // The accuracy table E from the profile's normalized errors in `metric`.
  // The teacher's own format, f32, has error 0 by definition where the profile
  // leaves it out; any other profiled format without the metric is an error
  // naming the stage and format, since guessing it would mislead the budget.
  ErrorTable error_table(ErrorMetric metric) const;

  std::string source;  // where it was read from, for messages
  static Profile from_json(const nlohmann::json& json, const std::string& source = "profile.json");
  static Profile load(const std::filesystem::path& path);
  nlohmann::json to_json() const;
};

inline Profile Profile::from_json(const nlohmann::json& json, const std::string& source) {
  using dilemma::detail::fail;
  if (!json.is_object()) fail("{}: expected a JSON object, got {}", source, json.type_name());
  edge::detail::check_keys(json, {"machine", "prompt_tokens", "stages", "description"}, source);
  Profile profile;
  profile.source = source;
  if (auto it = json.find("machine"); it != json.end()) {
    if (!it->is_string()) fail("{}: machine: expected a string, got {}", source, it->dump());
    profile.machine = it->get<std::string>();
  }
  const auto& prompt = edge::detail::require(json, "prompt_tokens", source);
  if (!prompt.is_number_integer() || prompt.get<std::int64_t>() < 1) {
    fail("{}: prompt_tokens: expected a positive integer, got {}", source, prompt.dump());
  }
  profile.prompt_tokens = prompt.get<std::int64_t>();
  const auto& stages = edge::detail::require(json, "stages", source);
  if (!stages.is_object() || stages.empty())
    fail("{}: stages: expected an object mapping stage names to times", source);
  for (const auto& stage : stages.items()) {
    const std::string stage_what = fmt::format("{}: stages.{}", source, stage.key());
    if (!stage.value().is_object())
      fail("{}: expected an object of times per format, got {}", stage_what, stage.value().dump());
    std::array<std::optional<ProfiledTimes>, quant::all_formats.size()> formats{};
    for (const auto& entry : stage.value().items()) {
      const quant::Format format = quant::parse_format(entry.key(), stage_what);
      const std::string what = stage_what + "." + entry.key();
      if (!entry.value().is_object())
        fail("{}: expected {{\"prefill\": ..., \"decode\": ...}}, got {}", what, entry.value().dump());
      edge::detail::check_keys(entry.value(),
                               {"prefill", "decode", "weight_bytes", "weight_difference",
                                "normalized_weight_difference", "output_error", "normalized_output_error"},
                               what);
      ProfiledTimes times;
      times.prefill_seconds = edge::parse_quantity(edge::detail::require(entry.value(), "prefill", what),
                                                   edge::Quantity::duration, what + ".prefill");
      times.decode_seconds = edge::parse_quantity(edge::detail::require(entry.value(), "decode", what),
                                                  edge::Quantity::duration, what + ".decode");
      for (double seconds : {times.prefill_seconds, times.decode_seconds}) {
        if (!(seconds > 0.0)) fail("{}: times must be positive, got {} s", what, seconds);
      }
      if (auto bytes = entry.value().find("weight_bytes"); bytes != entry.value().end()) {
        times.weight_bytes = edge::parse_quantity(*bytes, edge::Quantity::bytes, what + ".weight_bytes");
        if (!(*times.weight_bytes > 0.0)) fail("{}.weight_bytes must be positive, got {}", what, *times.weight_bytes);
      }
      auto error = [&](const char* key) -> std::optional<double> {
        auto it = entry.value().find(key);
        if (it == entry.value().end() || it->is_null()) return std::nullopt;
        if (!it->is_number()) fail("{}.{}: expected a number, got {}", what, key, it->dump());
        const double value = it->get<double>();
        if (!(value >= 0.0) || !std::isfinite(value)) fail("{}.{}: must be finite and >= 0, got {}", what, key, value);
        return value;
      };
      times.weight_difference = error("weight_difference");
      times.normalized_weight_difference = error("normalized_weight_difference");
      times.output_error = error("output_error");
      times.normalized_output_error = error("normalized_output_error");
      formats[static_cast<std::size_t>(format)] = times;
    }
    profile.stage_names.push_back(stage.key());
    profile.times.push_back(formats);
  }
  return profile;
}

inline Profile Profile::load(const std::filesystem::path& path) {
  const nlohmann::json json = io::read_json_file(path, "the profile");
  return from_json(json, path.string());
}

inline ErrorTable Profile::error_table(ErrorMetric metric) const {
  ErrorTable table;
  const char* key = metric == ErrorMetric::weight ? "normalized_weight_difference" : "normalized_output_error";
  table.metric = fmt::format("{} from the profile{} of machine \"{}\"", key, source.empty() ? "" : " " + source,
                             machine);
  for (std::size_t s = 0; s < stage_names.size(); ++s) {
    FormatErrors errors{};
    for (quant::Format format : quant::all_formats) {
      const auto& entry = times[s][static_cast<std::size_t>(format)];
      if (!entry) continue;
      const auto& value =
          metric == ErrorMetric::weight ? entry->normalized_weight_difference : entry->normalized_output_error;
      if (value) {
        errors[static_cast<std::size_t>(format)] = *value;
      } else if (format == quant::Format::f32) {
        errors[static_cast<std::size_t>(format)] = 0.0;  // the teacher differs from itself by nothing
      } else {
        dilemma::detail::fail("{}: stages.{}.{} has no \"{}\", which the {} error metric needs", source,
                              stage_names[s], quant::format_name(format), key, error_metric_name(metric));
      }
    }
    table.stage_names.push_back(stage_names[s]);
    table.errors.push_back(errors);
  }
  return table;
}

inline nlohmann::json Profile::to_json() const {
  nlohmann::json stages = nlohmann::json::object();
  for (std::size_t s = 0; s < stage_names.size(); ++s) {
    nlohmann::json entry = nlohmann::json::object();
    for (quant::Format format : quant::all_formats) {
      if (const auto& times = this->times[s][static_cast<std::size_t>(format)]) {
        nlohmann::json value{{"prefill", times->prefill_seconds}, {"decode", times->decode_seconds}};
        if (times->weight_bytes) value["weight_bytes"] = *times->weight_bytes;
        for (const auto& [key, error] : {std::pair{"weight_difference", times->weight_difference},
                                         std::pair{"normalized_weight_difference", times->normalized_weight_difference},
                                         std::pair{"output_error", times->output_error},
                                         std::pair{"normalized_output_error", times->normalized_output_error}}) {
          if (error) value[key] = *error;
        }
        entry[std::string(quant::format_name(format))] = value;
      }
    }
    stages[stage_names[s]] = entry;
  }
  return {{"machine", machine}, {"prompt_tokens", prompt_tokens}, {"stages", stages}};
}

}  // namespace dilemma::cost
