// `dilemma serve` on Open MPI ranks on this machine, as `mpirun` starts it.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "cli_test_support.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"
#include "runtime_test_support.hpp"

using namespace dilemma;
using quant::Format;

namespace {

// Three ranks; a mix of formats on a non-contiguous placement.
const std::vector<std::string> servers = {"alpha", "alpha", "beta", "beta", "beta",
                                          "gamma", "gamma", "beta", "gamma", "alpha"};
const std::vector<Format> formats = {Format::f32, Format::f16, Format::int8, Format::f32, Format::int8,
                                     Format::int8, Format::int4, Format::int8, Format::int8, Format::f16};

// Root in containers and CI: Open MPI refuses to run as root without the
// first two. In the sanitized suite, Open MPI's own allocations (in libmpi and
// in plugins it unloads at exit, which LeakSanitizer cannot name, so no
// suppression can list them) would be reported as leaks: leak checking is off
// for the ranks; every other check stays on.
const std::string mpi_environment =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" ";

std::string mpirun(int ranks) {
  return fmt::format("{}mpirun --oversubscribe -np {} {}", mpi_environment, ranks, DILEMMA_CLI_PATH);
}

std::string serve_args(const testing::ScratchDir& dir) {
  testing::hand_plan(testing::test_cluster(), servers, formats).save(dir / "plan.json");
  return fmt::format("serve --model {} --plan {} --group-size 32 --no-stop-at-eos", testing::tiny_opt(),
                     (dir / "plan.json").string());
}

}  // namespace

TEST_CASE("three MPI ranks generate the single-process model's greedy tokens") {
  testing::ScratchDir dir;
  const auto run = testing::run_command(mpirun(3) + " " + serve_args(dir) +
                                        " --prompt 'The University of' --new-tokens 6 --json");
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const auto json = nlohmann::json::parse(run.out);
  const auto tokenizer = text::BpeTokenizer::load(testing::tiny_opt());
  const auto expected = testing::single_process_tokens(tokenizer.encode("The University of"), formats, 6);
  CHECK(json["transport"] == "mpi");
  CHECK(json["requests"][0]["tokens"].get<std::vector<TokenId>>() == expected);
  // Every rank sent its report: all ten stages are there, each with its calls.
  REQUIRE(json["stages"].size() == 10);
  for (const auto& stage : json["stages"]) {
    CHECK(stage["prefill_calls"] == 1);
    CHECK(stage["decode_calls"] == 5);
  }
}

TEST_CASE("requests pipelined over MPI ranks each get their own tokens") {
  testing::ScratchDir dir;
  testing::write_file(dir / "requests.json", R"(["The University of", "In 1990, the", "Paris is"])");
  const auto run = testing::run_command(mpirun(3) + " " + serve_args(dir) + " --requests " +
                                        (dir / "requests.json").string() + " --in-flight 3 --new-tokens 4 --json");
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const auto json = nlohmann::json::parse(run.out);
  const auto tokenizer = text::BpeTokenizer::load(testing::tiny_opt());
  const std::vector<std::string> prompts = {"The University of", "In 1990, the", "Paris is"};
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    CHECK(json["requests"][i]["tokens"].get<std::vector<TokenId>>() ==
          testing::single_process_tokens(tokenizer.encode(prompts[i]), formats, 4));
  }
}

TEST_CASE("`dilemma run --transport mpi` starts the ranks itself") {
  testing::ScratchDir dir;
  std::string args = serve_args(dir);
  args.replace(0, 5, "run");
  const auto run = testing::run_command(mpi_environment + DILEMMA_CLI_PATH + " " + args +
                                        " --transport mpi --prompt 'Paris is' --new-tokens 3 --json");
  REQUIRE_MESSAGE(run.exit_code == 0, run.err);
  const auto json = nlohmann::json::parse(run.out);
  const auto tokenizer = text::BpeTokenizer::load(testing::tiny_opt());
  CHECK(json["requests"][0]["tokens"].get<std::vector<TokenId>>() ==
        testing::single_process_tokens(tokenizer.encode("Paris is"), formats, 3));
}

TEST_CASE("a rank killed mid-generation ends the job with an error, without hanging") {
  testing::ScratchDir dir;
  // beta's process exits after it has sent 4 messages (the prefill and a few decode steps).
  const auto run = testing::run_command(mpirun(3) + " " + serve_args(dir) +
                                        " --prompt 'The University of' --new-tokens 12 --timeout 2 "
                                        "--inject-fault beta:4:die");
  CHECK(run.exit_code != 0);
  CHECK(run.seconds < 60.0);
}

TEST_CASE("a rank that stops answering is named by rank 0, which ends the job") {
  testing::ScratchDir dir;
  const auto run = testing::run_command(mpirun(3) + " " + serve_args(dir) +
                                        " --prompt 'The University of' --new-tokens 12 --timeout 1 "
                                        "--inject-fault gamma:3:hang");
  CHECK(run.exit_code != 0);
  CHECK(run.err.find("error: node \"gamma\" stopped answering: no token for 1 s and no answer to a ping within 1 s") !=
        std::string::npos);
  // gamma's process still answers: it is stopped, not aborted (MpiRouter::stop).
  CHECK(run.err.find("MPI_ABORT was invoked") == std::string::npos);
  CHECK(run.seconds < 60.0);
}

TEST_CASE("the wrong number of ranks is an error before anything runs") {
  testing::ScratchDir dir;
  const auto run = testing::run_command(mpirun(2) + " " + serve_args(dir) + " --prompt Hi");
  CHECK(run.exit_code != 0);
  CHECK(run.err.find("error: the plan runs on 3 servers (alpha, beta, gamma), but mpirun started 2 ranks: use "
                     "mpirun -np 3") != std::string::npos);
  const auto ranks = testing::run_command(mpirun(3) + " " + serve_args(dir) + " --prompt Hi --ranks alpha,beta,delta");
  CHECK(ranks.exit_code != 0);
  CHECK(ranks.err.find("error: --ranks: unknown server \"delta\" (cluster \"test-triangle\" has alpha, beta, gamma)") !=
        std::string::npos);
}
