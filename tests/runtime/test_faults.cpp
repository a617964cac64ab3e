#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "runtime_test_support.hpp"

using namespace dilemma;
using namespace dilemma::runtime;
using quant::Format;

namespace {

std::string run_error(const RunOptions& options) {
  const auto plan = testing::hand_plan(testing::test_cluster(), testing::split3, testing::split3_formats());
  try {
    run_plan(testing::tiny_opt(), plan, {testing::test_prompt()}, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

RunOptions with_fault(Fault fault) {
  auto options = testing::quick_options(8);
  options.timeout_seconds = 0.2;
  options.faults = {std::move(fault)};
  return options;
}

}  // namespace

TEST_CASE("a node that dies mid-generation fails the request within the timeout, naming it, and nothing hangs") {
  // beta sends one message per step: after the prefill and two decode steps it dies.
  const auto start = std::chrono::steady_clock::now();
  CHECK(run_error(with_fault({"beta", 3, FaultKind::die})) ==
        "node \"beta\" stopped answering: no token for 0.2 s and no answer to a ping within 0.2 s; the run was "
        "stopped");
  // Two timeouts (silence, then the ping) and the shutdown's grace period.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("a node that hangs is named the same way, and its thread is stopped") {
  CHECK(run_error(with_fault({"gamma", 2, FaultKind::hang})) ==
        "node \"gamma\" stopped answering: no token for 0.2 s and no answer to a ping within 0.2 s; the run was "
        "stopped");
}

TEST_CASE("a corrupted message is reported by the node that received it") {
  CHECK(run_error(with_fault({"alpha", 1, FaultKind::corrupt})) ==
        "node \"beta\": malformed decode_activation message from 0: 2 rows x 192 cols need 1536 payload bytes, got "
        "768");
}

TEST_CASE("faults must name a server that runs stages") {
  CHECK(run_error(with_fault({"omega", 1, FaultKind::die})) ==
        "injected fault: unknown server \"omega\" (cluster \"test-triangle\" has alpha, beta, gamma)");
  CHECK_THROWS_WITH_AS(parse_fault("beta:x:die", "--inject-fault"),
                       "--inject-fault: MESSAGES must be a non-negative integer, got \"x\"", Error);
  CHECK_THROWS_WITH_AS(parse_fault("beta:3:explode", "--inject-fault"),
                       "--inject-fault: unknown fault \"explode\" (expected die, hang or corrupt)", Error);
  CHECK_THROWS_WITH_AS(parse_fault("beta", "--inject-fault"),
                       "--inject-fault: expected SERVER:MESSAGES:die|hang|corrupt, got \"beta\"", Error);
  const Fault fault = parse_fault("beta:3:hang", "--inject-fault");
  CHECK(fault.server == "beta");
  CHECK(fault.after_messages == 3);
  CHECK(fault.kind == FaultKind::hang);
}

TEST_CASE("bad run options are rejected before anything runs") {
  auto options = testing::quick_options(8);
  options.generation.max_new_tokens = 0;
  CHECK(run_error(options) == "max_new_tokens must be at least 1, got 0");
  options = testing::quick_options(8);
  options.timeout_seconds = 0.0;
  CHECK(run_error(options) == "the timeout must be positive, got 0 s");
  const auto plan = testing::hand_plan(testing::test_cluster(), testing::split3, testing::split3_formats());
  CHECK_THROWS_WITH_AS(run_plan(testing::tiny_opt(), plan, {}, testing::quick_options()), "no prompts to run", Error);
  CHECK_THROWS_WITH_AS(run_plan(testing::tiny_opt(), plan, {{}}, testing::quick_options()),
                       "a prompt is empty (OPT prompts start with BOS)", Error);
}

TEST_CASE("a node checks the actual bytes of its loaded stages against the server's memory") {
  const auto plan = testing::hand_plan(testing::test_cluster(), testing::split3, testing::split3_formats());
  const auto checkpoint = model::OptCheckpoint::open(testing::tiny_opt());
  Deployment deployment = deploy(plan, checkpoint.config(), {12, 8, 1}, {0, std::nullopt, testing::test_scheme()});
  // As if the server had less memory than the plan assumed: the check after
  // loading is the last line of defence.
  deployment.cluster.servers[2].memory_bytes = 1048576;
  CHECK_THROWS_WITH_AS(load_node_stages(checkpoint, deployment, 2),
                       "server \"gamma\": its stages (layer.7, head) take 1.36 MiB once loaded in their formats, plus "
                       "30.00 KiB of KV caches, more than its 1.00 MiB",
                       Error);
  deployment.cluster.servers[2].memory_bytes = 2.0 * 1048576;
  CHECK(load_node_stages(checkpoint, deployment, 2).size() == 2);
}
