// cost::profile_model on the bundled tiny-opt: a profile the planner can read,
// and errors that name what is wrong.

#include <doctest/doctest.h>

#include <optional>

#include "dilemma/cost/profiler.hpp"
#include "dilemma/model/opt_model.hpp"
#include "test_support.hpp"

using namespace dilemma;
using quant::Format;

namespace {

cost::ProfilerOptions quick_profile() {
  cost::ProfilerOptions options;
  options.formats = {Format::f32, Format::int8, Format::int4};
  options.scheme.group_size = 32;  // tiny-opt's 96-wide embedding and head
  options.prompt_tokens = 8;
  options.repetitions = 1;
  return options;
}

}  // namespace

TEST_CASE("profile_model measures every stage in every format, as the planner reads it") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  const cost::MeasuredProfile measured = cost::profile_model(model, std::nullopt, quick_profile());
  const cost::Profile& profile = measured.profile;
  REQUIRE(profile.stage_names.size() == model.stages().size());
  CHECK(profile.prompt_tokens == 8);
  double int4_total = 0.0;
  for (std::size_t s = 0; s < profile.stage_names.size(); ++s) {
    CAPTURE(profile.stage_names[s]);
    CHECK_FALSE(profile.times[s][static_cast<std::size_t>(Format::f16)].has_value());  // not asked for
    const auto& f32 = *profile.times[s][static_cast<std::size_t>(Format::f32)];
    const auto& int8 = *profile.times[s][static_cast<std::size_t>(Format::int8)];
    const auto& int4 = *profile.times[s][static_cast<std::size_t>(Format::int4)];
    CHECK(*f32.weight_difference == 0.0);
    CHECK(*f32.weight_bytes == static_cast<double>(model.stages()[s].weight_bytes()));
    CHECK(*int4.weight_bytes < *int8.weight_bytes);
    CHECK(*int8.weight_difference < *int4.weight_difference);
    CHECK(int8.prefill_seconds > 0.0);
    CHECK(int8.decode_seconds > 0.0);
    CHECK_FALSE(int4.output_error.has_value());  // no calibration text
    int4_total += *int4.normalized_weight_difference;
  }
  // The normalized differences add up to the error table the planner budgets.
  CHECK(profile.error_table(cost::ErrorMetric::weight).coarsest_error() == doctest::Approx(int4_total));
}

TEST_CASE("profile_model refuses options it cannot honour, saying which") {
  const auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  auto error = [&](const cost::ProfilerOptions& options) {
    try {
      cost::profile_model(model, std::nullopt, options);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto options = quick_profile();
  options.formats = {Format::int8, Format::int8};
  CHECK(error(options) == "profile: int8 is listed twice");
  options = quick_profile();
  options.method = quant::calibration::Method::gptq;
  CHECK(error(options) == "profile: method gptq calibrates on text, but no calibration text was given");
  options = quick_profile();
  options.repetitions = 0;
  CHECK(error(options) == "profile: expected at least 1 repetition, got 0");
  options = quick_profile();
  options.prompt_tokens = 256;
  CHECK(error(options) ==
        "profile: 256 prompt tokens and one decoded token exceed the model's max_position_embeddings (256)");
  options = quick_profile();
  options.scheme.group_size = 48;
  CHECK(error(options) == "profile: group size 48 is not a positive multiple of 32");
}
