// `dilemma run` on the emulated cluster, as a user runs it.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "cli_test_support.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"
#include "runtime_test_support.hpp"

using namespace dilemma;
using quant::Format;

namespace {

std::string common_args(const testing::ScratchDir& dir) {
  testing::hand_plan(testing::test_cluster(), testing::split3, testing::split3_formats()).save(dir / "plan.json");
  return fmt::format("--model {} --plan {} --group-size 32 --no-stop-at-eos", testing::tiny_opt(),
                     (dir / "plan.json").string());
}

}  // namespace

TEST_CASE("dilemma run answers with the single-process model's tokens and reports measured vs predicted") {
  testing::ScratchDir dir;
  const auto run = testing::run_cli("run " + common_args(dir) + " --prompt 'The University of' --new-tokens 5 --json");
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const auto json = nlohmann::json::parse(run.out);
  const auto tokenizer = text::BpeTokenizer::load(testing::tiny_opt());
  const auto prompt = tokenizer.encode("The University of");
  const auto expected = testing::single_process_tokens(prompt, testing::split3_formats(), 5);
  CHECK(json["requests"][0]["tokens"].get<std::vector<TokenId>>() == expected);
  CHECK(json["requests"][0]["text"] == tokenizer.decode(expected));
  CHECK(json["transport"] == "emulated");
  CHECK(json["stages"].size() == 10);
  CHECK(json["completion_seconds"]["predicted"].get<double>() > 0.0);
  CHECK(json["completion_seconds"]["measured"].get<double>() > 0.0);
}

TEST_CASE("dilemma run --activations int8 or bf16 gives the tokens of the single-process model run that way") {
  testing::ScratchDir dir;
  const auto prompt = text::BpeTokenizer::load(testing::tiny_opt()).encode("The University of");
  using quant::ActivationPrecision;
  for (const ActivationPrecision activations : {ActivationPrecision::int8, ActivationPrecision::bf16}) {
    const std::string name(quant::activation_precision_name(activations));
    CAPTURE(name);
    const auto run = testing::run_cli("run " + common_args(dir) +
                                      " --prompt 'The University of' --new-tokens 5 --json --activations " + name);
    REQUIRE_MESSAGE(run.exit_code == 0, run.err);
    model::RunContext context;
    context.kernels.activations = activations;
    CHECK(nlohmann::json::parse(run.out)["requests"][0]["tokens"].get<std::vector<TokenId>>() ==
          testing::single_process_tokens(prompt, testing::split3_formats(), 5, context));
  }

  const auto bad = testing::run_cli("run " + common_args(dir) + " --prompt 'The' --activations int4");
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--activations: int4 not in {f32,bf16,int8}") != std::string::npos);
}

TEST_CASE("dilemma run streams the text and prints the table; several requests run pipelined") {
  testing::ScratchDir dir;
  const auto single = testing::run_cli("run " + common_args(dir) + " --prompt 'The University of' --new-tokens 4");
  REQUIRE_MESSAGE(single.exit_code == 0, single.err);
  CHECK(single.out.starts_with("The University of"));
  CHECK(single.out.find("time to first token") != std::string::npos);
  CHECK(single.out.find("link from") != std::string::npos);
  CHECK(single.out.find("stage      server") != std::string::npos);

  testing::write_file(dir / "requests.json", R"(["The University of", "In 1990, the", "Paris is"])");
  const auto many = testing::run_cli("run " + common_args(dir) + " --requests " + (dir / "requests.json").string() +
                                     " --in-flight 2 --new-tokens 3 --json");
  REQUIRE_MESSAGE(many.exit_code == 0, many.err);
  const auto json = nlohmann::json::parse(many.out);
  CHECK(json["mode"] == "throughput");
  CHECK(json["requests"].size() == 3);
  CHECK(json["requests"][2]["prompt"] == "Paris is");
}

TEST_CASE("dilemma run rejects bad input with the reason and exit code 1") {
  testing::ScratchDir dir;
  const std::string args = common_args(dir);
  auto error_of = [](const testing::CliRun& run) {
    CHECK(run.exit_code == 1);
    return run.err;
  };
  CHECK(error_of(testing::run_cli("run " + args + " --prompt Hi --wire f8")) ==
        "error: --wire: unknown wire format \"f8\" (expected f32 or f16)\n");
  CHECK(error_of(testing::run_cli("run " + args + " --prompt Hi --transport carrier-pigeon")) ==
        "error: --transport: unknown transport \"carrier-pigeon\" (expected emulated or mpi)\n");
  CHECK(error_of(testing::run_cli("run " + args)) == "error: give --prompt TEXT or --requests FILE\n");
  testing::write_file(dir / "bad.json", R"(["fine", 3])");
  CHECK(error_of(testing::run_cli("run " + args + " --requests " + (dir / "bad.json").string())) ==
        fmt::format("error: {}: [1]: expected a prompt string, got 3\n", (dir / "bad.json").string()));
  CHECK(error_of(testing::run_cli("run " + args + " --prompt Hi --inject-fault beta:1:melt")) ==
        "error: --inject-fault: unknown fault \"melt\" (expected die, hang or corrupt)\n");
  CHECK(error_of(testing::run_cli("run --model " + testing::model_dir("tiny-opt-preln").string() + " --plan " +
                                  (dir / "plan.json").string() + " --group-size 32 --prompt Hi")) ==
        "error: the plan's model \"tiny-opt\" has 10 stages, but the model to run has 4 (embedding, 2 layers, head)\n");
  const auto hung = testing::run_cli("run " + args + " --prompt Hi --new-tokens 8 --timeout 0.3 --inject-fault gamma:2:hang");
  CHECK(error_of(hung).ends_with(
      "error: node \"gamma\" stopped answering: no token for 0.3 s and no answer to a ping within 0.3 s; the run was "
      "stopped\n"));
}
