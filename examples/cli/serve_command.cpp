// `dilemma serve`: one Open MPI rank per server of a plan.
//
//   mpirun -np K dilemma serve --model DIR --plan PLAN.json --prompt TEXT
//
// Rank r runs the r-th server that holds stages (cluster order), or the r-th
// name of --ranks. Rank 0 also plays the user: it sends the prompts, prints
// the streamed text and, at the end, the report with every node's
// measurements. When a node dies or stops answering, rank 0 names it and
// ends the job (MpiRouter::stop, or MPI_Abort for a rank that cannot be
// stopped), so that no rank waits forever.

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "runtime_cli.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/runtime/client.hpp"
#include "dilemma/runtime/deployment.hpp"
#include "dilemma/runtime/fault.hpp"
#include "dilemma/runtime/mpi_transport.hpp"
#include "dilemma/runtime/node.hpp"
#include "dilemma/runtime/report.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

struct ServeOptions {
  RuntimeCliOptions runtime;
  std::string ranks;
};

// Which server each rank runs.
std::vector<runtime::Address> rank_servers(const runtime::Deployment& deployment, const std::string& ranks, int size) {
  std::vector<runtime::Address> servers;
  const std::vector<runtime::Address> used = deployment.nodes();
  if (ranks.empty()) {
    servers = used;
  } else {
    std::stringstream list(ranks);
    std::string name;
    while (std::getline(list, name, ',')) {
      servers.push_back(static_cast<runtime::Address>(deployment.cluster.server_index(name, "--ranks")));
    }
    for (runtime::Address server : used) {
      if (std::find(servers.begin(), servers.end(), server) == servers.end()) {
        dilemma::detail::fail("--ranks: server \"{}\" holds stages of the plan but has no rank",
                              deployment.name(server));
      }
    }
    for (std::size_t i = 0; i < servers.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (servers[i] == servers[j]) dilemma::detail::fail("--ranks: server \"{}\" is named twice", deployment.name(servers[i]));
      }
    }
  }
  if (static_cast<int>(servers.size()) != size) {
    std::string names;
    for (runtime::Address server : servers) names += (names.empty() ? "" : ", ") + deployment.name(server);
    dilemma::detail::fail("the plan runs on {} servers ({}), but mpirun started {} ranks: use mpirun -np {}",
                          servers.size(), names, size, servers.size());
  }
  return servers;
}

