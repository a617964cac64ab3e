#pragma once
// Runs the `dilemma` tool (or any command line) as a user would and captures
// its output, exit code and wall time.

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <fcntl.h>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <vector>
#include <unistd.h>

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

// A command still running after this long is killed and fails the test with
// its command line, its processes and stderr, instead of stalling the suite
// until CTest's own limit. The slowest commands (MPI jobs, sanitized) take
// seconds; five hung commands still fail a test file within CTest's 600 s.
inline constexpr auto command_time_limit = std::chrono::seconds(60);

namespace detail {

struct ProcessStat {
  char state;  // 'Z' for a zombie
  long session;
};

// A process's state and session, from /proc/PID/stat ("pid (comm) state ppid
// pgrp session ..."; comm may hold spaces and parentheses); nothing once the
// process is gone.
inline std::optional<ProcessStat> process_stat(pid_t pid) {
  const std::string stat = read_file(fmt::format("/proc/{}/stat", pid));
  const std::size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos) return std::nullopt;
  ProcessStat result{};
  long ppid = 0, group = 0;
  if (std::sscanf(stat.c_str() + comm_end + 1, " %c %ld %ld %ld", &result.state, &ppid, &group, &result.session) != 4) {
    return std::nullopt;
  }
  return result;
}

// The processes of a session, from /proc: mpirun puts every rank in a process
// group of its own, so a group kill would miss them.
inline std::vector<pid_t> session_members(pid_t session) {
  std::vector<pid_t> members;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    if (const auto stat = process_stat(pid); stat && stat->session == session) members.push_back(pid);
  }
  return members;
}

inline void signal_session(pid_t session, int signal) {
  for (pid_t member : session_members(session)) kill(member, signal);
}

// What was still running, for the failure message: `ps` of every member.
inline std::string session_listing(pid_t session) {
  std::string listing;
  for (pid_t member : session_members(session)) {
    std::string command = read_file(fmt::format("/proc/{}/cmdline", member));
    std::replace(command.begin(), command.end(), '\0', ' ');
    listing += fmt::format("  {} {}\n", member, command);
  }
  return listing;
}

// Whether the command's shell has ended. It stays unreaped (a zombie keeps
// its session id from being reused) until the whole session is killed.
inline bool has_ended(pid_t shell) {
  siginfo_t ended{};
  return waitid(P_PID, static_cast<id_t>(shell), &ended, WEXITED | WNOHANG | WNOWAIT) != 0 || ended.si_pid != 0;
}

// Ends a command that ran out of time: SIGTERM first, so that mpirun can take
// its ranks down; the final SIGKILL is the caller's.
inline void terminate_session(pid_t session) {
  signal_session(session, SIGTERM);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < give_up && !has_ended(session)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace detail

// The command runs through `sh` (so the line may start with variable
// assignments) in a session of its own, with its output in files rather than
// a pipe: a grandchild that outlives the shell (an MPI rank, say) can neither
// keep the test waiting for end of file nor escape the kill on timeout.
inline CliRun run_command(const std::string& command_line,
                          std::chrono::seconds time_limit = command_time_limit) {
  ScratchDir dir;
  const std::string script = (dir / "command.sh").string();
  const std::string out_path = (dir / "stdout").string();
  const std::string err_path = (dir / "stderr").string();
  write_file(script, command_line + "\n");

  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&files, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID);
  const char* argv[] = {"sh", script.c_str(), nullptr};

  const auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int spawn_error =
      posix_spawn(&pid, "/bin/sh", &files, &attributes, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attributes);
  if (spawn_error != 0) return {-1, "", fmt::format("posix_spawn failed: {}", std::strerror(spawn_error)), 0.0};

  bool timed_out = false;
  std::string still_running;
  while (!detail::has_ended(pid)) {
    if (std::chrono::steady_clock::now() - start >= time_limit) {
      timed_out = true;
      still_running = detail::session_listing(pid);
      detail::terminate_session(pid);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Nothing of the command may outlive it, finished or not.
  detail::signal_session(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CliRun run{WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(out_path), read_file(err_path), seconds};
  if (timed_out) {
    FAIL_CHECK(fmt::format("still running after {} s, killed: {}\nits processes then:\n{}stderr:\n{}",
                           time_limit.count(), command_line, still_running, run.err));
  }
  return run;
}

inline CliRun run_cli(const std::string& arguments) {
  return run_command(fmt::format("{} {}", DILEMMA_CLI_PATH, arguments));
}

}  // namespace dilemma::testing
