#pragma once
// The cost tables of one model on one cluster for one kind of request: every
// number the planner's objective and constraints are made of, per stage ×
// server × format, so that a plan file carrying them can be re-checked without
// the model, the cluster's specs or the profile. docs/model.md has the
// formulas; analytic_costs() and measured_costs() fill the tables.

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/profile.hpp"
#include "dilemma/cost/stage_work.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/error.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::cost {

inline constexpr std::size_t format_count = quant::all_formats.size();
inline std::size_t format_index(quant::Format format) { return static_cast<std::size_t>(format); }

// One request: a P-token prompt, then N generated tokens. The first token
// comes out of the prefill; each of the N − 1 others takes one decode step.
struct Request {
  std::int64_t prompt_tokens = 128;  // P
  std::int64_t new_tokens = 32;      // N
  // Requests whose KV caches are resident at once (throughput mode keeps
  // several in flight); the memory constraint counts this many caches.
  std::int64_t requests_in_flight = 1;

  std::int64_t decode_steps() const { return new_tokens - 1; }
  void validate(const std::string& what = "request") const {
    if (prompt_tokens < 1) dilemma::detail::fail("{}: prompt_tokens must be >= 1, got {}", what, prompt_tokens);
    if (new_tokens < 1) dilemma::detail::fail("{}: new_tokens must be >= 1, got {}", what, new_tokens);
    if (requests_in_flight < 1) {
      dilemma::detail::fail("{}: requests_in_flight must be >= 1, got {}", what, requests_in_flight);
    }
  }
};

struct CostOptions {
  quant::QuantScheme scheme;
  // Bytes per activation value on the wire: 4 (float32, the runtime's
  // default) or 2 (float16 on the wire).
  double wire_bytes_per_value = 4.0;
};

struct StageTimes {
  double prefill_seconds = 0.0;  // one call on the whole prompt
  double decode_seconds = 0.0;   // one decode step, averaged over the request's N − 1 steps
};

struct FormatCosts {
  double weight_bytes = 0.0;
  double error = 0.0;  // E[stage][format]
};

struct StageCosts {
  std::string name;
  double f32_weight_bytes = 0.0;  // the teacher's size, the quantization ratio's reference
  double kv_cache_bytes = 0.0;    // one request's keys and values for P + N tokens (decoder layers)
  std::array<std::optional<FormatCosts>, format_count> formats{};  // absent: no data, the format is unusable
  // [server][format]; absent where the server cannot run the format.
  std::vector<std::array<std::optional<StageTimes>, format_count>> times;

  const std::optional<StageTimes>& time(std::size_t server, quant::Format format) const {
    return times.at(server)[format_index(format)];
  }
};

struct ModelCosts {
  std::string name;
  std::string source;  // "analytic" or "measured on <machine>"
  Request request;
  // How integer formats are stored (group size, int4 symmetry): the sizes and
  // errors of the tables assume it, and the runtime must quantize with it.
  quant::QuantScheme scheme;
  double activation_bytes = 0.0;  // one token's activations passed between stages
  double token_id_bytes = 4.0;
  std::vector<StageCosts> stages;

  std::int64_t prefill_rows_into(std::size_t stage) const {
    // Only the last position reaches the head: it computes one row of logits.
    return stage + 1 == stages.size() ? 1 : request.prompt_tokens;
  }
  // Memory stage `s` takes on its server in `format`: weights plus the KV
  // caches of every request in flight.
  double memory_bytes(std::size_t stage, quant::Format format) const {
    const auto& costs = stages.at(stage).formats[format_index(format)];
    if (!costs)
      dilemma::detail::fail("{}: stage {} has no costs for {}", name, stages.at(stage).name,
                            quant::format_name(format));
    return costs->weight_bytes + stages[stage].kv_cache_bytes * static_cast<double>(request.requests_in_flight);
  }
  double error(std::size_t stage, quant::Format format) const {
    const auto& costs = stages.at(stage).formats[format_index(format)];
    if (!costs)
      dilemma::detail::fail("{}: stage {} has no costs for {}", name, stages.at(stage).name,
                            quant::format_name(format));
    return costs->error;
  }
  double f32_weight_bytes() const;

