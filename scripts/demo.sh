#!/usr/bin/env bash
# Builds the dilemma CLI (Release, build/release) and runs its demo on the
# bundled assets. Extra arguments are passed on to `dilemma demo`.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
scripts/install-deps.sh

cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DDILEMMA_BUILD_EXAMPLES=ON
cmake --build build/release -j "$(nproc)" --target dilemma_cli
exec build/release/examples/dilemma demo --assets "$repo_root/assets" \
  --cluster "$repo_root/examples/clusters/smart-city.json" "$@"
