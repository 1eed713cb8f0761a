#!/usr/bin/env bash
# ctest fixture for the end-to-end tests: builds the lab images (our pause
# program, Debian's busybox), starts a loopback registry holding some of them,
# and starts/stops the private containerds (runtime network mode, kubelet
# network mode, and one for the image GC test).
#   lab.sh up LABDIR PAUSE_BINARY | lab.sh down LABDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab=${2:?usage: lab.sh up|down LABDIR [PAUSE_BINARY]}
# What kubelets under test mounted in the lab (their rshared root directories, volumes), deepest first: nothing is
# ever deleted through a mount.
unmount_lab() {
  local real
  real=$(realpath -m "$lab")
  awk -v p="$real" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
case "$1" in
  up)
    for d in "$lab/containerd" "$lab/knet" "$lab/gc"; do
      bash "$here/../../deploy/lab/containerd-down.sh" "$d" >/dev/null 2>&1 || true
    done
    bash "$here/../../deploy/lab/registry-down.sh" "$lab/registry" >/dev/null 2>&1 || true
    unmount_lab
    rm -rf "$lab"
    mkdir -p "$lab/images"
    bash "$here/../../deploy/lab/build-images.sh" "$lab/images" "${3:-}"
    bash "$here/../../deploy/lab/registry-up.sh" "$lab/registry" "$lab/images"
    . "$lab/registry/env"
    bash "$here/../../deploy/lab/containerd-up.sh" "$lab/containerd" "$lab/images" runtime "$REGISTRY"
    # A second containerd that leaves the pod network to the kubelet (--network-plugin=cni).
    bash "$here/../../deploy/lab/containerd-up.sh" "$lab/knet" "$lab/images" kubelet
    # A third whose images the image GC test may remove.
    bash "$here/../../deploy/lab/containerd-up.sh" "$lab/gc" "$lab/images" runtime "$REGISTRY"
    ;;
  down)
    bash "$here/../../deploy/lab/containerd-down.sh" "$lab/containerd"
    bash "$here/../../deploy/lab/containerd-down.sh" "$lab/knet"
    bash "$here/../../deploy/lab/containerd-down.sh" "$lab/gc"
    bash "$here/../../deploy/lab/registry-down.sh" "$lab/registry"
    unmount_lab
    ;;
  *) echo "usage: lab.sh up|down LABDIR [PAUSE_BINARY]" >&2; exit 2 ;;
esac
