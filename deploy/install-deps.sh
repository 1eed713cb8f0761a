#!/usr/bin/env bash
# Installs everything kubelet-cpp needs to build, test and run, from Debian's
# packages only. Idempotent: skips apt when everything is present.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  nlohmann-json3-dev libyaml-cpp-dev libcurl4-openssl-dev libspdlog-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libssl-dev zlib1g-dev clang-14 libclang-rt-14-dev
  containerd runc containernetworking-plugins busybox-static iproute2 iptables prometheus docker-registry skopeo
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's kubectl (kubernetes-client) for the kubectl compatibility test:
# unpacked, not installed, so it cannot clash with another kubectl on the
# machine. Its version is pinned by the Debian release.
KUBECTL_DIR=/opt/kubelet-cpp/kubernetes-client
if [ ! -x "$KUBECTL_DIR/usr/bin/kubectl" ]; then
  echo "install-deps: unpacking Debian's kubernetes-client into $KUBECTL_DIR"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download kubernetes-client >/dev/null 2>&1 || { apt-get update -qq && apt-get download kubernetes-client >/dev/null; })
  mkdir -p "$KUBECTL_DIR"
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$KUBECTL_DIR"
  rm -rf "$tmp"
fi
# Debian starts no services here; make sure no packaged containerd or
# prometheus holds the ports or sockets our tests use.
exit 0
