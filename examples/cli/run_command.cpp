// `dilemma run`: runs a plan on the emulated edge cluster in this process
// (the default), or hands it to mpirun (`--transport mpi`), which starts one
// `dilemma serve` rank per server.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "runtime_cli.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/runtime/run.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

namespace {

struct RunCommandOptions {
  RuntimeCliOptions runtime;
  std::string transport = "emulated";
  bool no_emulate_speed = false;
  bool no_emulate_links = false;
};

// Replaces this process with `mpirun -np K dilemma serve ...`, K being the
// number of servers the plan uses.
[[noreturn]] void exec_mpirun(std::size_t ranks, char** argv) {
#ifdef DILEMMA_HAVE_MPI
  std::vector<std::string> args = {"mpirun", "--oversubscribe", "-np", std::to_string(ranks)};
  if (geteuid() == 0) args.push_back("--allow-run-as-root");
  args.push_back(std::filesystem::read_symlink("/proc/self/exe").string());
  args.push_back("serve");
  // The run's own options, except those that only `run` takes.
  bool skip_value = false;
  for (char** arg = argv + 2; *arg; ++arg) {
    const std::string value = *arg;
    if (skip_value) {
      skip_value = false;
      continue;
    }
    if (value == "--transport") {
      skip_value = true;
      continue;
    }
    if (value.starts_with("--transport=") || value == "--no-emulate-speed" || value == "--no-emulate-links") continue;
    args.push_back(value);
  }
  std::vector<char*> pointers;
  for (std::string& arg : args) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  std::fflush(stdout);
  execvp("mpirun", pointers.data());
  dilemma::detail::fail("--transport mpi: cannot start mpirun (is openmpi-bin installed?)");
#else
  (void)ranks;
  (void)argv;
  dilemma::detail::fail(
      "--transport mpi: this dilemma was built without MPI (install libopenmpi-dev and configure with "
      "-DDILEMMA_WITH_MPI=ON)");
#endif
}

void run_run(const RunCommandOptions& options, char** argv) {
  const RuntimeCliOptions& o = options.runtime;
  const auto plan = plan::Plan::load(o.plan_file);
  if (options.transport == "mpi") {
    if (options.no_emulate_speed || options.no_emulate_links) {
      dilemma::detail::fail("--no-emulate-speed and --no-emulate-links apply to the emulated transport only");
    }
    if (!plan.has_plan()) dilemma::detail::fail("{}: the plan has no assignment to run", o.plan_file);
    std::vector<std::size_t> servers;
    for (const auto& placement : plan.assignments.front()) servers.push_back(placement.server);
    std::sort(servers.begin(), servers.end());
    servers.erase(std::unique(servers.begin(), servers.end()), servers.end());
    exec_mpirun(servers.size(), argv);
  }
  if (options.transport != "emulated") {
    dilemma::detail::fail("--transport: unknown transport \"{}\" (expected emulated or mpi)", options.transport);
  }
  const auto tokenizer = text::BpeTokenizer::load(o.model_dir);
  const std::vector<std::string> texts = prompt_texts(o);
  std::vector<std::vector<TokenId>> prompts;
  for (const std::string& text : texts) prompts.push_back(tokenizer.encode(text));

  runtime::RunOptions run;
  if (!o.cluster_file.empty()) run.cluster = edge::Cluster::load(o.cluster_file);
  run.scheme = scheme_of(o);
  run.generation = {o.new_tokens, !o.no_stop_at_eos};
  run.wire = runtime::parse_wire_format(o.wire, "--wire");
  run.activations = quant::parse_activation_precision(o.activations, "--activations");
  run.requests_in_flight = o.in_flight;
  run.timeout_seconds = o.timeout;
  run.emulate_speed = !options.no_emulate_speed;
  run.emulate_links = !options.no_emulate_links;
  run.warm_up = !o.no_warm_up;
  if (!o.fault.empty()) run.faults.push_back(runtime::parse_fault(o.fault, "--inject-fault"));
  // Stream the text of a lone request as it is generated.
  const bool stream = !o.json && prompts.size() == 1;
  if (stream) {
    fmt::print("{}", texts.front());
    std::fflush(stdout);
    run.on_token = [&](std::size_t, TokenId id) {
      const TokenId one[] = {id};
      fmt::print("{}", tokenizer.decode_bytes(one));
      std::fflush(stdout);
    };
  }
  const runtime::RunReport report = runtime::run_plan(o.model_dir, plan, prompts, run);
  print_run(report, tokenizer, texts, o.json, stream);
}

}  // namespace

void add_run_command(CLI::App& app, char** argv) {
  auto options = std::make_shared<RunCommandOptions>();
  auto* command = app.add_subcommand(
      "run", "Run a plan across the cluster's nodes: emulated in this process, or on Open MPI ranks");
  add_runtime_options(*command, options->runtime);
  command->add_option("--transport", options->transport, "emulated (one process, links and speeds emulated) or mpi")
      ->capture_default_str();
  command->add_flag("--no-emulate-speed", options->no_emulate_speed,
                    "Run every server at this machine's speed instead of its speed_factor");
  command->add_flag("--no-emulate-links", options->no_emulate_links, "Deliver messages at once");
  command->callback([options, argv] { run_run(*options, argv); });
}

}  // namespace dilemma::cli