  // Checks the tables' shapes against a cluster with `servers` servers.
  void validate(std::size_t servers, const std::string& what) const;
  nlohmann::json to_json() const;
  static ModelCosts from_json(const nlohmann::json& json, const std::string& what);
};

namespace detail {

inline std::size_t find_stage(const std::vector<std::string>& names, const std::string& name) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return i;
  }
  return names.size();
}

// Checks that a per-stage table (errors, profile) names exactly the model's stages.
inline void check_stage_names(const std::vector<std::string>& names, const model::OptConfig& config,
                              const std::string& what) {
  const auto count = static_cast<std::size_t>(config.num_stages());
  for (std::size_t s = 0; s < count; ++s) {
    if (find_stage(names, stage_name(config, s)) == names.size()) {
      dilemma::detail::fail(
          "{} has no entry for stage {} (the model has {} stages: embedding, layer.0 .. layer.{}, head)", what,
          stage_name(config, s), count, count - 3);
    }
  }
  for (const std::string& name : names) {
    bool known = false;
    for (std::size_t s = 0; s < count && !known; ++s) known = stage_name(config, s) == name;
    if (!known) {
      dilemma::detail::fail(
          "{} has an entry for stage \"{}\", which the model does not have (it has {} stages: "
          "embedding, layer.0 .. layer.{}, head)",
          what, name, count, count - 3);
    }
  }
}

// The tables both sources share: names, sizes, errors, byte counts.
inline ModelCosts common_costs(const model::OptConfig& config, const edge::Cluster& cluster, const Request& request,
                               const ErrorTable& errors, const CostOptions& options, std::string name,
                               std::string source) {
  config.validate(name + " config");
  cluster.validate(cluster.name);
  request.validate(name + " request");
  if (request.prompt_tokens + request.new_tokens > config.max_position_embeddings) {
    dilemma::detail::fail("{}: a request of {} prompt + {} new tokens exceeds the model's context of {} positions",
                          name, request.prompt_tokens, request.new_tokens, config.max_position_embeddings);
  }
  if (!(options.wire_bytes_per_value > 0.0)) {
    dilemma::detail::fail("wire_bytes_per_value must be positive, got {}", options.wire_bytes_per_value);
  }
  check_stage_names(errors.stage_names, config, "the error table");
  ModelCosts costs;
  costs.name = std::move(name);
  costs.source = std::move(source);
  costs.request = request;
  costs.scheme = options.scheme;
  costs.activation_bytes = static_cast<double>(config.hidden_size) * options.wire_bytes_per_value;
  costs.token_id_bytes = 4.0;
  const auto count = static_cast<std::size_t>(config.num_stages());
  for (std::size_t s = 0; s < count; ++s) {
    StageCosts stage;
    const StageShape shape = stage_shape(config, s);
    stage.name = shape.name;
    stage.f32_weight_bytes = weight_bytes(shape, quant::Format::f32, options.scheme);
    stage.kv_cache_bytes = kv_cache_bytes(config, s, request.prompt_tokens + request.new_tokens);
    const std::size_t row = find_stage(errors.stage_names, shape.name);
    for (quant::Format format : quant::all_formats) {
      const auto error = errors.errors[row][format_index(format)];
      if (error && can_store(shape, format, options.scheme)) {
        stage.formats[format_index(format)] = FormatCosts{weight_bytes(shape, format, options.scheme), *error};
      }
    }
    stage.times.assign(cluster.servers.size(), {});
    costs.stages.push_back(std::move(stage));
  }
  return costs;
}

}  // namespace detail

