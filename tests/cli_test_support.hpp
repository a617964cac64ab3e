#pragma once
// Runs the `dilemma` tool (or any command line) as a user would and captures
// its output, exit code and wall time.

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <sys/wait.h>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "test_support.hpp"

namespace dilemma::testing {

struct CliRun {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
  double seconds;
};

// A command still running after this long is killed (coreutils' timeout) and
// fails the test with its command line and stderr, instead of stalling the
// suite until CTest's own limit. Judged by the time taken, not by timeout's
// exit code: a test that expects a non-zero exit would take 124 for success.
inline constexpr int command_time_limit_seconds = 120;

inline CliRun run_command(const std::string& command_line) {
  ScratchDir dir;
  // Through a script, so that the line may start with variable assignments.
  write_file(dir / "command.sh", command_line + "\n");
  const std::string command = fmt::format("timeout --kill-after=10 {} sh {} 2>{} </dev/null", command_time_limit_seconds,
                                          (dir / "command.sh").string(), (dir / "stderr").string());
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "", "popen failed", 0.0};
  std::string out;
  std::array<char, 4096> buffer;
  while (const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe)) out.append(buffer.data(), n);
  const int status = pclose(pipe);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CliRun run{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, read_file(dir / "stderr"), seconds};
  if (seconds >= command_time_limit_seconds) {
    FAIL_CHECK(fmt::format("still running after {} s, killed: {}\nstderr:\n{}", command_time_limit_seconds,
                           command_line, run.err));
  }
  return run;
}

inline CliRun run_cli(const std::string& arguments) {
  return run_command(fmt::format("{} {}", DILEMMA_CLI_PATH, arguments));
}

}  // namespace dilemma::testing
