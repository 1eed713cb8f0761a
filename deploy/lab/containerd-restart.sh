#!/usr/bin/env bash
# Restarts the containerd of containerd-up.sh DIR in place (same config and
# state): its shims, and so the running containers, survive, as on a node.
#   usage: containerd-restart.sh DIR
set -euo pipefail
dir=$(realpath -m "${1:?usage: containerd-restart.sh DIR}")
sock="$dir/containerd.sock"
pid=$(cat "$dir/containerd.pid")
kill "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && { echo "containerd-restart: containerd $pid did not stop" >&2; exit 1; }
setsid containerd --config "$dir/config.toml" >>"$dir/containerd.log" 2>&1 < /dev/null &
echo $! > "$dir/containerd.pid"
for _ in $(seq 1 100); do
  ctr --address "$sock" version >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "containerd-restart: no socket after 10s" >&2
exit 1
