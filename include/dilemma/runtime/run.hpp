#pragma once
// Runs a plan on the emulated cluster, in this process: one thread per server
// that holds stages, links and server speeds emulated (emulated_network.hpp,
// node.hpp), the calling thread as the user. The entry point for programs:
//
//   auto plan = dilemma::plan::Plan::load("plan.json");
//   dilemma::runtime::RunOptions options;
//   options.generation.max_new_tokens = 16;
//   auto report = dilemma::runtime::run_plan("assets/models/tiny-opt", plan, {prompt_ids}, options);
//   fmt::print("{}", report.table());
//
// Everything that can be checked before a run is: the plan against the model
// and the cluster (deployment.hpp), then each node's memory with its stages
// loaded. Failures during the run end it with a dilemma::Error naming the
// node, after every node thread has stopped.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "dilemma/error.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/runtime/client.hpp"
#include "dilemma/runtime/deployment.hpp"
#include "dilemma/runtime/emulated_network.hpp"
#include "dilemma/runtime/fault.hpp"
#include "dilemma/runtime/node.hpp"
#include "dilemma/runtime/report.hpp"

namespace dilemma::runtime {

struct RunOptions {
  std::size_t model = 0;                 // which model of the plan runs
  std::optional<edge::Cluster> cluster;  // run on this cluster instead of the plan's
  quant::QuantScheme scheme;             // layout of integer formats (must match the plan's sizes)
  GenerationSettings generation;         // greedy; every request alike
  WireFormat wire = WireFormat::f32;
  // Of the integer stages' products (quant/activations.hpp); profile the plan's costs the same way.
  quant::ActivationPrecision activations = quant::ActivationPrecision::f32;
  std::size_t requests_in_flight = 1;    // 1 = latency mode; more = throughput mode
  double timeout_seconds = 10.0;         // silence after which the nodes are pinged, and the ping's deadline
  bool emulate_speed = true;             // stretch compute by each server's speed_factor
  bool emulate_links = true;             // delay messages by each link's latency and bandwidth
  bool warm_up = true;                   // run the first prompt once, unmeasured, before the measured requests
  std::vector<Fault> faults;             // injected, to test failure handling
  std::function<void(std::size_t request, TokenId token)> on_token;
};

inline RunReport run_plan(const std::filesystem::path& model_dir, const plan::Plan& plan,
                          const std::vector<std::vector<TokenId>>& prompts, const RunOptions& options) {
  using dilemma::detail::fail;
  if (prompts.empty()) fail("no prompts to run");
  if (options.requests_in_flight < 1) fail("requests in flight must be at least 1, got 0");
  if (!(options.timeout_seconds > 0.0)) fail("the timeout must be positive, got {} s", options.timeout_seconds);
  if (options.generation.max_new_tokens < 1) {
    fail("max_new_tokens must be at least 1, got {}", options.generation.max_new_tokens);
  }
  const auto checkpoint = model::OptCheckpoint::open(model_dir);
  RequestShape shape;
  for (const auto& prompt : prompts) {
    if (prompt.empty()) fail("a prompt is empty (OPT prompts start with BOS)");
    shape.prompt_tokens = std::max<std::int64_t>(shape.prompt_tokens, static_cast<std::int64_t>(prompt.size()));
  }
  shape.new_tokens = options.generation.max_new_tokens;
  shape.requests_in_flight = static_cast<std::int64_t>(std::min(options.requests_in_flight, prompts.size()));
  const Deployment deployment =
      deploy(plan, checkpoint.config(), shape, DeploymentOptions{options.model, options.cluster, options.scheme});
  const std::vector<Address> addresses = deployment.nodes();
  std::vector<std::optional<Fault>> faults(addresses.size());
  for (const Fault& fault : options.faults) {
    const std::size_t server = deployment.cluster.server_index(fault.server, "injected fault");
    const auto it = std::find(addresses.begin(), addresses.end(), static_cast<Address>(server));
    if (it == addresses.end()) fail("injected fault: server \"{}\" runs no stage of the plan", fault.server);
    faults[static_cast<std::size_t>(it - addresses.begin())] = fault;
  }

  // Load and check every node before any of them starts.
  NodeOptions node_options;
  node_options.generation = options.generation;
  node_options.wire = options.wire;
  node_options.emulate_speed = options.emulate_speed;
  node_options.context.kernels.activations = options.activations;
  std::vector<std::unique_ptr<Node>> nodes;
  for (Address address : addresses) {
    nodes.push_back(std::make_unique<Node>(deployment, address, load_node_stages(checkpoint, deployment, address),
                                           node_options));
  }

  EmulatedNetwork network(deployment, options.emulate_links);
  std::vector<std::unique_ptr<Endpoint>> endpoints;
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    auto endpoint = network.endpoint(addresses[i]);
    if (faults[i]) endpoint = std::make_unique<FaultyEndpoint>(std::move(endpoint), *faults[i]);
    endpoints.push_back(std::move(endpoint));
  }
  std::vector<std::unique_ptr<std::atomic<bool>>> stopped;
  std::vector<std::exception_ptr> failures(addresses.size());
  std::vector<std::thread> threads;
  // However this function is left, the node threads end before their nodes,
  // endpoints and network are destroyed.
  struct Joiner {
    EmulatedNetwork& network;
    std::vector<std::thread>& threads;
    ~Joiner() {
      network.close();
      for (std::thread& thread : threads) {
        if (thread.joinable()) thread.join();
      }
    }
  } joiner{network, threads};
  for (std::size_t i = 0; i < addresses.size(); ++i) stopped.push_back(std::make_unique<std::atomic<bool>>(false));
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        nodes[i]->serve(*endpoints[i], false);
      } catch (const EndpointClosed&) {
        // stopped from outside: a fault, or the run ended without it
      } catch (...) {
        failures[i] = std::current_exception();
      }
      stopped[i]->store(true);
    });
  }

  auto user = network.endpoint(deployment.user());
  Client client(deployment, *user,
                ClientOptions{options.timeout_seconds, options.requests_in_flight, options.on_token});
  std::vector<RequestResult> results;
  std::exception_ptr failure;
  try {
    if (options.warm_up) client.warm_up(prompts.front());
    results = client.run(prompts);
  } catch (...) {
    failure = std::current_exception();
  }
  // Stop the nodes: a shutdown message each, then, for those that do not
  // take it within the timeout (dead or hung), the network closes under them.
  client.shutdown(false);
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_seconds));
  auto all_stopped = [&] {
    return std::all_of(stopped.begin(), stopped.end(), [](const auto& flag) { return flag->load(); });
  };
  while (!all_stopped() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  network.close();
  for (std::thread& thread : threads) thread.join();
  if (failure) std::rethrow_exception(failure);
  for (const std::exception_ptr& node_failure : failures) {
    if (node_failure) std::rethrow_exception(node_failure);
  }

  std::vector<NodeReport> reports;
  for (const auto& node : nodes) reports.push_back(node->report());
  RunReport report = make_report(plan, options.model, deployment, results, reports, network.links(), options.wire,
                                 options.requests_in_flight, options.emulate_speed);
  report.transport = "emulated";
  if (!options.emulate_links) report.notes.push_back("links were not emulated: messages arrived at once");
  if (!options.emulate_speed) report.notes.push_back("server speeds were not emulated: every server ran at this machine's speed");
  return report;
}

}  // namespace dilemma::runtime