// Roofline times from the servers' specs: one call takes
//   max(FLOPs / peak_flops[format], bytes / memory_bandwidth) + stage_overhead.
// Decode times average the N − 1 steps, whose context grows from P to P + N − 2.
inline ModelCosts analytic_costs(const model::OptConfig& config, const edge::Cluster& cluster, const Request& request,
                                 const ErrorTable& errors, const CostOptions& options = {},
                                 std::string name = "model") {
  ModelCosts costs = detail::common_costs(config, cluster, request, errors, options, std::move(name), "analytic");
  for (std::size_t j = 0; j < cluster.servers.size(); ++j) {
    const edge::Server& server = cluster.servers[j];
    if (!server.memory_bandwidth) {
      dilemma::detail::fail(
          "cluster {}: server \"{}\" has no memory_bandwidth, which the analytic cost model needs "
          "(or use measured costs, which need only speed_factor)",
          cluster.name, server.name);
    }
    for (quant::Format format : server.formats) {
      const auto& peak = server.peak_flops[format_index(format)];
      if (!peak) {
        dilemma::detail::fail(
            "cluster {}: server \"{}\" runs {} but has no peak_flops for it, which the analytic cost "
            "model needs (or use measured costs, which need only speed_factor)",
            cluster.name, server.name, quant::format_name(format));
      }
      auto seconds = [&](const Work& work) {
        return std::max(work.flops / *peak, work.bytes / *server.memory_bandwidth) + server.stage_overhead_seconds;
      };
      for (std::size_t s = 0; s < costs.stages.size(); ++s) {
        if (!costs.stages[s].formats[format_index(format)]) continue;
        StageTimes times;
        times.prefill_seconds = seconds(stage_work(config, s, format, options.scheme, request.prompt_tokens, 0));
        if (request.decode_steps() == 0) {
          times.decode_seconds = seconds(stage_work(config, s, format, options.scheme, 1, request.prompt_tokens));
        } else {
          double total = 0.0;
          for (std::int64_t step = 1; step <= request.decode_steps(); ++step) {
            total += seconds(stage_work(config, s, format, options.scheme, 1, request.prompt_tokens + step - 1));
          }
          times.decode_seconds = total / static_cast<double>(request.decode_steps());
        }
        costs.stages[s].times[j][format_index(format)] = times;
      }
    }
  }
  return costs;
}

// Profiled times scaled to each server: a call takes the profiled time divided
// by the server's speed_factor, and a prefill of P tokens the profiled prefill
// × P / profile.prompt_tokens (matrix products grow linearly with the prompt;
// attention's quadratic part is small at the lengths edge models run).
inline ModelCosts measured_costs(const model::OptConfig& config, const edge::Cluster& cluster, const Request& request,
                                 const ErrorTable& errors, const Profile& profile, const CostOptions& options = {},
                                 std::string name = "model") {
  ModelCosts costs = detail::common_costs(
      config, cluster, request, errors, options, std::move(name),
      "measured on " + (profile.machine.empty() ? std::string("an unnamed machine") : profile.machine));
  detail::check_stage_names(profile.stage_names, config, "the profile");
  const double prompt_scale = static_cast<double>(request.prompt_tokens) / static_cast<double>(profile.prompt_tokens);
  for (std::size_t s = 0; s < costs.stages.size(); ++s) {
    StageCosts& stage = costs.stages[s];
    const auto& measured = profile.times[detail::find_stage(profile.stage_names, stage.name)];
    for (quant::Format format : quant::all_formats) {
      auto& format_costs = stage.formats[format_index(format)];
      const auto& times = measured[format_index(format)];
      if (!times) {
        format_costs.reset();  // never profiled: unusable
        continue;
      }
      if (!format_costs) continue;
      if (times->weight_bytes) format_costs->weight_bytes = *times->weight_bytes;
      // The head's prefill computes one row whatever the prompt length.
      const double prefill =
          s + 1 == costs.stages.size() ? times->prefill_seconds : times->prefill_seconds * prompt_scale;
      for (std::size_t j = 0; j < cluster.servers.size(); ++j) {
        const edge::Server& server = cluster.servers[j];
        if (!server.runs(format)) continue;
        stage.times[j][format_index(format)] =
            StageTimes{prefill / server.speed_factor, times->decode_seconds / server.speed_factor};
      }
    }
  }
  return costs;
}

