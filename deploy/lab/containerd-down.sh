#!/usr/bin/env bash
# Stops the containerd started by containerd-up.sh DIR and everything it ran:
# pod sandboxes, shims, mounts, the CNI bridge. usage: containerd-down.sh DIR
set -uo pipefail
dir=$(realpath -m "${1:?usage: containerd-down.sh DIR}")
[ -f "$dir/env" ] && . "$dir/env"
sock="$dir/containerd.sock"
if [ -S "$sock" ]; then
  for c in $(ctr -n k8s.io --address "$sock" tasks ls -q 2>/dev/null); do
    ctr -n k8s.io --address "$sock" tasks kill -s SIGKILL "$c" >/dev/null 2>&1
  done
fi
if [ -f "$dir/containerd.pid" ]; then
  pid=$(cat "$dir/containerd.pid")
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$dir/containerd.pid"
fi
# shims outlive containerd by design: end the ones rooted in this folder.
for p in $(pgrep -f "containerd-shim.*$dir" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
sleep 0.2
grep -F "$dir" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
[ -n "${CGROUP_ROOT:-}" ] && bash "$(dirname "$0")/cgroup-root.sh" down "$CGROUP_ROOT"
[ -n "${CNI_BRIDGE:-}" ] && ip link del "$CNI_BRIDGE" 2>/dev/null
[ -n "${CNI_DUMMY:-}" ] && ip link del "$CNI_DUMMY" 2>/dev/null
true
