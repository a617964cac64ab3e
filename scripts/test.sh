#!/usr/bin/env bash
# Builds dilemma with its tests, examples and benchmarks and runs the test
# suite.
#   scripts/test.sh              Release build in build/release
#   scripts/test.sh --sanitize   ASan + UBSan build in build/sanitize
set -euo pipefail

usage() { sed -n '2,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

sanitize=false
for argument in "$@"; do
  case "$argument" in
    --sanitize) sanitize=true ;;
    -h | --help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument '$argument'" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh

jobs="$(nproc)"
# Every test and example file includes the whole header-only library, whose
# front end costs ~20 s per translation unit; unity builds compile each
# target's files together and cut the build time severalfold.
unity=(-DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16)
if "$sanitize"; then
  build_dir=build/sanitize
  # Clang, so that the suite also builds with a second compiler, and because
  # it compiles this code base in about half of GCC's time: 40% less per file,
  # and its precompiled headers keep template instantiations (CMakeLists.txt).
  # -O1 keeps the sanitized suite fast enough, -g1 (line tables) keeps stack
  # traces readable at a fraction of full debug info's compile time; no
  # NDEBUG, so assertions (Eigen's bounds checks among them) run. No install
  # rules: the release build tests the installed package.
  cmake -S . -B "$build_dir" \
    -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DDILEMMA_SANITIZE=ON \
    -DDILEMMA_INSTALL=OFF \
    -DDILEMMA_BUILD_TESTS=ON \
    -DDILEMMA_BUILD_EXAMPLES=ON \
    -DDILEMMA_BUILD_BENCHMARKS=OFF \
    "${unity[@]}"
  # Any report fails the test that caused it; the caller's own settings,
  # appended last, take precedence.
  # No detect_stack_use_after_return: GCC 12's fake stack frames are only
  # 32-byte aligned, and the 64-byte aligned AVX-512 loads of Eigen's stack
  # temporaries (vmovdqa64, -march=native) then fault inside Eigen's LLT.
  export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1:halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  # Leaks inside third-party libraries (CoinUtils) are listed, with reasons,
  # in tests/lsan.supp.
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
else
  build_dir=build/release
  cmake -S . -B "$build_dir" \
    -DCMAKE_BUILD_TYPE=Release \
    -DDILEMMA_BUILD_TESTS=ON \
    -DDILEMMA_BUILD_EXAMPLES=ON \
    -DDILEMMA_BUILD_BENCHMARKS=ON \
    "${unity[@]}"
fi

cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure --parallel "${CTEST_PARALLEL_LEVEL:-$jobs}"
