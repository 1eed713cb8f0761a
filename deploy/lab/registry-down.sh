#!/usr/bin/env bash
# Stops the registry started by registry-up.sh DIR.
set -uo pipefail
dir=$(realpath -m "${1:?usage: registry-down.sh DIR}")
if [ -f "$dir/registry.pid" ]; then
  pid=$(cat "$dir/registry.pid")
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$dir/registry.pid"
fi
true
