#pragma once
// Measures a model's per-stage profile on this machine: every stage in every
// format, its stored bytes, its teacher–student error and the time of one
// prefill and one decode call. The result is the cost::Profile the planner
// reads (measured_costs, Profile::error_table); `dilemma profile` writes it.
//
// Errors are those of each stage alone: stage s is quantized (calibrated, if
// the method needs text) on the teacher's inputs of stage s, with every other
// stage left as the teacher, which is what the planner's additive budget
// Σ_s E[s][f] ≤ ε assumes.
//
// Times are those of each stage in a running model, the stages called in
// their order (detail::time_stages).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dilemma/cost/profile.hpp"
#include "dilemma/error.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/run_context.hpp"
#include "dilemma/quant/calibration/calibrate.hpp"
#include "dilemma/quant/calibration/method.hpp"
#include "dilemma/quant/calibration/stage_inputs.hpp"
#include "dilemma/quant/format.hpp"
#include "dilemma/quant/weight_error.hpp"

namespace dilemma::cost {

struct ProfilerOptions {
  std::vector<quant::Format> formats{quant::all_formats.begin(), quant::all_formats.end()};
  quant::QuantScheme scheme;
  quant::calibration::Method method = quant::calibration::Method::rtn;
  std::int64_t prompt_tokens = 128;  // length of the timed prefill call
  int repetitions = 5;               // timed runs per stage and format; the median is kept
  std::string machine;               // the profile's name for this machine
  std::function<void(const model::Stage&)> on_stage;  // progress, called before each stage
};

struct MeasuredProfile {
  Profile profile;
  // Each teacher stage's own ‖W‖²_F and output energy, to show errors
  // relative to the stage rather than to the whole model.
  std::vector<quant::MatrixError> teacher_stages;
  quant::MatrixError teacher_model;  // the sums over all stages: the normalizers
};

namespace detail {

inline double median(std::vector<double> values) {
  std::ranges::sort(values);
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Random activations of the widths a stage reads: a prompt for the prefill
// call (the head, as in generation, gets only the last position) and one
// token for the decode call. The kernels' speed does not depend on the values.
inline std::pair<model::StageInput, model::StageInput> random_inputs(const model::Stage& stage,
                                                                      const model::OptConfig& config,
                                                                      Eigen::Index prompt, std::mt19937& rng) {
  if (stage.kind() == model::StageKind::embedding) {
    std::uniform_int_distribution<TokenId> id(0, static_cast<TokenId>(config.vocab_size - 1));
    std::vector<TokenId> ids(static_cast<std::size_t>(prompt));
    for (auto& value : ids) value = id(rng);
    return {ids, std::vector<TokenId>{id(rng)}};
  }
  const Eigen::Index rows = stage.kind() == model::StageKind::head ? 1 : prompt;
  std::normal_distribution<float> normal;
  model::Matrix x(rows, stage.input_width()), next(1, stage.input_width());
  for (float& value : x.reshaped()) value = normal(rng);
  for (float& value : next.reshaped()) value = normal(rng);
  return {std::move(x), std::move(next)};
}

// Times one prefill call on the prompt and one decode call on the next token
// of every stage in `format` (round-to-nearest: the kernels' speed does not
// depend on how the weights were fitted), each the median of `repetitions`
// runs after one warm-up run.
//
// The stages run in the model's order, all prefills and then all decodes, as
// one node holding the whole model runs them: between two calls of a stage
// the others read their weights, and a stage finds its own where a pipeline
// leaves them, out of the core's private caches when the model is larger
// than those. Timing each stage's decode right after its own prefill, as the
// profiler once did, found the weights of tiny-opt's layers (0.5-1 MiB) and
// head (1.5 MiB) still in L2: their decode calls measured 20-45 % faster
// than after 8 MiB of other reads, and one-server plans' per-token
// predictions were 15-30 % low (docs/results.md). The cost: one quantized
// copy of the model at a time (half the f32 model's memory, for f16).
inline std::vector<ProfiledTimes> time_stages(std::span<const model::Stage> teacher, quant::Format format,
                                              const quant::QuantScheme& scheme, const model::OptConfig& config,
                                              Eigen::Index prompt, int repetitions,
                                              const model::RunContext& context) {
  const std::size_t count = teacher.size();
  std::vector<model::Stage> quantized;
  quantized.reserve(count);  // `timed` points into it
  std::vector<const model::Stage*> timed;
  std::vector<std::pair<model::StageInput, model::StageInput>> inputs;
  std::mt19937 rng(7);
  for (const model::Stage& stage : teacher) {
    if (stage.has_format(format, scheme)) {
      timed.push_back(&stage);
    } else {
      quantized.push_back(stage);
      quantized.back().quantize(format, scheme);
      timed.push_back(&quantized.back());
    }
    inputs.push_back(random_inputs(stage, config, prompt, rng));
  }
  std::vector<std::vector<double>> prefill(count), decode(count);
  auto timed_call = [&](std::size_t s, const model::StageInput& input, model::StageState& state) {
    const auto start = std::chrono::steady_clock::now();
    timed[s]->run(input, state, context);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (int r = 0; r <= repetitions; ++r) {
    std::vector<model::StageState> states(count);
    std::vector<double> prefill_run(count), decode_run(count);
    for (std::size_t s = 0; s < count; ++s) prefill_run[s] = timed_call(s, inputs[s].first, states[s]);
    for (std::size_t s = 0; s < count; ++s) decode_run[s] = timed_call(s, inputs[s].second, states[s]);
    if (r == 0) continue;  // warm-up: caches, page faults, the pool's first wake-up
    for (std::size_t s = 0; s < count; ++s) {
      prefill[s].push_back(prefill_run[s]);
      decode[s].push_back(decode_run[s]);
    }
  }
  std::vector<ProfiledTimes> times(count);
  for (std::size_t s = 0; s < count; ++s) {
    times[s].prefill_seconds = median(std::move(prefill[s]));
    times[s].decode_seconds = median(std::move(decode[s]));
  }
  return times;
}

}  // namespace detail

// Profiles `teacher` on this machine. `calibration` holds the calibration
// sequences (the inputs of stage 0); without it there are no output errors
// and only round-to-nearest is possible.
inline MeasuredProfile profile_model(const model::OptModel& teacher,
                                     std::optional<quant::calibration::StageActivations> calibration,
                                     const ProfilerOptions& options, const model::RunContext& context = {}) {
  using dilemma::detail::fail;
  namespace calib = quant::calibration;
  if (options.formats.empty()) fail("profile: no formats to profile");
  for (auto f = options.formats.begin(); f != options.formats.end(); ++f) {
    if (std::find(options.formats.begin(), f, *f) != f) fail("profile: {} is listed twice", quant::format_name(*f));
  }
  if (calib::needs_inputs(options.method) && !calibration) {
    fail("profile: method {} calibrates on text, but no calibration text was given",
         calib::method_name(options.method));
  }
  if (options.prompt_tokens < 1) {
    fail("profile: expected a positive number of prompt tokens, got {}", options.prompt_tokens);
  }
  if (options.repetitions < 1) fail("profile: expected at least 1 repetition, got {}", options.repetitions);
  const auto& config = teacher.config();
  if (options.prompt_tokens + 1 > config.max_position_embeddings) {
    fail("profile: {} prompt tokens and one decoded token exceed the model's max_position_embeddings ({})",
         options.prompt_tokens, config.max_position_embeddings);
  }
  quant::detail::check_scheme(options.scheme, "profile");

  const auto stages = teacher.stages();
  struct Measured {
    std::size_t weight_bytes;
    quant::MatrixError error;
  };
  std::vector<std::vector<Measured>> measured(stages.size());
  MeasuredProfile result;
  for (std::size_t s = 0; s < stages.size(); ++s) {
    const model::Stage& stage = stages[s];
    if (options.on_stage) options.on_stage(stage);
    const calib::StageInputs inputs = calibration ? calibration->capture(stage, context.kernels) : calib::StageInputs{};
    result.teacher_stages.push_back(calib::stage_error(stage, stage, inputs));
    result.teacher_model += result.teacher_stages.back();
    for (const quant::Format format : options.formats) {
      model::Stage student = stage;
      if (calibration) {
        calib::calibrate_stage(student, *calibration, format, options.scheme, options.method, {}, context.kernels);
      } else {
        student.quantize(format, options.scheme);
      }
      measured[s].push_back({student.weight_bytes(), calib::stage_error(stage, student, inputs)});
    }
    if (calibration && s + 1 < stages.size()) calibration->advance(stage, context.kernels);
  }
  std::vector<std::vector<ProfiledTimes>> times;  // [format][stage]
  for (const quant::Format format : options.formats) {
    times.push_back(detail::time_stages(stages, format, options.scheme, config, options.prompt_tokens,
                                        options.repetitions, context));
  }

  Profile& profile = result.profile;
  profile.machine = options.machine;
  profile.prompt_tokens = options.prompt_tokens;
  profile.source = "measured on this machine";
  const quant::MatrixError& model_size = result.teacher_model;
  for (std::size_t s = 0; s < stages.size(); ++s) {
    profile.stage_names.push_back(stages[s].name());
    auto& row = profile.times.emplace_back();
    for (std::size_t f = 0; f < options.formats.size(); ++f) {
      const Measured& m = measured[s][f];
      ProfiledTimes stage_times = times[f][s];
      stage_times.weight_bytes = static_cast<double>(m.weight_bytes);
      stage_times.weight_difference = m.error.weight_difference;
      stage_times.normalized_weight_difference = m.error.weight_difference / model_size.weight_norm;
      if (calibration) {
        stage_times.output_error = m.error.output_error;
        stage_times.normalized_output_error = m.error.output_error / model_size.output_energy;
      }
      row[static_cast<std::size_t>(options.formats[f])] = stage_times;
    }
  }
  return result;
}

}  // namespace dilemma::cost
