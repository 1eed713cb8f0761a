#!/usr/bin/env bash
# ctest fixture for the end-to-end tests: builds the lab images (our pause
# program, Debian's busybox) and starts/stops a private containerd.
#   lab.sh up LABDIR PAUSE_BINARY | lab.sh down LABDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab=${2:?usage: lab.sh up|down LABDIR [PAUSE_BINARY]}
case "$1" in
  up)
    for d in "$lab/containerd" "$lab/knet"; do
      bash "$here/../../deploy/lab/containerd-down.sh" "$d" >/dev/null 2>&1 || true
    done
    rm -rf "$lab"
    mkdir -p "$lab/images"
    bash "$here/../../deploy/lab/build-images.sh" "$lab/images" "${3:-}"
    bash "$here/../../deploy/lab/containerd-up.sh" "$lab/containerd" "$lab/images" runtime
    # A second containerd that leaves the pod network to the kubelet (--network-plugin=cni).
    bash "$here/../../deploy/lab/containerd-up.sh" "$lab/knet" "$lab/images" kubelet
    ;;
  down)
    bash "$here/../../deploy/lab/containerd-down.sh" "$lab/containerd"
    bash "$here/../../deploy/lab/containerd-down.sh" "$lab/knet"
    ;;
  *) echo "usage: lab.sh up|down LABDIR [PAUSE_BINARY]" >&2; exit 2 ;;
esac