// Every rank learns whether all ranks got ready; each failed rank printed its own reason.
bool all_ranks_ok(bool ok) {
  int mine = ok ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

int serve(const ServeOptions& options) {
  const RuntimeCliOptions& o = options.runtime;
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  // Everything that can fail before the run, on every rank.
  std::optional<plan::Plan> plan;
  std::optional<model::OptCheckpoint> checkpoint;
  std::optional<runtime::Deployment> deployment;
  std::vector<runtime::Address> servers;
  std::vector<std::string> texts;
  std::vector<std::vector<TokenId>> prompts;
  std::optional<text::BpeTokenizer> tokenizer;
  std::vector<model::Stage> stages;
  std::optional<runtime::Fault> fault;
  runtime::WireFormat wire = runtime::WireFormat::f32;
  quant::ActivationPrecision activations = quant::ActivationPrecision::f32;
  bool ok = true;
  try {
    plan = plan::Plan::load(o.plan_file);
    checkpoint = model::OptCheckpoint::open(o.model_dir);
    tokenizer = text::BpeTokenizer::load(o.model_dir);
    texts = prompt_texts(o);
    for (const std::string& text : texts) prompts.push_back(tokenizer->encode(text));
    wire = runtime::parse_wire_format(o.wire, "--wire");
    activations = quant::parse_activation_precision(o.activations, "--activations");
    runtime::RequestShape shape;
    for (const auto& prompt : prompts) {
      shape.prompt_tokens = std::max<std::int64_t>(shape.prompt_tokens, static_cast<std::int64_t>(prompt.size()));
    }
    shape.new_tokens = o.new_tokens;
    shape.requests_in_flight = static_cast<std::int64_t>(std::min(o.in_flight, prompts.size()));
    std::optional<edge::Cluster> cluster;
    if (!o.cluster_file.empty()) cluster = edge::Cluster::load(o.cluster_file);
    deployment = runtime::deploy(*plan, checkpoint->config(), shape, {0, cluster, scheme_of(o)});
    servers = rank_servers(*deployment, options.ranks, size);
    if (!o.fault.empty()) {
      fault = runtime::parse_fault(o.fault, "--inject-fault");
      deployment->cluster.server_index(fault->server, "--inject-fault");
    }
    stages = runtime::load_node_stages(*checkpoint, *deployment, servers[static_cast<std::size_t>(rank)]);
  } catch (const dilemma::Error& e) {
    // Every rank sees the same plan and options: rank 0 speaks for them,
    // except for what only one rank can see (its own node's memory).
    if (rank == 0 || servers.size() == static_cast<std::size_t>(size)) {
      fmt::print(stderr, "error: {}{}\n", rank == 0 ? "" : fmt::format("rank {}: ", rank), e.what());
    }
    ok = false;
  }
  if (!all_ranks_ok(ok)) return 1;

  const runtime::Address self = servers[static_cast<std::size_t>(rank)];
  std::vector<int> rank_of(deployment->cluster.servers.size() + 1, -1);
  for (std::size_t r = 0; r < servers.size(); ++r) rank_of[servers[r]] = static_cast<int>(r);
  rank_of[deployment->user()] = 0;
  runtime::MpiRouter router(MPI_COMM_WORLD, rank_of);

  runtime::NodeOptions node_options;
  node_options.generation = {o.new_tokens, !o.no_stop_at_eos};
  node_options.wire = wire;
  node_options.context.kernels.activations = activations;
  node_options.emulate_speed = false;  // real servers run at their own speed
  runtime::Node node(*deployment, self, std::move(stages), node_options);
  std::unique_ptr<runtime::Endpoint> node_endpoint = router.endpoint(self, deployment->label(self));
  if (fault && deployment->cluster.server_index(fault->server, "--inject-fault") == self) {
    // A crash, as the fault test wants it: the process ends without a word.
    node_endpoint = std::make_unique<runtime::FaultyEndpoint>(std::move(node_endpoint), *fault,
                                                              [] { std::_Exit(137); });
  }
  std::atomic<bool> node_done = false;
  std::thread node_thread([&] {
    try {
      node.serve(*node_endpoint, true);
    } catch (const runtime::EndpointClosed&) {
    } catch (const std::exception& e) {
      fmt::print(stderr, "error: {}: {}\n", deployment->label(self), e.what());
    }
    node_done = true;
  });

  MPI_Barrier(MPI_COMM_WORLD);
  std::atomic<bool> client_done = rank != 0;
  std::exception_ptr failure;
  std::vector<runtime::RequestResult> results;
  std::vector<runtime::NodeReport> reports;
  std::vector<runtime::Address> missing;
  std::unique_ptr<runtime::Endpoint> user_endpoint;
  std::thread client_thread;
  const bool stream = !o.json && prompts.size() == 1;
  if (rank == 0) {
    user_endpoint = router.endpoint(deployment->user(), deployment->label(deployment->user()));
    client_thread = std::thread([&] {
      runtime::ClientOptions client_options{o.timeout, o.in_flight, {}};
      if (stream) {
        fmt::print("{}", texts.front());
        std::fflush(stdout);
        client_options.on_token = [&](std::size_t, TokenId id) {
          const TokenId one[] = {id};
          fmt::print("{}", tokenizer->decode_bytes(one));
          std::fflush(stdout);
        };
      }
      runtime::Client client(*deployment, *user_endpoint, client_options);
      try {
        if (!o.no_warm_up) client.warm_up(prompts.front());
        results = client.run(prompts);
      } catch (...) {
        failure = std::current_exception();
      }
      reports = client.shutdown(true);
      missing = client.missing_reports();
      client_done = true;
    });
  }
  // A rank whose node was told to stop keeps pumping until its report left;
  // rank 0 does not wait for its own node when the client gave up on it.
  auto is_missing = [&](runtime::Address node) { return std::ranges::find(missing, node) != missing.end(); };
  router.pump_until([&] { return client_done.load() && (node_done.load() || is_missing(self)); });
  if (client_thread.joinable()) client_thread.join();
  router.close();  // a node still serving (failed, or asked to stop by rank 0) ends here
  node_thread.join();
  if (rank != 0) return 0;

  int status = 0;
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const dilemma::Error& e) {
      fmt::print(stderr, "{}error: {}\n", stream ? "\n" : "", e.what());
      status = 1;
    }
  } else {
    runtime::RunReport report = runtime::make_report(*plan, 0, *deployment, results, reports, std::nullopt, wire,
                                                     o.in_flight, false);
    report.transport = "mpi";
    for (runtime::Address node_address : missing) {
      report.notes.push_back(fmt::format("{} sent no report", deployment->label(node_address)));
    }
    print_run(report, *tokenizer, texts, o.json, stream);
  }
  if (!missing.empty()) {
    status = status == 0 ? 1 : status;
    std::vector<int> failed_ranks;
    for (runtime::Address node : missing) {
      const int failed = rank_of[node];
      if (failed != 0 && std::ranges::find(failed_ranks, failed) == failed_ranks.end()) failed_ranks.push_back(failed);
    }
    // A rank that cannot be stopped will never reach MPI_Finalize: end the job.
    if (!router.stop(failed_ranks, std::chrono::duration<double>(o.timeout))) {
      std::fflush(stdout);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, status);
    }
  }
  return status;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto options = std::make_shared<ServeOptions>();
  auto* command = app.add_subcommand(
      "serve", "One Open MPI rank per server: mpirun -np K dilemma serve --model DIR --plan PLAN.json --prompt TEXT");
  add_runtime_options(*command, options->runtime);
  command->add_option("--ranks", options->ranks,
                      "Comma-separated server names, one per rank (default: the plan's servers in cluster order)");
  command->callback([options] {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    int status = 0;
    try {
      status = serve(*options);
    } catch (...) {
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    MPI_Finalize();
    if (status != 0) std::exit(status);
  });
}

}  // namespace dilemma::cli
