#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "runtime_test_support.hpp"

using namespace dilemma;
using namespace dilemma::runtime;
using quant::Format;

TEST_CASE("a plan split over three nodes generates the single-process model's greedy tokens, in f32") {
  auto formats = testing::all_f32();
  formats[8] = formats[9] = Format::int8;  // gamma runs integer formats only
  const auto plan = testing::hand_plan(testing::test_cluster(), testing::split3, formats);
  const auto prompt = testing::test_prompt();
  std::vector<TokenId> streamed;
  auto options = testing::quick_options(6);
  options.on_token = [&](std::size_t request, TokenId token) {
    CHECK(request == 0);
    streamed.push_back(token);
  };
  const RunReport report = run_plan(testing::tiny_opt(), plan, {prompt}, options);
  REQUIRE(report.requests.size() == 1);
  CHECK(report.requests[0].tokens == testing::single_process_tokens(prompt, formats, 6));
  CHECK(streamed == report.requests[0].tokens);
  CHECK(report.transport == "emulated");
  CHECK(report.mode == "latency");

  // Every stage ran one prefill and five decode steps, on the planned server and format.
  REQUIRE(report.stages.size() == 10);
  for (const StageReport& stage : report.stages) {
    CHECK(stage.prefill_calls == 1);
    CHECK(stage.decode_calls == 5);
    CHECK(stage.server == testing::split3[stage.stage]);
    CHECK(stage.format == formats[stage.stage]);
    CHECK(stage.prefill_seconds.predicted > 0.0);
  }
  // Between servers the links carried exactly the cost model's bytes plus one
  // 56-byte header per message: the prefill's 12 rows and five decode steps
  // of 192 floats each, and from gamma the tokens (five fed back to alpha).
  std::map<std::pair<std::string, std::string>, LinkReport> links;
  for (const LinkReport& link : report.links) links[{link.from, link.to}] = link;
  const LinkReport& alpha_beta = links.at({"alpha", "beta"});
  CHECK(alpha_beta.messages == 6);
  CHECK(alpha_beta.bytes.predicted == (12 + 5) * 192 * 4);
  CHECK(alpha_beta.bytes.measured == alpha_beta.bytes.predicted + 6 * 56);
  const LinkReport& beta_gamma = links.at({"beta", "gamma"});
  CHECK(beta_gamma.bytes.predicted == (12 + 5) * 192 * 4);
  CHECK(beta_gamma.bytes.measured == beta_gamma.bytes.predicted + 6 * 56);
  const LinkReport& gamma_alpha = links.at({"gamma", "alpha"});
  CHECK(gamma_alpha.messages == 5);
  CHECK(gamma_alpha.bytes.measured == 5 * (4 + 56));
  // Each message spent at least its link's latency in transit.
  CHECK(alpha_beta.transfer_seconds.value() >= 6 * 2e-4);
  // The whole request took at least the latencies on its critical path: the
  // prompt, two hops of prefill, the first token to the user; then per decode
  // step the token back and two hops.
  CHECK(report.completion_seconds.measured >= (4 + 5 * 3) * 2e-4);
  CHECK(report.first_token_seconds.predicted > 0.0);
  CHECK(report.per_token_seconds.predicted > 0.0);
  CHECK(report.completion_seconds.predicted ==
        doctest::Approx(report.first_token_seconds.predicted + 5 * report.per_token_seconds.predicted));

  const auto json = report.to_json();
  CHECK(json["requests"][0]["tokens"].get<std::vector<TokenId>>() == report.requests[0].tokens);
  CHECK(json["links"].size() == report.links.size());
  CHECK(report.table().find("time to first token") != std::string::npos);
}

TEST_CASE("the warm-up request runs through every node but is left out of the measurements") {
  auto formats = testing::all_f32();
  formats[8] = formats[9] = Format::int8;  // gamma runs integer formats only
  const auto plan = testing::hand_plan(testing::test_cluster(), testing::split3, formats);
  const auto prompt = testing::test_prompt();
  std::map<bool, RunReport> reports;
  for (const bool warm_up : {false, true}) {
    auto options = testing::quick_options(4);
    options.warm_up = warm_up;
    std::size_t streamed = 0;
    options.on_token = [&](std::size_t, TokenId) { ++streamed; };
    reports.emplace(warm_up, run_plan(testing::tiny_opt(), plan, {prompt}, options));
    CHECK(streamed == 4);  // the warm-up's tokens are not streamed
  }
  const RunReport& cold = reports.at(false);
  const RunReport& warm = reports.at(true);
  CHECK(warm.requests.size() == 1);
  CHECK(warm.requests[0].tokens == cold.requests[0].tokens);
  for (std::size_t s = 0; s < warm.stages.size(); ++s) {
    CHECK(warm.stages[s].prefill_calls == 1);
    CHECK(warm.stages[s].decode_calls == cold.stages[s].decode_calls);
  }
  REQUIRE(warm.links.size() == cold.links.size());
  for (std::size_t l = 0; l < warm.links.size(); ++l) {
    CHECK(warm.links[l].messages == cold.links[l].messages);
    CHECK(warm.links[l].bytes.measured == cold.links[l].bytes.measured);
  }
  CHECK(is_warm_up(warm_up_request_bit + 1));
  CHECK_FALSE(is_warm_up(1));
}

