#!/usr/bin/env bash
# Builds the dilemma CLI (Release, build/release) and runs its demo on the
# bundled assets. Extra arguments are passed on to `dilemma demo`.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
scripts/install-deps.sh

# The same configuration as scripts/test.sh's release build (unity builds:
# the header-only library is costly to compile per file), so the two scripts
# share build/release instead of rebuilding it for each other.
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DDILEMMA_BUILD_EXAMPLES=ON \
  -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16
cmake --build build/release -j "$(nproc)" --target dilemma_cli
exec build/release/examples/dilemma demo --assets "$repo_root/assets" \
  --cluster "$repo_root/examples/clusters/smart-city.json" "$@"
