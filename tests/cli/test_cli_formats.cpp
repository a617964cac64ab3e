// --formats, --group-size, --threads and --activations on generate, logits
// and eval, and --model pointing at a quantized checkpoint.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_test_support.hpp"
#include "dilemma/generation/generate.hpp"
#include "dilemma/io/npy.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/quantized_checkpoint.hpp"

using namespace dilemma;
using testing::run_cli;
using testing::squad_dev;
using testing::tiny_opt;

namespace {

const std::string mixed = "int8,int4,int4,f16,int8,int8,int4,int4,f32,int8";
std::string logits_args() {
  return "logits --model " + tiny_opt() + " --ids 2,100,7,42 --formats " + mixed + " --group-size 32";
}

// What the library computes for logits_args().
model::Matrix library_logits(const model::RunContext& context = {}) {
  auto model = model::OptModel::load(tiny_opt());
  auto assignment = quant::FormatAssignment::parse(mixed);
  assignment.set_group_size(32);
  model.quantize(assignment);
  auto session = model.new_session();
  const TokenId ids[] = {2, 100, 7, 42};
  return model.forward(ids, session, model::Logits::all, context);
}

}  // namespace

TEST_CASE("logits --formats quantizes as the library does, on any number of threads") {
  testing::ScratchDir dir;
  const auto one = (dir / "one.npy").string();
  const auto two = (dir / "two.npy").string();
  REQUIRE(run_cli(logits_args() + " --out " + one).exit_code == 0);
  REQUIRE(run_cli(logits_args() + " --threads 2 --out " + two).exit_code == 0);
  const auto written = io::read_npy<float>(one);
  CHECK(written.data == io::read_npy<float>(two).data);
  const auto logits = library_logits();
  CHECK(std::equal(written.data.begin(), written.data.end(), logits.data()));
}

TEST_CASE("logits --activations int8 or bf16 runs the integer weights on rounded activations, as the library does") {
  testing::ScratchDir dir;
  const auto exact = (dir / "exact.npy").string();
  REQUIRE(run_cli(logits_args() + " --out " + exact).exit_code == 0);
  const auto float_activations = io::read_npy<float>(exact).data;
  std::map<std::string, float> largest_change;
  using quant::ActivationPrecision;
  for (const ActivationPrecision activations : {ActivationPrecision::int8, ActivationPrecision::bf16}) {
    const std::string name(quant::activation_precision_name(activations));
    CAPTURE(name);
    const auto rounded = (dir / (name + ".npy")).string();
    REQUIRE(run_cli(logits_args() + " --activations " + name + " --out " + rounded).exit_code == 0);
    const auto written = io::read_npy<float>(rounded);
    model::RunContext context;
    context.kernels.activations = activations;
    const auto logits = library_logits(context);
    CHECK(std::equal(written.data.begin(), written.data.end(), logits.data()));
    // Rounding the activations changes the logits a little, not a lot.
    REQUIRE(float_activations.size() == written.data.size());
    float& largest = largest_change[name];
    for (std::size_t i = 0; i < written.data.size(); ++i) {
      largest = std::max(largest, std::abs(written.data[i] - float_activations[i]));
    }
    CHECK(largest > 0.0f);
    CHECK(largest < 0.5f);
  }
  // bfloat16 keeps 8 significant bits of every activation, int8 about 7 of each group's largest.
  CHECK(largest_change["bf16"] < largest_change["int8"]);
}

TEST_CASE("eval --formats int8 stays within 1% of the f32 loss and reports formats and bytes") {
  const std::string args = "eval --model " + tiny_opt() + " --squad " + squad_dev() + " --paragraphs 0:8 --json";
  const auto f32 = run_cli(args);
  const auto int8 = run_cli(args + " --formats int8 --group-size 32 --threads 2");
  REQUIRE(f32.exit_code == 0);
  REQUIRE(int8.exit_code == 0);
  const auto a = nlohmann::json::parse(f32.out);
  const auto b = nlohmann::json::parse(int8.out);
  CHECK(a.at("formats") == nlohmann::json(std::vector<std::string>(10, "f32")));
  CHECK(b.at("formats") == nlohmann::json(std::vector<std::string>(10, "int8")));
  CHECK(b.at("tokens") == a.at("tokens"));
  const double loss = a.at("loss").get<double>();
  CHECK(std::abs(b.at("loss").get<double>() - loss) <= 0.01 * loss);
  // 8.5 bits per weight against 32, but the tied table is now stored by both
  // the embedding and the head, and positions, biases and norms stay f32.
  CHECK(10 * b.at("weight_bytes").get<std::size_t>() < 4 * a.at("weight_bytes").get<std::size_t>());
}

