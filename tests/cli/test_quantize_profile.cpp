// `dilemma quantize`, `dilemma profile` and `eval --compare-teacher`: the
// checkpoint they write, the profile the planner reads, and their errors.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "cli_test_support.hpp"
#include "dilemma/cost/profile.hpp"
#include "dilemma/model/opt_model.hpp"

using namespace dilemma;
using testing::run_cli;
using testing::squad_dev;
using testing::tiny_opt;

namespace {

const std::string calib = " --calib " + squad_dev() + " --paragraphs 100:103 --max-tokens 32";

}  // namespace

TEST_CASE("quantize writes a checkpoint that loads in its formats; eval --compare-teacher scores it") {
  testing::ScratchDir dir;
  const auto rtn_dir = (dir / "rtn").string();
  const auto gptq_dir = (dir / "gptq").string();
  const auto rtn = run_cli("quantize --model " + tiny_opt() + " --formats int4 --group-size 32 --out " + rtn_dir +
                           " --json");
  REQUIRE(rtn.exit_code == 0);
  const auto summary = nlohmann::json::parse(rtn.out);
  CHECK(summary.at("method") == "rtn");
  CHECK(summary.at("formats").size() == 10);
  CHECK(summary.at("calibration_tokens") == 0);
  const auto loaded = model::OptModel::load(rtn_dir);
  CHECK(summary.at("weight_bytes") == loaded.weight_bytes());
  CHECK(summary.at("f32_weight_bytes") == model::OptModel::load(tiny_opt()).weight_bytes());
  CHECK(summary.at("ratio").get<double>() < 0.25);
  for (const auto& stage : loaded.stages()) CHECK(stage.format() == quant::Format::int4);

  const auto gptq = run_cli("quantize --model " + tiny_opt() + " --formats int4 --method gptq" + calib +
                            " --group-size 32 --out " + gptq_dir);
  REQUIRE(gptq.exit_code == 0);
  CHECK(gptq.out.find("method gptq (calibrated on") != std::string::npos);
  CHECK(gptq.out.find("% of f32") != std::string::npos);

  auto compare = [&](const std::string& model) {
    const auto run = run_cli("eval --model " + model + " --teacher " + tiny_opt() + " --compare-teacher --squad " +
                             squad_dev() + " --paragraphs 0:4 --max-tokens 48 --json");
    REQUIRE(run.exit_code == 0);
    return nlohmann::json::parse(run.out);
  };
  const auto rtn_eval = compare(rtn_dir);
  const auto gptq_eval = compare(gptq_dir);
  CHECK(rtn_eval.at("kl").get<double>() > 0.0);
  CHECK(rtn_eval.at("teacher_loss") == gptq_eval.at("teacher_loss"));
  CHECK(rtn_eval.at("top1_agreement").get<double>() <= 1.0);
  CHECK(rtn_eval.at("weight_bytes") == summary.at("weight_bytes"));
  // The teacher against itself.
  const auto self = run_cli("eval --model " + tiny_opt() + " --compare-teacher --squad " + squad_dev() +
                            " --paragraphs 0:2 --max-tokens 32 --json");
  REQUIRE(self.exit_code == 0);
  CHECK(nlohmann::json::parse(self.out).at("kl") == 0.0);
}

TEST_CASE("quantize refuses calibration methods without text, text without a method, and bad formats") {
  testing::ScratchDir dir;
  const std::string out = " --out " + (dir / "q").string();
  const auto no_text = run_cli("quantize --model " + tiny_opt() + " --formats int4 --method kd --group-size 32" + out);
  CHECK(no_text.exit_code == 1);
  CHECK(no_text.err == "error: --method kd: calibration needs text; give --calib SQUAD_FILE (and --paragraphs A:B)\n");
  const auto unused = run_cli("quantize --model " + tiny_opt() + " --formats int4" + calib + out);
  CHECK(unused.exit_code == 1);
  CHECK(unused.err.find("error: --calib: round-to-nearest (--method rtn) uses no calibration text") == 0);
  const auto method = run_cli("quantize --model " + tiny_opt() + " --formats int4 --method awq" + out);
  CHECK(method.err ==
        "error: --method: unknown calibration method \"awq\" (expected rtn, clip, gptq or kd)\n");
  const auto group = run_cli("quantize --model " + tiny_opt() + " --formats int4 --method gptq" + calib + out);
  CHECK(group.exit_code == 1);
  CHECK(group.err.find("group size 64 does not divide the 96 columns") != std::string::npos);
  const auto range = run_cli("quantize --model " + tiny_opt() + " --formats int8 --method clip --calib " + squad_dev() +
                             " --paragraphs 5:3" + out);
  CHECK(range.err == "error: --paragraphs: range 5:3 must satisfy A < B <= 2067 (the file's paragraph count)\n");
}

