#pragma once
// Which format each stage of a model gets: what `--formats` and the planner
// hand to OptModel::quantize. Three spellings, one per use:
//   "int4"                    every stage;
//   "f32,int8,int4,…"         one per stage, in order: embedding, layer.0 …
//                             layer.{L-1}, head (2 + L names);
//   a JSON file               {"formats": ["f32", …]} (the same list), or
//                             {"default": "int8", "stages": {"layer.3": "int4", "head": "f16"}}
//                             (stages not named get the default, f32 when absent);
//                             either may add "group_size" and "int4_asymmetric".
// The stage count is not known when a specification is read, so lengths and
// stage names are checked by resolve().

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/io/json_file.hpp"
#include "dilemma/quant/format.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::quant {

namespace detail {

// "embedding", "layer.0" … "layer.{count-3}", "head": Stage::name() of each stage.
inline std::vector<std::string> stage_names(std::size_t stage_count) {
  std::vector<std::string> names;
  names.reserve(stage_count);
  names.emplace_back("embedding");
  for (std::size_t i = 0; i + 2 < stage_count; ++i) names.push_back(fmt::format("layer.{}", i));
  names.emplace_back("head");
  return names;
}

inline std::string describe_stages(std::size_t stage_count) {
  const std::size_t layers = stage_count - 2;
  if (layers == 0) return "embedding, head";
  if (layers == 1) return "embedding, layer.0, head";
  return fmt::format("embedding, layer.0 … layer.{}, head", layers - 1);
}

}  // namespace detail

class FormatAssignment {
 public:
  // f32 everywhere: the unquantized model.
  FormatAssignment() = default;

  static FormatAssignment uniform(Format format, const QuantScheme& scheme = {}) {
    FormatAssignment assignment;
    assignment.default_ = format;
    assignment.set_scheme(scheme, "format assignment");
    return assignment;
  }

  // One format per stage: embedding, layers, head.
  static FormatAssignment per_stage(std::vector<Format> formats, const QuantScheme& scheme = {}) {
    FormatAssignment assignment;
    assignment.list_ = std::move(formats);
    assignment.set_scheme(scheme, "format assignment");
    return assignment;
  }

  // A specification as --formats takes it: a format name, a comma-separated
  // list, or the path of a JSON file. `what` starts every error message.
  static FormatAssignment parse(std::string_view spec, std::string_view what = "--formats") {
    FormatAssignment assignment;
    assignment.source_ = std::string(what);
    if (spec.find(',') != std::string_view::npos) {
      for (std::size_t begin = 0;;) {
        const std::size_t comma = std::min(spec.find(',', begin), spec.size());
        assignment.list_.push_back(
            parse_format(spec.substr(begin, comma - begin), fmt::format("{} (item {})", what, assignment.list_.size())));
        if (comma == spec.size()) break;
        begin = comma + 1;
      }
      return assignment;
    }
    if (const auto format = try_parse_format(spec)) {
      assignment.default_ = *format;
      return assignment;
    }
    const std::filesystem::path path(spec);
    std::error_code error;
    if (!spec.empty() && (std::filesystem::exists(path, error) || path.extension() == ".json")) return load(path);
    dilemma::detail::fail(
        "{}: unknown format \"{}\" (expected f32, f16, int8 or int4, a comma-separated list with one per stage, or "
        "a JSON file)",
        what, spec);
  }

  static FormatAssignment load(const std::filesystem::path& json_file) {
    const nlohmann::json json = io::read_json_file(json_file, "the format assignment file");
    return from_json(json, json_file.string());
  }

