#!/usr/bin/env bash
# The one command that builds kubelet-cpp and runs every test: unit tests,
# sync-loop tests on the fake CRI runtime, and the end-to-end tests on a
# private containerd (needs root). Usage: deploy/test.sh [BUILD_DIR] [extra cmake args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
# Two at a time: the quick suites run beside the end-to-end suite, which mostly waits on containers.
ctest --test-dir "$build" --output-on-failure -j 2