TEST_CASE("profile writes every stage × format as the planner's cost::Profile reads it") {
  testing::ScratchDir dir;
  const auto file = (dir / "profile.json").string();
  const auto run = run_cli("profile --model " + tiny_opt() + calib +
                           " --formats f32,int8,int4 --method rtn --group-size 32 --prompt-tokens 8 "
                           "--repetitions 1 --machine test-box --out " + file);
  REQUIRE(run.exit_code == 0);
  CHECK(run.out.find("rel. output") != std::string::npos);
  const auto json = nlohmann::json::parse(testing::read_file(file));
  const auto profile = cost::Profile::from_json(json, file);
  CHECK(profile.machine == "test-box");
  CHECK(profile.prompt_tokens == 8);
  REQUIRE(profile.stage_names.size() == 10);
  CHECK(profile.stage_names.front() == "embedding");

  double int8_total = 0.0, int4_total = 0.0;
  for (const auto& item : json.at("stages").items()) {
    const std::string stage = item.key();  // CAPTURE's lambda cannot capture a structured binding in Clang 14
    const auto& formats = item.value();
    CAPTURE(stage);
    CHECK(formats.size() == 3);
    CHECK(formats.at("f32").at("weight_difference") == 0.0);
    CHECK(formats.at("f32").at("output_error") == 0.0);
    CHECK(formats.at("int4").at("weight_bytes").get<double>() < formats.at("int8").at("weight_bytes").get<double>());
    CHECK(formats.at("int8").at("prefill").get<double>() > 0.0);
    int8_total += formats.at("int8").at("normalized_weight_difference").get<double>();
    int4_total += formats.at("int4").at("normalized_output_error").get<double>();
  }
  CHECK(int8_total > 0.0);
  CHECK(int8_total < 1e-3);
  CHECK(int4_total > 0.0);
  // Without text there are no output errors, and only round-to-nearest.
  const auto plain = run_cli("profile --model " + tiny_opt() +
                             " --formats int8 --group-size 32 --prompt-tokens 4 --repetitions 1 --json");
  REQUIRE(plain.exit_code == 0);
  const auto layer = nlohmann::json::parse(plain.out).at("stages").at("layer.0").at("int8");
  CHECK(layer.contains("normalized_weight_difference"));
  CHECK(!layer.contains("output_error"));
  // Timed with int8 activations, for plans run that way; the profile says so.
  const auto rounded = run_cli("profile --model " + tiny_opt() +
                               " --formats int8 --group-size 32 --prompt-tokens 4 --repetitions 1 --activations int8 --json");
  REQUIRE(rounded.exit_code == 0);
  CHECK(rounded.out.find("1 thread, int8 activations") != std::string::npos);
  CHECK(plain.out.find("1 thread, f32 activations") != std::string::npos);
}

TEST_CASE("profile errors name the option") {
  auto error = [](const std::string& args) {
    const auto run = run_cli("profile --model " + tiny_opt() + " " + args);
    CHECK(run.exit_code == 1);
    return run.err;
  };
  CHECK(error("--formats int4,f16,int4") == "error: --formats: int4 is listed twice\n");
  CHECK(error("--formats int3") == "error: --formats: unknown format \"int3\" (expected f32, f16, int8 or int4)\n");
  CHECK(error("--method gptq") ==
        "error: --method gptq: calibration needs text; give --calib SQUAD_FILE (and --paragraphs A:B)\n");
  CHECK(error("--prompt-tokens 256") ==
        "error: --prompt-tokens: 256 prompt tokens and one decoded token exceed the model's "
        "max_position_embeddings (256)\n");
  CHECK(error("--repetitions 0") == "error: --repetitions: expected at least 1, got 0\n");
  CHECK(error("--group-size 48") == "error: --group-size: group size 48 is not a positive multiple of 32\n");
  const auto activations = run_cli("profile --model " + tiny_opt() + " --activations int4");
  CHECK(activations.exit_code != 0);
  CHECK(activations.err.find("--activations: int4 not in {f32,bf16,int8}") != std::string::npos);
}
