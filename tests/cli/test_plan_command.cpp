// `dilemma plan`, run as a user runs it: the plan file it writes (loadable
// and re-checked by plan::Plan::load), the table it prints, and its exit
// codes: 0 with a plan, 2 without one, 1 for bad input.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_test_support.hpp"
#include "dilemma/cost/rtn_errors.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/plan/plan.hpp"
#include "test_support.hpp"

using namespace dilemma;
using testing::tiny_opt;

namespace {

using Run = testing::CliRun;

Run plan_cli(const std::string& arguments) { return testing::run_cli("plan " + arguments); }

std::string cluster(const std::string& name) {
  return (testing::assets_dir().parent_path() / "examples" / "clusters" / (name + ".json")).string();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("plan writes a plan file the runtime can load, and prints the plan") {
  testing::ScratchDir dir;
  const std::string out = (dir / "plan.json").string();
  const Run run = plan_cli("--model " + tiny_opt() + " --cluster " + cluster("homogeneous") +
                           " --prompt-tokens 32 --new-tokens 8 --budget 20% --group-size 32 --out " + out);
  CAPTURE(run.err);
  REQUIRE(run.exit_code == 0);
  const plan::Plan plan = plan::Plan::load(out);  // re-evaluates it from its own tables
  CHECK(plan.method == "dilemma");
  CHECK(plan.status == plan::Status::optimal);
  const nlohmann::json json = nlohmann::json::parse(testing::read_file(out));
  const auto& model = json.at("models").at(0);
  CHECK(model.at("name") == "tiny-opt");
  CHECK(model.at("prompt_tokens") == 32);
  CHECK(model.at("new_tokens") == 8);
  CHECK(model.at("stages").size() == 10);
  CHECK(model.at("stages").at(0).at("stage") == "embedding");
  CHECK(json.at("instance").at("models").at(0).at("costs").at("quant_scheme").at("group_size") == 32);
  // Errors measured on tiny-opt's own weights, not the Gaussian proxy.
  const cost::ErrorTable measured =
      cost::rtn_error_table(model::OptCheckpoint::open(testing::model_dir("tiny-opt")), {32, false});
  for (std::size_t s = 0; s < plan.assignments[0].size(); ++s) {
    CHECK(plan.problem.instance.workloads[0].costs.error(s, plan.assignments[0][s].format) ==
          *measured.error(s, plan.assignments[0][s].format));
  }
  CHECK(plan.evaluation.models[0].error <= plan.problem.instance.workloads[0].accuracy_budget);
  CHECK(contains(run.out, "plan: dilemma on cluster \"homogeneous\", optimal (cbc "));
  CHECK(contains(run.out, "  embedding    edge-"));
  CHECK(contains(run.out, "time to first token"));
  CHECK(contains(run.out, "quantization ratio"));
  CHECK(contains(run.out, "memory used / capacity"));
}

TEST_CASE("plan runs the baselines and plans a model shape without weights") {
  testing::ScratchDir dir;
  const std::string out = (dir / "plan.json").string();
  const Run run = plan_cli("--model opt-350m --cluster " + cluster("smart-city-opt350m") +
                           " --method uniform-int8 --out " + out);
  CAPTURE(run.err);
  REQUIRE(run.exit_code == 0);
  const plan::Plan plan = plan::Plan::load(out);
  CHECK(plan.method == "uniform-int8");
  for (const cost::Placement& placement : plan.assignments[0]) CHECK(placement.format == quant::Format::int8);
  CHECK(plan.problem.instance.workloads[0].costs.stages.size() == 26);

  const Run greedy = plan_cli("--model opt-350m --cluster " + cluster("smart-city-opt350m") +
                              " --method greedy --pin embedding=street-light-gw:int4 --max-servers 4 --out " + out);
  CAPTURE(greedy.err);
  REQUIRE(greedy.exit_code == 0);
  const plan::Plan pinned = plan::Plan::load(out);
  CHECK(pinned.assignments[0].front().format == quant::Format::int4);
  CHECK(pinned.problem.instance.cluster.servers[pinned.assignments[0].front().server].name == "street-light-gw");
  CHECK(pinned.problem.options.max_servers == 4u);

  const Run annealing =
      plan_cli("--model opt-350m --cluster " + cluster("smart-city-opt350m") +
               " --method annealing --pin embedding=street-light-gw:int4 --max-servers 4 --out " + out);
  CAPTURE(annealing.err);
  REQUIRE(annealing.exit_code == 0);
  const plan::Plan annealed = plan::Plan::load(out);
  CHECK(annealed.method == "annealing");
  CHECK(annealed.assignments[0].front() == pinned.assignments[0].front());
  CHECK(annealed.objective() <= pinned.objective());
}

TEST_CASE("plan takes times and errors from a profile, in the metric asked for") {
  testing::ScratchDir dir;
  nlohmann::json stages = nlohmann::json::object();
  for (const std::string stage : {"embedding", "layer.0", "layer.1", "layer.2", "layer.3", "layer.4", "layer.5",
                                  "layer.6", "layer.7", "head"}) {
    stages[stage] = {{"f32", {{"prefill", "2 ms"}, {"decode", "0.2 ms"}}},
                     {"int8",
                      {{"prefill", "1 ms"},
                       {"decode", "0.1 ms"},
                       {"normalized_weight_difference", 1e-6},
                       {"normalized_output_error", 2e-6}}}};
  }
  testing::write_file(dir / "profile.json",
                      nlohmann::json{{"machine", "test"}, {"prompt_tokens", 16}, {"stages", stages}}.dump());
  const std::string out = (dir / "plan.json").string();
  const Run run = plan_cli("--model " + tiny_opt() + " --cluster " + cluster("homogeneous") + " --costs " +
                           (dir / "profile.json").string() + " --error-metric output --group-size 32 --out " + out);
  CAPTURE(run.err);
  REQUIRE(run.exit_code == 0);
  const plan::Plan plan = plan::Plan::load(out);
  const cost::ModelCosts& costs = plan.problem.instance.workloads[0].costs;
  CHECK(costs.source == "measured on test");
  CHECK(costs.error(1, quant::Format::int8) == 2e-6);
  CHECK_FALSE(costs.stages[1].formats[cost::format_index(quant::Format::int4)].has_value());  // not profiled
}

TEST_CASE("plan exits with 2 and the reasons when there is no plan") {
  testing::ScratchDir dir;
  const std::string out = (dir / "plan.json").string();
  const Run run =
      plan_cli("--model " + tiny_opt() + " --cluster " + cluster("too-small") + " --group-size 32 --out " + out);
  CHECK(run.exit_code == 2);
  CHECK(contains(run.out, "infeasible"));
  CHECK(contains(run.out, "tiny-opt needs at least "));
  CHECK(contains(run.out, "but the servers that may hold stages have 1.88 MiB in total"));
  const nlohmann::json json = nlohmann::json::parse(testing::read_file(out));
  CHECK(json.at("status") == "infeasible");
  CHECK(json.at("reasons").size() == 1);
  CHECK(plan::Plan::load(out).reasons == std::vector<std::string>{json.at("reasons").at(0).get<std::string>()});

  const Run budget = plan_cli("--model " + tiny_opt() + " --cluster " + cluster("smart-city") + " --budget 0 --out " +
                              out);
  CHECK(budget.exit_code == 2);
  CHECK(contains(budget.out, "no plan:"));

  const Run annealing = plan_cli("--model " + tiny_opt() + " --cluster " + cluster("too-small") +
                                 " --group-size 32 --method annealing --out " + out);
  CHECK(annealing.exit_code == 2);
  CHECK(contains(annealing.out, "annealing found no assignment that meets every constraint, which does not prove "
                                "that none exists"));
  CHECK(nlohmann::json::parse(testing::read_file(out)).at("status") == "no_plan");
}

TEST_CASE("plan rejects bad input with exit code 1 and the option named") {
  testing::ScratchDir dir;
  const std::string out = (dir / "plan.json").string();
  const std::string base = "--cluster " + cluster("homogeneous") + " --out " + out;
  SUBCASE("an unknown model") {
    const Run run = plan_cli("--model opt-9b " + base);
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: --model: \"opt-9b\" is neither a model directory nor a known model shape (opt-350m)\n");
  }
  SUBCASE("a budget that is not a number") {
    const Run run = plan_cli("--model opt-350m --budget lots " + base);
    CHECK(run.exit_code == 1);
    CHECK(run.err ==
          "error: --budget: \"lots\" is not a budget (expected a number >= 0, the sum of the stages' errors, or a "
          "percentage of the error with every stage in its coarsest format, e.g. 30%)\n");
  }
  SUBCASE("a pin to an unknown server") {
    const Run run = plan_cli("--model opt-350m --pin head=moon " + base);
    CHECK(run.exit_code == 1);
    CHECK(run.err ==
          "error: pin of stage head: unknown server \"moon\" (cluster \"homogeneous\" has edge-0, edge-1, edge-2, "
          "edge-3)\n");
  }
  SUBCASE("a malformed pin") {
    const Run run = plan_cli("--model opt-350m --pin head " + base);
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: --pin: \"head\" is not STAGE=SERVER[:FORMAT] (e.g. head=gateway:int8)\n");
  }
  SUBCASE("the output metric without a profile") {
    const Run run = plan_cli("--model opt-350m --error-metric output " + base);
    CHECK(run.exit_code == 1);
    CHECK(run.err ==
          "error: --error-metric output needs a profile with output errors (--costs PROFILE.json from `dilemma "
          "profile`)\n");
  }
  SUBCASE("budgets that do not match the models") {
    const Run run = plan_cli("--model opt-350m --model opt-350m --budget 1 --budget 2 --budget 3 " + base);
    CHECK(run.exit_code == 1);
    CHECK(run.err == "error: --budget is given 3 times: give it once, or once per --model (2)\n");
  }
  SUBCASE("a format list with a typo") {
    const Run run = plan_cli("--model opt-350m --formats f16,int3 " + base);
    CHECK(run.exit_code == 1);
    CHECK(contains(run.err, "error: --formats: unknown format \"int3\""));
  }
}

TEST_CASE("plan places two models jointly, copies of one model named apart") {
  testing::ScratchDir dir;
  const std::string out = (dir / "plan.json").string();
  const Run run = plan_cli("--model " + tiny_opt() + " --model " + tiny_opt() + " --weight 1 --weight 3 --cluster " +
                           cluster("homogeneous") + " --prompt-tokens 16 --new-tokens 4 --method greedy --out " + out);
  CAPTURE(run.err);
  REQUIRE(run.exit_code == 0);
  const plan::Plan plan = plan::Plan::load(out);
  REQUIRE(plan.assignments.size() == 2);
  CHECK(plan.problem.instance.workloads[0].costs.name == "tiny-opt");
  CHECK(plan.problem.instance.workloads[1].costs.name == "tiny-opt#2");
  CHECK(plan.problem.instance.workloads[1].weight == 3.0);
}
