#!/usr/bin/env bash
# ctest fixture for the end-to-end tests: builds the lab images (our pause
# program, Debian's busybox) and starts/stops a private containerd.
#   lab.sh up LABDIR PAUSE_BINARY | lab.sh down LABDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab=${2:?usage: lab.sh up|down LABDIR [PAUSE_BINARY]}
case "$1" in
  up)
    bash "$here/../../deploy/lab/containerd-down.sh" "$lab" >/dev/null 2>&1 || true
    rm -rf "$lab"
    mkdir -p "$lab/images"
    bash "$here/../../deploy/lab/build-images.sh" "$lab/images" "${3:-}"
    bash "$here/../../deploy/lab/containerd-up.sh" "$lab/containerd" "$lab/images"
    ;;
  down)
    bash "$here/../../deploy/lab/containerd-down.sh" "$lab/containerd"
    ;;
  *) echo "usage: lab.sh up|down LABDIR [PAUSE_BINARY]" >&2; exit 2 ;;
esac
