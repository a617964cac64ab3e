// The `dilemma` command-line tool, run as a user runs it: output, files and
// exit codes.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "cli_test_support.hpp"
#include "dilemma/io/npy.hpp"
#include "dilemma/model/opt_model.hpp"

using namespace dilemma;
using testing::run_cli;
using testing::squad_dev;
using testing::tiny_opt;

TEST_CASE("generate continues a prompt greedily and reports its stop reason as JSON") {
  const auto run = run_cli("generate --model " + tiny_opt() + " --prompt The --max-new-tokens 5 --json");
  REQUIRE(run.exit_code == 0);
  const auto json = nlohmann::json::parse(run.out);
  // tiny-opt's reference greedy continuation of "The".
  CHECK(json.at("new_ids") == nlohmann::json({721, 644, 290, 266, 1582}));
  CHECK(json.at("prompt_ids") == nlohmann::json({2, 468}));
  CHECK(json.at("stop_reason") == "max_new_tokens");
  CHECK(json.at("text") == " first time of the United");
}

TEST_CASE("generate streams text and samples reproducibly from a seed") {
  const std::string args = "generate --model " + tiny_opt() +
                           " --prompt 'The University' --max-new-tokens 12 --temperature 0.8 --top-k 40 --top-p 0.9 "
                           "--seed 11";
  const auto first = run_cli(args);
  const auto second = run_cli(args);
  REQUIRE(first.exit_code == 0);
  CHECK(first.out == second.out);
  CHECK(first.out.size() > 1);
  CHECK(first.err.find("new tokens") != std::string::npos);
}

TEST_CASE("tokenize prints the ids as a JSON array, with BOS unless --no-bos") {
  testing::ScratchDir dir;
  testing::write_file(dir / "text.txt", "Hello world, this is a tiny OPT model.");
  const auto with_bos = run_cli("tokenize --model " + tiny_opt() + " --text-file " + (dir / "text.txt").string());
  REQUIRE(with_bos.exit_code == 0);
  CHECK(nlohmann::json::parse(with_bos.out) ==
        nlohmann::json({2, 43, 699, 82, 999, 15, 432, 322, 261, 7013, 444, 51, 55, 2750, 17}));
  const auto gpt2 = run_cli("tokenize --tokenizer " + (testing::assets_dir() / "tokenizers/gpt2").string() +
                            " --no-bos --text-file " + (dir / "text.txt").string());
  REQUIRE(gpt2.exit_code == 0);
  CHECK(nlohmann::json::parse(gpt2.out).front() == 15496);  // "Hello" in GPT-2
}

TEST_CASE("logits writes a float32 .npy equal to the library's forward pass") {
  testing::ScratchDir dir;
  const auto out = (dir / "logits.npy").string();
  const auto run = run_cli("logits --model " + testing::model_dir("tiny-opt-preln").string() + " --ids 2,100,7 --out " + out);
  REQUIRE(run.exit_code == 0);
  const auto written = io::read_npy<float>(out);
  CHECK(written.shape == std::vector<std::int64_t>{3, 8264});
  const auto m = model::OptModel::load(testing::model_dir("tiny-opt-preln").string());
  auto session = m.new_session();
  const TokenId ids[] = {2, 100, 7};
  const auto logits = m.forward(ids, session, model::Logits::all);
  CHECK(std::equal(written.data.begin(), written.data.end(), logits.data()));
}

TEST_CASE("eval reproduces the reference SQuAD dev loss as JSON" * doctest::skip(testing::long_run_of_covered_code)) {
  const auto run = run_cli("eval --model " + tiny_opt() + " --squad " +
                           squad_dev() +
                           " --paragraphs 0:64 --max-tokens 128 --json");
  REQUIRE(run.exit_code == 0);
  const auto json = nlohmann::json::parse(run.out);
  CHECK(std::abs(json.at("loss").get<double>() - 5.259282) <= 1e-4);
  CHECK(json.at("tokens") == 7152);
  CHECK(json.at("perplexity").get<double>() == doctest::Approx(192.3433).epsilon(1e-4));
}

TEST_CASE("bad input gives a message on stderr and a non-zero exit code") {
  SUBCASE("ids that are not numbers") {
    const auto run = run_cli("logits --model " + tiny_opt() + " --ids 2,x --out /dev/null");
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: --ids: \"x\" is not a token id (expected comma-separated integers like 2,100,7)\n");
  }
  SUBCASE("ids outside the vocabulary") {
    const auto run = run_cli("logits --model " + tiny_opt() + " --ids 2,9000 --out /dev/null");
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: token id 9000 at index 1 is outside the vocabulary [0, 8264)\n");
  }
  SUBCASE("a paragraph range past the end") {
    const auto run = run_cli("eval --model " + tiny_opt() + " --squad " +
                             squad_dev() + " --paragraphs 2000:3000");
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: --paragraphs: range 2000:3000 must satisfy A < B <= 2067 (the file's paragraph count)\n");
  }
  SUBCASE("a directory that is not a model") {
    const auto run = run_cli("generate --model " + testing::assets_dir().string() + " --prompt x");
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: " + (testing::assets_dir() / "config.json").string() +
                         ": cannot open the model's config file\n");
  }
  SUBCASE("a missing required option") {
    const auto run = run_cli("generate --prompt x");
    CHECK(run.exit_code != 0);
    CHECK(run.err.find("--model is required") != std::string::npos);
  }
  SUBCASE("no subcommand") {
    const auto run = run_cli("");
    CHECK(run.exit_code != 0);
  }
}

TEST_CASE("every command has --help") {
  for (const std::string command :
       {"", "demo", "generate", "tokenize", "logits", "eval", "quantize", "profile", "plan", "run"}) {
    CAPTURE(command);
    const auto run = run_cli(command + " --help");
    CHECK(run.exit_code == 0);
    CHECK(run.out.find("Usage:") != std::string::npos);
  }
}

TEST_CASE("demo plans, runs and checks the bundled model on the smart-city cluster" *
          doctest::skip(testing::cbc_search_heavy)) {
  const std::string cluster = (testing::assets_dir().parent_path() / "examples/clusters/smart-city.json").string();
  const std::string args = "demo --assets " + testing::assets_dir().string() + " --cluster " + cluster;
  const auto run = run_cli(args + " --max-new-tokens 4 --quality-paragraphs 2");
  REQUIRE(run.exit_code == 0);
  for (const char* expected : {"== profile", "plan: dilemma on cluster \"smart-city\", optimal", "answer    ",
                               "delay (mean over requests)", "loss      teacher "}) {
    CAPTURE(expected);
    CHECK(run.out.find(expected) != std::string::npos);
  }
  const auto bad = run_cli(args + " --budget 2");
  CHECK(bad.exit_code == 1);
  CHECK(bad.err == "error: --budget: expected a fraction of the all-int4 error in [0, 1], got 2\n");
}
