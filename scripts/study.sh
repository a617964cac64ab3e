#!/usr/bin/env bash
# The planner study of docs/results.md, in one command: builds plan_study
# (benchmarks/planner/plan_study.cpp) into build/study, runs it into
# docs/results/study.csv, and plots the CSV with gnuplot into
# docs/results/*.svg. Installs gnuplot-nox with apt-get if gnuplot is missing
# (as root, or with sudo).
#
#   scripts/study.sh [--time-limit SECONDS]   (CBC's limit per plan, default 120)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build/study"
results="${root}/docs/results"
time_limit=120
while [[ $# -gt 0 ]]; do
  case "$1" in
    --time-limit) time_limit="$2"; shift 2 ;;
    *) echo "study.sh: unknown argument $1 (expected --time-limit SECONDS)" >&2; exit 1 ;;
  esac
done

if ! command -v gnuplot >/dev/null; then
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  ${sudo} apt-get update
  ${sudo} apt-get install -y --no-install-recommends gnuplot-nox
fi

cmake -S "${root}" -B "${build}" -DCMAKE_BUILD_TYPE=Release -DDILEMMA_BUILD_TESTS=OFF -DDILEMMA_BUILD_EXAMPLES=OFF \
  -DDILEMMA_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "${build}" -j"$(nproc)" --target plan_study

mkdir -p "${results}"
"${build}/benchmarks/planner/plan_study" --time-limit "${time_limit}" --out "${results}/study.csv"

# One plot per model and sweep; a method's missing points are the ones where
# it found no plan (see the CSV's status column).
cd "${results}"
gnuplot <<'GNUPLOT'
set datafile separator ","
set terminal svg size 760,460 dynamic font "sans,12"
set key outside right top
set grid
methods = "dilemma greedy single-server-f32 placement-only-f32 uniform-int8 uniform-int4"
select(model, sweep, method, column) = sprintf("< awk -F, '$1==\"%s\" && $2==\"%s\" && $4==\"%s\" && $%d!=\"\" {print $3\",\"$%d}' study.csv", model, sweep, method, column, column)
do for [model in "tiny-opt opt-350m"] {
  set output sprintf("%s-budget-delay.svg", model)
  set title sprintf("%s: completion time (128 prompt + 32 new tokens) vs accuracy budget", model)
  set xlabel "accuracy budget (share of the all-int4 error)"
  set ylabel "completion time (s)"
  unset logscale
  plot for [m in methods] select(model, "budget", m, 6) using 1:2 with linespoints title m
  set output sprintf("%s-budget-ratio.svg", model)
  set title sprintf("%s: quantization ratio (bits used / f32 bits) vs accuracy budget", model)
  set ylabel "quantization ratio"
  plot for [m in methods] select(model, "budget", m, 11) using 1:2 with linespoints title m
  set output sprintf("%s-bandwidth.svg", model)
  set title sprintf("%s: completion time vs link bandwidth (budget 30%% of all-int4)", model)
  set xlabel "every link's bandwidth × factor"
  set ylabel "completion time (s)"
  set logscale xy
  plot for [m in methods] select(model, "bandwidth", m, 6) using 1:2 with linespoints title m
  set output sprintf("%s-speed.svg", model)
  set title sprintf("%s: completion time vs server speed (budget 30%% of all-int4)", model)
  set xlabel "every server's peak FLOP/s and memory bandwidth × factor"
  plot for [m in methods] select(model, "speed", m, 6) using 1:2 with linespoints title m
}
GNUPLOT
echo "study: ${results}/study.csv and $(ls "${results}"/*.svg | wc -l) plots in ${results}"
