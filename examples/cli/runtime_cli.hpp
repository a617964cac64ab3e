#pragma once
// Options and output shared by `dilemma run` (emulated cluster) and
// `dilemma serve` (Open MPI): the plan, the prompts, the generation and wire
// settings, and how a run's tokens and report are printed.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/quant/activations.hpp"
#include "dilemma/runtime/fault.hpp"
#include "dilemma/runtime/report.hpp"
#include "dilemma/text/bpe_tokenizer.hpp"

namespace dilemma::cli {

struct RuntimeCliOptions {
  std::string model_dir;
  std::string plan_file;
  std::string cluster_file;
  std::string prompt;
  std::string requests_file;
  int new_tokens = 16;
  bool no_stop_at_eos = false;
  std::size_t in_flight = 1;
  std::string wire = "f32";
  std::string activations = "f32";
  std::int64_t group_size = 64;
  bool int4_asymmetric = false;
  double timeout = 10.0;
  std::string fault;
  bool no_warm_up = false;
  bool json = false;
};

inline void add_runtime_options(CLI::App& command, RuntimeCliOptions& options) {
  command.add_option("--model", options.model_dir, "Hugging Face OPT model directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  command.add_option("--plan", options.plan_file, "Plan JSON written by `dilemma plan`")
      ->required()
      ->check(CLI::ExistingFile);
  command.add_option("--cluster", options.cluster_file,
                     "Run on this cluster JSON instead of the one the plan was made for (servers matched by name)")
      ->check(CLI::ExistingFile);
  auto* prompt = command.add_option("--prompt", options.prompt, "One prompt (BOS is prepended as OPT expects)");
  auto* requests = command.add_option("--requests", options.requests_file, "JSON array of prompts, one request each")
                       ->check(CLI::ExistingFile);
  prompt->excludes(requests);
  command.add_option("--new-tokens", options.new_tokens, "Tokens to generate per request (greedy)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command.add_flag("--no-stop-at-eos", options.no_stop_at_eos, "Keep generating after </s>");
  command.add_option("--in-flight", options.in_flight,
                     "Requests in flight at once: 1 = latency mode, more = throughput mode (pipelined)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command.add_option("--wire", options.wire, "Activations on the wire: f32 (exact) or f16 (half the bytes)")
      ->capture_default_str();
  command.add_option("--activations", options.activations,
                     "Activations of the int8/int4 stages' products: f32, bf16 or int8 (faster; profile the plan's "
                     "costs with the same setting)")
      ->capture_default_str()
      ->check(CLI::IsMember(quant::activation_precision_names()));
  command.add_option("--group-size", options.group_size, "Group size of integer formats (as the plan was made with)")
      ->capture_default_str();
  command.add_flag("--int4-asymmetric", options.int4_asymmetric, "int4 with per-group offsets");
  command.add_option("--timeout", options.timeout,
                     "Seconds without a token before the nodes are pinged, and for their answer")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command.add_option("--inject-fault", options.fault,
                     "Testing: SERVER:MESSAGES:die|hang|corrupt strikes SERVER after it sent MESSAGES messages "
                     "(of the measured requests)");
  command.add_flag("--no-warm-up", options.no_warm_up,
                   "Measure from the first request (by default the first prompt runs once, unmeasured, before)");
  command.add_flag("--json", options.json, "Print the report as JSON");
}

// The prompts' texts: --prompt, or the --requests file.
inline std::vector<std::string> prompt_texts(const RuntimeCliOptions& options) {
  if (!options.prompt.empty()) return {options.prompt};
  if (options.requests_file.empty()) dilemma::detail::fail("give --prompt TEXT or --requests FILE");
  std::ifstream in(options.requests_file);
  if (!in) dilemma::detail::fail("{}: cannot open the requests file", options.requests_file);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    dilemma::detail::fail("{}: invalid JSON: {}", options.requests_file, e.what());
  }
  if (!json.is_array() || json.empty()) {
    dilemma::detail::fail("{}: expected a non-empty JSON array of prompt strings", options.requests_file);
  }
  std::vector<std::string> texts;
  for (std::size_t i = 0; i < json.size(); ++i) {
    if (!json[i].is_string()) {
      dilemma::detail::fail("{}: [{}]: expected a prompt string, got {}", options.requests_file, i, json[i].dump());
    }
    texts.push_back(json[i].get<std::string>());
  }
  return texts;
}

inline quant::QuantScheme scheme_of(const RuntimeCliOptions& options) {
  return {options.group_size, options.int4_asymmetric};
}

// The report as JSON (with each request's text) or as text and a table.
inline void print_run(const runtime::RunReport& report, const text::BpeTokenizer& tokenizer,
                      const std::vector<std::string>& prompts, bool json, bool streamed) {
  if (json) {
    nlohmann::json out = report.to_json();
    for (std::size_t i = 0; i < report.requests.size(); ++i) {
      out["requests"][i]["prompt"] = prompts[i];
      out["requests"][i]["text"] = tokenizer.decode(report.requests[i].tokens);
    }
    fmt::print("{}\n", out.dump(2));
    return;
  }
  if (streamed) {
    fmt::print("\n\n");
  } else {
    for (std::size_t i = 0; i < report.requests.size(); ++i) {
      fmt::print("request {}: {}{}\n", i, prompts[i], tokenizer.decode(report.requests[i].tokens));
    }
    fmt::print("\n");
  }
  fmt::print("{}", report.table());
}

}  // namespace dilemma::cli
