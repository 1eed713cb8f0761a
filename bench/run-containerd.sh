#!/usr/bin/env bash
# Runs the containerd benchmark on a private containerd (needs root).
#   usage: bench/run-containerd.sh [BUILD_DIR] [window_seconds] [runtime|kubelet]
#          bench/run-containerd.sh [BUILD_DIR] [exec_rounds] streams   (exec and port-forward through the kubelet)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$root/build}")
window=${2:-60}
mode=${3:-runtime}
lab=$build/bench-lab
trap 'bash "$root/test/e2e/lab.sh" down "$lab" >/dev/null 2>&1 || true' EXIT
bash "$root/test/e2e/lab.sh" up "$lab" "$build/bin/pause"
if [ "$mode" = streams ]; then
  KUBELET_E2E_LAB=$lab KUBELET_BINARY=$build/bin/kubelet "$build/bin/kubelet_bench_streams" "$window"
else
  KUBELET_E2E_LAB=$lab KUBELET_BINARY=$build/bin/kubelet "$build/bin/kubelet_bench_containerd" "$window" "$mode"
fi