TEST_CASE("mixed formats on non-contiguous placements match the single-process model with the same formats") {
  const std::vector<std::string> servers = {"alpha", "beta", "beta", "alpha", "gamma",
                                            "gamma", "alpha", "beta", "gamma", "alpha"};
  const std::vector<Format> formats = {Format::f16, Format::int8, Format::f32, Format::int4, Format::int8,
                                       Format::int4, Format::f16, Format::int8, Format::int8, Format::int8};
  const auto plan = testing::hand_plan(testing::test_cluster(), servers, formats);
  const auto prompt = testing::test_prompt(1);
  const RunReport report = run_plan(testing::tiny_opt(), plan, {prompt}, testing::quick_options(5));
  CHECK(report.requests[0].tokens == testing::single_process_tokens(prompt, formats, 5));
  CHECK(report.wire_error.max_abs == 0.0);  // f32 on the wire
}

TEST_CASE("several requests in flight pipeline through the nodes, each with its own KV caches") {
  auto formats = testing::all_f32();
  formats[8] = formats[9] = Format::int4;
  const auto plan = testing::hand_plan(testing::test_cluster(), testing::split3, formats);
  const std::vector<std::vector<TokenId>> prompts = {testing::test_prompt(0), testing::test_prompt(1),
                                                     testing::test_prompt(2), testing::test_prompt(3)};
  auto options = testing::quick_options(5);
  options.requests_in_flight = 3;
  const RunReport report = run_plan(testing::tiny_opt(), plan, prompts, options);
  CHECK(report.mode == "throughput");
  REQUIRE(report.requests.size() == 4);
  const auto expected = testing::single_process_tokens(prompts, formats, 5);
  for (std::size_t i = 0; i < prompts.size(); ++i) CHECK(report.requests[i].tokens == expected[i]);
  CHECK(report.throughput_requests_per_second.measured > 0.0);
  CHECK(report.throughput_requests_per_second.predicted > 0.0);
  for (const StageReport& stage : report.stages) CHECK(stage.decode_calls == 4 * 4);
}

TEST_CASE("f16 on the wire reports its rounding error") {
  auto formats = testing::all_f32();
  formats[8] = formats[9] = Format::int8;
  const auto plan = testing::hand_plan(testing::test_cluster(), testing::split3, formats);
  auto options = testing::quick_options(4);
  options.wire = WireFormat::f16;
  const RunReport report = run_plan(testing::tiny_opt(), plan, {testing::test_prompt()}, options);
  CHECK(report.wire_error.max_abs > 0.0);
  CHECK(report.wire_error.relative_rms > 0.0);
  CHECK(report.wire_error.relative_rms < std::pow(2.0, -11));
  std::map<std::pair<std::string, std::string>, LinkReport> links;
  for (const LinkReport& link : report.links) links[{link.from, link.to}] = link;
  CHECK(links.at({"alpha", "beta"}).bytes.measured == (12 + 3) * 192 * 2 + 4 * 56);
  CHECK(links.at({"alpha", "beta"}).bytes.predicted == (12 + 3) * 192 * 2);
  CHECK(report.table().find("f16 on the wire: largest rounding error") != std::string::npos);
}

TEST_CASE("a slower server is emulated by stretching its compute by 1 / speed_factor") {
  edge::Cluster cluster = testing::test_cluster();
  cluster.servers[1].speed_factor = 0.25;
  auto formats = testing::all_f32();
  formats[8] = formats[9] = Format::int8;
  const auto plan = testing::hand_plan(cluster, testing::split3, formats);
  const RunReport report = run_plan(testing::tiny_opt(), plan, {testing::test_prompt()}, testing::quick_options(3));
  for (const StageReport& stage : report.stages) {
    const double stretch = stage.server == "beta" ? 4.0 : 1.0;
    CHECK(stage.prefill_seconds.measured == doctest::Approx(stage.local_prefill_seconds * stretch));
    CHECK(stage.decode_seconds.measured == doctest::Approx(stage.local_decode_seconds * stretch));
  }
}

TEST_CASE("the user at a server's access point talks to it without a link") {
  edge::Cluster cluster = testing::test_cluster();
  cluster.user = {"alpha", true};
  std::erase_if(cluster.links, [](const edge::LinkSpec& l) { return l.from == "phone"; });
  auto formats = testing::all_f32();
  formats[8] = formats[9] = Format::int8;
  const auto plan = testing::hand_plan(cluster, testing::split3, formats);
  const auto prompt = testing::test_prompt(2);
  const RunReport report = run_plan(testing::tiny_opt(), plan, {prompt}, testing::quick_options(3));
  CHECK(report.requests[0].tokens == testing::single_process_tokens(prompt, formats, 3));
  for (const LinkReport& link : report.links) CHECK(link.from != "phone");
}
