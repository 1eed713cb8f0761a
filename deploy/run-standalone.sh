#!/usr/bin/env bash
# Installs what is needed, builds, starts a private containerd (unless
# CONTAINER_RUNTIME_ENDPOINT names one), makes the images offline and runs the
# kubelet in standalone mode on deploy/examples/manifests. Ctrl-C stops the
# kubelet; the pods keep running until deploy/lab/containerd-down.sh.
#   usage: sudo deploy/run-standalone.sh [extra kubelet flags]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${KUBELET_CPP_STATE:-/tmp/kubelet-cpp-standalone}
bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target kubelet pause
mkdir -p "$state"
endpoint=${CONTAINER_RUNTIME_ENDPOINT:-}
if [ -z "$endpoint" ]; then
  if [ ! -S "$state/containerd/containerd.sock" ]; then
    bash "$root/deploy/lab/build-images.sh" "$state/images" "$root/build/bin/pause"
    bash "$root/deploy/lab/containerd-up.sh" "$state/containerd" "$state/images"
  fi
  endpoint="unix://$state/containerd/containerd.sock"
fi
sed -e "s|@MANIFESTS@|$root/deploy/examples/manifests|" -e "s|@ENDPOINT@|$endpoint|" -e "s|@LOGS@|$state/logs|" \
  "$root/deploy/examples/standalone-config.yaml.in" > "$state/config.yaml"
echo "kubelet-cpp: config $state/config.yaml; try: curl -sk https://127.0.0.1:10250/pods"
exec "$root/build/bin/kubelet" --config "$state/config.yaml" --root-dir "$state/root" --cert-dir "$state/pki" "$@"
