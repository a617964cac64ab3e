#!/usr/bin/env bash
# The measured half of docs/results.md in one command: builds measured_study
# (benchmarks/planner/measured_study.cpp) into build/study and runs it into
# docs/results/measured.csv. Every sweep point of every example cluster gets a
# plan from tiny-opt's stage times profiled on this machine, the plan runs on
# the emulated cluster, and the row sets measured against predicted delay
# next to the student's loss. About 1.5 minutes on a 2-core machine after the
# build; keep the machine otherwise idle, the delays are measured.
#
#   scripts/measured_study.sh [--time-limit SECONDS] [--requests N]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build/study"

cmake -S "${root}" -B "${build}" -DCMAKE_BUILD_TYPE=Release -DDILEMMA_BUILD_TESTS=OFF -DDILEMMA_BUILD_EXAMPLES=OFF \
  -DDILEMMA_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "${build}" -j"$(nproc)" --target measured_study

mkdir -p "${root}/docs/results"
"${build}/benchmarks/planner/measured_study" --out "${root}/docs/results/measured.csv" "$@"
