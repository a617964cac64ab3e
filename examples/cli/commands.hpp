#pragma once
// Each subcommand of the `dilemma` tool registers its options on the CLI11 app
// together with a callback that runs it once the command line is parsed.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "dilemma/token_id.hpp"

namespace dilemma::cli {

void add_demo_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_plan_command(CLI::App& app);
void add_profile_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
// `run` re-executes itself under mpirun for --transport mpi, hence argv.
void add_run_command(CLI::App& app, char** argv);
#ifdef DILEMMA_HAVE_MPI
void add_serve_command(CLI::App& app);
#endif

// Parses "2,100,7" into token ids; `option` names the flag in errors.
std::vector<TokenId> parse_id_list(const std::string& text, const std::string& option);

}  // namespace dilemma::cli
