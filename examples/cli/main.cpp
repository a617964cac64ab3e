// `dilemma`: generate, tokenize, score and inspect OPT models from the shell.
// Exit codes: 0 success, 1 bad input (a dilemma::Error, printed to stderr),
// CLI11's codes (>= 100) for command-line mistakes, 2 when `plan` finds no plan, 3 for anything unexpected.

#include <cstdio>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <fmt/format.h>

#include "commands.hpp"
#include "dilemma/error.hpp"
#include "dilemma/version.hpp"

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // One malloc arena for every thread. The runtime's nodes are threads (all
  // of them on the emulated cluster, one per rank under MPI), and with
  // glibc's per-thread arenas a node's stages met fresh pages again in every
  // request: in a tiny-opt run, the first stage of one node and the last of
  // another took 1.5–2× their profiled prefill time, request after request,
  // warm-up or not; with one arena they match it (docs/runtime.md). The
  // nodes rarely allocate at the same moment, so the shared arena's lock
  // costs nothing measurable.
  mallopt(M_ARENA_MAX, 1);
#endif
  CLI::App app{"dilemma: plan and run OPT language models across small edge servers", "dilemma"};
  app.set_version_flag("--version", dilemma::version_string);
  app.require_subcommand(1);
  dilemma::cli::add_demo_command(app);
  dilemma::cli::add_generate_command(app);
  dilemma::cli::add_tokenize_command(app);
  dilemma::cli::add_logits_command(app);
  dilemma::cli::add_eval_command(app);
  dilemma::cli::add_run_command(app, argv);
  dilemma::cli::add_plan_command(app);
  dilemma::cli::add_profile_command(app);
  dilemma::cli::add_quantize_command(app);
#ifdef DILEMMA_HAVE_MPI
  dilemma::cli::add_serve_command(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {  // also CLI::RuntimeError, a command's own exit code (plan's 2)
    return app.exit(e);
  } catch (const dilemma::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "internal error: {}\n", e.what());
    return 3;
  }
  return 0;
}
