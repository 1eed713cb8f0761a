#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz) with Debian's clang-14, ASan and
# UBSan, and runs each for SECONDS (default 30) on a copy of its seed corpus.
# SECONDS=0 replays the seed corpora once (the regression mode CI uses).
# A crash, a leak or a sanitizer report fails the run; the input that caused
# it is left in BUILD_DIR/crashes. Usage: deploy/fuzz.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-fuzz}
secs=${2:-30}
command -v clang++-14 >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null; }
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
  -DCMAKE_CXX_COMPILER=clang++-14 -DKUBELET_FUZZ=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzzers
mkdir -p "$build/crashes"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
ran=0
for corpus in "$root"/test/fuzz/corpus/*/; do
  name=$(basename "$corpus")
  work="$build/corpus/$name"
  mkdir -p "$work"
  cp -n "$corpus"/* "$work"/ 2>/dev/null || true
  if [ "$secs" -eq 0 ]; then
    echo "== fuzz $name: replaying its seed corpus"
    mode=(-runs=0)
  else
    echo "== fuzz $name for ${secs}s"
    mode=(-max_total_time="$secs")
  fi
  if "$build/bin/$name" "${mode[@]}" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$build/crashes/$name-" "$work" >"$build/$name.log" 2>&1; then
    tail -n 1 "$build/$name.log"
    ran=$((ran+1))
  else
    echo "FUZZ FAILURE in $name:"; tail -n 60 "$build/$name.log"; failed=$((failed+1))
  fi
done
echo "fuzz: $ran passed, $failed failed"
[ "$failed" -eq 0 ]
