// The CLI tests' own harness: a command that outlives its time limit must not
// outlive the test, whatever it started.

#include <chrono>
#include <csignal>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "cli_test_support.hpp"

namespace {

// Whether the process is gone: exited, or a zombie left to whoever reaps orphans.
bool ended(pid_t pid) {
  const auto stat = dilemma::testing::detail::process_stat(pid);
  return !stat || stat->state == 'Z';
}

}  // namespace

// The one expected failure is the harness's own report of the kill.
TEST_CASE("a command past its time limit is killed with every process it started" * doctest::expected_failures(1)) {
  dilemma::testing::ScratchDir dir;
  const std::string pid_file = (dir / "pid").string();
  // As mpirun starts its ranks: in a process group of their own.
  const auto run = dilemma::testing::run_command(
      fmt::format("perl -e 'setpgrp(0, 0); exec @ARGV' sleep 300 & echo $! > {}; sleep 300", pid_file),
      std::chrono::seconds(1));
  CHECK(run.seconds < 10.0);
  const pid_t grandchild = std::stoi(dilemma::testing::read_file(pid_file));
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!ended(grandchild) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(ended(grandchild));
}
