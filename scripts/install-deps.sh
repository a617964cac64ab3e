#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build and test dilemma. Safe to run
# again and again: it installs only what is missing, and refreshes the package
# index only when something is.
set -euo pipefail

# One package per line; append new requirements here.
packages=(
  build-essential
  cmake
  pkg-config
  git
  libeigen3-dev
  coinor-libcbc-dev
  libfmt-dev
  doctest-dev
  nlohmann-json3-dev
  libcli11-dev
  libutf8proc-dev
  openmpi-bin
  libopenmpi-dev
  clang
  libclang-rt-14-dev
)

is_installed() {
  [[ "$(dpkg-query --show --showformat='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
for package in "${packages[@]}"; do
  is_installed "$package" || missing+=("$package")
done
if (( ${#missing[@]} == 0 )); then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi

if (( EUID == 0 )); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "install-deps: these packages are missing: ${missing[*]}" >&2
  echo "install-deps: installing them needs root; run this script as root or install sudo" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -q -y --no-install-recommends "${missing[@]}"

for package in "${missing[@]}"; do
  if ! is_installed "$package"; then
    echo "install-deps: $package is still not installed after apt-get install" >&2
    exit 1
  fi
done