inline double ModelCosts::f32_weight_bytes() const {
  double bytes = 0.0;
  for (const StageCosts& stage : stages) bytes += stage.f32_weight_bytes;
  return bytes;
}

inline void ModelCosts::validate(std::size_t servers, const std::string& what) const {
  using dilemma::detail::fail;
  request.validate(what + ": request");
  if (stages.size() < 2)
    fail("{}: a model needs at least an embedding and a head stage, got {} stages", what, stages.size());
  if (!(activation_bytes > 0.0) || !(token_id_bytes > 0.0)) {
    fail("{}: activation_bytes and token_id_bytes must be positive", what);
  }
  auto check = [&](double value, const std::string& field) {
    if (!(value >= 0.0) || !std::isfinite(value)) fail("{}: {} must be finite and >= 0, got {}", what, field, value);
  };
  for (const StageCosts& stage : stages) {
    check(stage.kv_cache_bytes, stage.name + ".kv_cache_bytes");
    if (!(stage.f32_weight_bytes > 0.0) || !std::isfinite(stage.f32_weight_bytes)) {
      fail("{}: {}.f32_weight_bytes must be positive, got {}", what, stage.name, stage.f32_weight_bytes);
    }
    if (stage.times.size() != servers) {
      fail("{}: stage {} has times for {} servers, but the cluster has {}", what, stage.name, stage.times.size(),
           servers);
    }
    for (quant::Format format : quant::all_formats) {
      const auto& format_costs = stage.formats[format_index(format)];
      const std::string field = fmt::format("{}.{}", stage.name, quant::format_name(format));
      if (format_costs) {
        check(format_costs->weight_bytes, field + ".weight_bytes");
        check(format_costs->error, field + ".error");
      }
      for (std::size_t j = 0; j < servers; ++j) {
        if (const auto& times = stage.times[j][format_index(format)]) {
          if (!format_costs) fail("{}: {} has times on server {} but no size or error", what, field, j);
          check(times->prefill_seconds, field + ".prefill_seconds");
          check(times->decode_seconds, field + ".decode_seconds");
        }
      }
    }
  }
}

inline nlohmann::json ModelCosts::to_json() const {
  nlohmann::json json{{"name", name},
                      {"source", source},
                      {"prompt_tokens", request.prompt_tokens},
                      {"new_tokens", request.new_tokens},
                      {"requests_in_flight", request.requests_in_flight},
                      {"quant_scheme", {{"group_size", scheme.group_size}, {"int4_asymmetric", scheme.int4_asymmetric}}},
                      {"activation_bytes", activation_bytes},
                      {"token_id_bytes", token_id_bytes}};
  json["stages"] = nlohmann::json::array();
  for (const StageCosts& stage : stages) {
    nlohmann::json formats = nlohmann::json::object();
    for (quant::Format format : quant::all_formats) {
      const auto& format_costs = stage.formats[format_index(format)];
      if (!format_costs) continue;
      nlohmann::json prefill = nlohmann::json::array(), decode = nlohmann::json::array();
      for (const auto& server_times : stage.times) {
        const auto& times = server_times[format_index(format)];
        prefill.push_back(times ? nlohmann::json(times->prefill_seconds) : nlohmann::json(nullptr));
        decode.push_back(times ? nlohmann::json(times->decode_seconds) : nlohmann::json(nullptr));
      }
      formats[std::string(quant::format_name(format))] = {{"weight_bytes", format_costs->weight_bytes},
                                                          {"error", format_costs->error},
                                                          {"prefill_seconds", prefill},
                                                          {"decode_seconds", decode}};
    }
    json["stages"].push_back({{"name", stage.name},
                              {"f32_weight_bytes", stage.f32_weight_bytes},
                              {"kv_cache_bytes", stage.kv_cache_bytes},
                              {"formats", formats}});
  }
  return json;
}