  // `source` (a file name) starts every error message.
  static FormatAssignment from_json(const nlohmann::json& json, const std::string& source) {
    if (!json.is_object()) dilemma::detail::fail("{}: expected a JSON object, got {}", source, json.type_name());
    FormatAssignment assignment;
    assignment.source_ = source;
    for (const auto& [key, value] : json.items()) {
      if (key != "formats" && key != "default" && key != "stages" && key != "group_size" &&
          key != "int4_asymmetric") {
        dilemma::detail::fail(
            "{}: unknown field \"{}\" (expected \"formats\", or \"default\" and \"stages\"; optionally "
            "\"group_size\" and \"int4_asymmetric\")",
            source, key);
      }
    }
    const bool has_list = json.contains("formats");
    if (has_list && (json.contains("default") || json.contains("stages"))) {
      dilemma::detail::fail("{}: give either \"formats\" (one per stage) or \"default\"/\"stages\", not both", source);
    }
    if (!has_list && !json.contains("default") && !json.contains("stages")) {
      dilemma::detail::fail("{}: no formats: expected \"formats\" (one per stage) or \"default\"/\"stages\"", source);
    }
    auto format_at = [&](const nlohmann::json& value, const std::string& where) {
      if (!value.is_string()) dilemma::detail::fail("{}: {} must be a format name, got {}", source, where, value.dump());
      return parse_format(value.get<std::string>(), fmt::format("{}: {}", source, where));
    };
    if (has_list) {
      const auto& list = json.at("formats");
      if (!list.is_array()) dilemma::detail::fail("{}: \"formats\" must be an array, got {}", source, list.type_name());
      for (std::size_t i = 0; i < list.size(); ++i) {
        assignment.list_.push_back(format_at(list[i], fmt::format("formats[{}]", i)));
      }
    }
    if (const auto it = json.find("default"); it != json.end()) assignment.default_ = format_at(*it, "default");
    if (const auto it = json.find("stages"); it != json.end()) {
      if (!it->is_object()) dilemma::detail::fail("{}: \"stages\" must be an object, got {}", source, it->type_name());
      for (const auto& [stage, value] : it->items()) {
        assignment.stages_.emplace(stage, format_at(value, fmt::format("stages[\"{}\"]", stage)));
      }
    }
    QuantScheme scheme;
    if (const auto it = json.find("group_size"); it != json.end()) {
      if (!it->is_number_integer()) {
        dilemma::detail::fail("{}: \"group_size\" must be an integer, got {}", source, it->dump());
      }
      scheme.group_size = it->get<std::int64_t>();
      assignment.group_size_given_ = true;
    }
    if (const auto it = json.find("int4_asymmetric"); it != json.end()) {
      if (!it->is_boolean()) {
        dilemma::detail::fail("{}: \"int4_asymmetric\" must be true or false, got {}", source, it->dump());
      }
      scheme.int4_asymmetric = it->get<bool>();
    }
    assignment.set_scheme(scheme, source);
    return assignment;
  }

  const QuantScheme& scheme() const { return scheme_; }

  // A group size given apart from the specification (--group-size); one the
  // JSON file already fixed to another value is a conflict, not an override.
  void set_group_size(std::int64_t group_size, std::string_view what = "--group-size") {
    if (group_size_given_ && group_size != scheme_.group_size) {
      dilemma::detail::fail("{} {} conflicts with \"group_size\": {} in {}", what, group_size, scheme_.group_size,
                            source_);
    }
    QuantScheme scheme = scheme_;
    scheme.group_size = group_size;
    set_scheme(scheme, what);
  }

  // One format per stage of a model with `stage_count` stages (2 + layers).
  std::vector<Format> resolve(std::size_t stage_count) const {
    if (stage_count < 2) {
      dilemma::detail::fail("{}: a model has at least 2 stages (embedding, head), got {}", source_, stage_count);
    }
    if (!list_.empty()) {
      if (list_.size() != stage_count) {
        dilemma::detail::fail("{}: {} formats given, expected N = 2 + layers = {} ({})", source_, list_.size(),
                              stage_count, detail::describe_stages(stage_count));
      }
      return list_;
    }
    const auto names = detail::stage_names(stage_count);
    std::vector<Format> formats(stage_count, default_.value_or(Format::f32));
    for (const auto& [stage, format] : stages_) {
      const auto it = std::ranges::find(names, stage);
      if (it == names.end()) {
        dilemma::detail::fail("{}: unknown stage \"{}\" (the model's stages are {})", source_, stage,
                              detail::describe_stages(stage_count));
      }
      formats[static_cast<std::size_t>(it - names.begin())] = format;
    }
    return formats;
  }

 private:
  void set_scheme(const QuantScheme& scheme, std::string_view what) {
    detail::check_scheme(scheme, what);
    scheme_ = scheme;
  }

  std::string source_ = "format assignment";
  std::optional<Format> default_;           // every stage not otherwise named
  std::vector<Format> list_;                // one per stage, when given so
  std::map<std::string, Format> stages_;    // JSON "stages"
  QuantScheme scheme_;
  bool group_size_given_ = false;  // by the JSON file
};

}  // namespace dilemma::quant