TEST_CASE("generate runs a saved quantized checkpoint as it runs the quantized model") {
  testing::ScratchDir dir;
  auto model = model::OptModel::load(tiny_opt());
  model.quantize(quant::FormatAssignment::parse(mixed).resolve(10), {.group_size = 32});
  model::save_quantized_checkpoint(dir / "q", model);
  model::copy_tokenizer_files(tiny_opt(), dir / "q");

  const auto run = run_cli("generate --model " + (dir / "q").string() + " --prompt The --max-new-tokens 8 --json");
  REQUIRE(run.exit_code == 0);
  const auto json = nlohmann::json::parse(run.out);
  CHECK(json.at("formats") ==
        nlohmann::json({"int8", "int4", "int4", "f16", "int8", "int8", "int4", "int4", "f32", "int8"}));
  CHECK(json.at("weight_bytes") == model.weight_bytes());
  generation::GenerationOptions options;
  options.max_new_tokens = 8;
  const TokenId prompt[] = {2, 468};
  CHECK(json.at("new_ids") == nlohmann::json(generation::generate(model, prompt, options).tokens));

  // Its stages are no longer f32: asking for other formats is refused.
  const auto again = run_cli("generate --model " + (dir / "q").string() + " --prompt The --formats int4 --group-size 32");
  CHECK(again.exit_code == 1);
  CHECK(again.err ==
        "error: stage embedding is int8, not f32: cannot quantize it to int4 (quantize from f32 weights; re-quantizing "
        "quantized weights compounds their rounding error)\n");
}

TEST_CASE("bad --formats, --group-size, --threads and --activations are errors that say what is wrong") {
  const std::string logits = "logits --model " + tiny_opt() + " --ids 2,100 --out /dev/null";
  SUBCASE("an unknown format") {
    const auto run = run_cli(logits + " --formats int3");
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: --formats: unknown format \"int3\" (expected f32, f16, int8 or int4, a comma-separated "
                     "list with one per stage, or a JSON file)\n");
  }
  SUBCASE("a list of the wrong length") {
    const auto run = run_cli(logits + " --formats f32,int8");
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: --formats: 2 formats given, expected N = 2 + layers = 10 (embedding, layer.0 … layer.7, "
                     "head)\n");
  }
  SUBCASE("the default group size does not divide tiny-opt's 96-wide embedding") {
    const auto run = run_cli(logits + " --formats int4");
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: group size 64 does not divide the 96 columns of embedding.embed_tokens [8264 × 96] "
                     "(group sizes that fit every matrix given an integer format: 32, 96)\n");
  }
  SUBCASE("a group size that is not a multiple of 32") {
    const auto run = run_cli(logits + " --formats int8 --group-size 40");
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: --group-size: group size 40 is not a positive multiple of 32\n");
  }
  SUBCASE("an unknown activation precision") {
    const auto run = run_cli(logits + " --activations int4");
    CHECK(run.exit_code != 0);
    CHECK(run.err.find("--activations: int4 not in {f32,bf16,int8}") != std::string::npos);
  }
  SUBCASE("a group size without formats, and zero threads") {
    CHECK(run_cli(logits + " --group-size 32").exit_code != 0);
    CHECK(run_cli(logits + " --threads 0").exit_code != 0);
  }
  SUBCASE("a JSON file with an unknown stage") {
    testing::ScratchDir dir;
    testing::write_file(dir / "f.json", R"({"default": "f16", "stages": {"layer.8": "int8"}})");
    const auto run = run_cli(logits + " --formats " + (dir / "f.json").string());
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: " + (dir / "f.json").string() +
                         ": unknown stage \"layer.8\" (the model's stages are embedding, layer.0 … layer.7, head)\n");
  }
}

TEST_CASE("--help of generate, logits and eval documents the model options") {
  for (const std::string command : {"generate", "logits", "eval"}) {
    CAPTURE(command);
    const auto run = run_cli(command + " --help");
    REQUIRE(run.exit_code == 0);
    for (const char* option : {"--formats", "--group-size", "--threads", "--activations", "quantized checkpoint"}) {
      CHECK(run.out.find(option) != std::string::npos);
    }
  }
}