inline ModelCosts ModelCosts::from_json(const nlohmann::json& json, const std::string& what) {
  using dilemma::detail::fail;
  if (!json.is_object()) fail("{}: expected an object, got {}", what, json.type_name());
  auto number = [&](const nlohmann::json& object, const char* key, const std::string& where) {
    const auto& value = edge::detail::require(object, key, where);
    if (!value.is_number()) fail("{}.{}: expected a number, got {}", where, key, value.dump());
    return value.get<double>();
  };
  auto integer = [&](const char* key) {
    const auto& value = edge::detail::require(json, key, what);
    if (!value.is_number_integer()) fail("{}.{}: expected an integer, got {}", what, key, value.dump());
    return value.get<std::int64_t>();
  };
  ModelCosts costs;
  costs.name = edge::detail::require_string(json, "name", what);
  costs.source = edge::detail::require_string(json, "source", what);
  costs.request = {integer("prompt_tokens"), integer("new_tokens"), integer("requests_in_flight")};
  {
    const std::string where = what + ".quant_scheme";
    const auto& scheme = edge::detail::require(json, "quant_scheme", what);
    if (!scheme.is_object()) fail("{}: expected an object, got {}", where, scheme.dump());
    edge::detail::check_keys(scheme, {"group_size", "int4_asymmetric"}, where);
    const auto& group = edge::detail::require(scheme, "group_size", where);
    const auto& asymmetric = edge::detail::require(scheme, "int4_asymmetric", where);
    if (!group.is_number_integer() || group.get<std::int64_t>() < 1) {
      fail("{}.group_size: expected a positive integer, got {}", where, group.dump());
    }
    if (!asymmetric.is_boolean()) fail("{}.int4_asymmetric: expected true or false, got {}", where, asymmetric.dump());
    costs.scheme = {group.get<std::int64_t>(), asymmetric.get<bool>()};
  }
  costs.activation_bytes = number(json, "activation_bytes", what);
  costs.token_id_bytes = number(json, "token_id_bytes", what);
  const auto& stages = edge::detail::require(json, "stages", what);
  if (!stages.is_array()) fail("{}.stages: expected an array", what);
  std::optional<std::size_t> servers;
  for (std::size_t s = 0; s < stages.size(); ++s) {
    const std::string where = fmt::format("{}.stages[{}]", what, s);
    StageCosts stage;
    stage.name = edge::detail::require_string(stages[s], "name", where);
    stage.f32_weight_bytes = number(stages[s], "f32_weight_bytes", where);
    stage.kv_cache_bytes = number(stages[s], "kv_cache_bytes", where);
    const auto& formats = edge::detail::require(stages[s], "formats", where);
    if (!formats.is_object()) fail("{}.formats: expected an object", where);
    for (const auto& entry : formats.items()) {
      const quant::Format format = quant::parse_format(entry.key(), where + ".formats");
      const std::string at = where + ".formats." + entry.key();
      stage.formats[format_index(format)] =
          FormatCosts{number(entry.value(), "weight_bytes", at), number(entry.value(), "error", at)};
      const auto& prefill = edge::detail::require(entry.value(), "prefill_seconds", at);
      const auto& decode = edge::detail::require(entry.value(), "decode_seconds", at);
      if (!prefill.is_array() || !decode.is_array() || prefill.size() != decode.size()) {
        fail("{}: prefill_seconds and decode_seconds must be arrays with one entry per server", at);
      }
      if (servers && *servers != prefill.size())
        fail("{}: {} servers here, {} elsewhere", at, prefill.size(), *servers);
      servers = prefill.size();
      stage.times.resize(prefill.size());
      for (std::size_t j = 0; j < prefill.size(); ++j) {
        if (prefill[j].is_null() != decode[j].is_null())
          fail("{}: server {} has only one of prefill and decode", at, j);
        if (prefill[j].is_null()) continue;
        if (!prefill[j].is_number() || !decode[j].is_number()) fail("{}: server {}: expected numbers or null", at, j);
        stage.times[j][format_index(format)] = StageTimes{prefill[j].get<double>(), decode[j].get<double>()};
      }
    }
    costs.stages.push_back(std::move(stage));
  }
  for (StageCosts& stage : costs.stages) stage.times.resize(servers.value_or(0));
  return costs;
}

}  // namespace dilemma::cost
