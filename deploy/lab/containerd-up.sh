#!/usr/bin/env bash
# Starts a private containerd (+ CRI plugin) under DIR, never touching a
# containerd already on the machine, writes a CNI bridge config with a subnet
# and bridge name unique to this run, and imports the lab images.
#   usage: containerd-up.sh DIR IMAGEDIR [runtime|kubelet] [REGISTRY]
# With REGISTRY (127.0.0.1:PORT, plain HTTP) containerd pulls from it.
# In "kubelet" network mode containerd gets only the loopback plugin (it makes
# the pod's network namespace and brings lo up) and the bridge network goes to
# DIR/kubelet-cni/net.d for a kubelet run with --network-plugin=cni.
# Leaves: DIR/containerd.sock, DIR/containerd.pid, DIR/cni/net.d, DIR/env (with
# CGROUP_ROOT, a cgroup made for the kubelet's cgroupRoot)
# Stop with containerd-down.sh DIR.
set -euo pipefail
dir=$(realpath -m "${1:?usage: containerd-up.sh DIR IMAGEDIR}")
images=${2:?usage: containerd-up.sh DIR IMAGEDIR}
mode=${3:-runtime}
registry=${4:-}
mkdir -p "$dir"/{root,state,cni/net.d,opt,kubelet-cni/net.d}
sock="$dir/containerd.sock"

# A unique /24 and bridge name per run: derived from the folder so parallel
# runs differ; 10.213.x.0/24 is only ever addressed inside pod netns.
n=$(( $(echo -n "$dir" | cksum | cut -d' ' -f1) % 250 + 2 ))
bridge="kcpp${n}br$$"; bridge=${bridge:0:15}
subnet="10.213.$n.0/24"
netconf="$dir/cni/net.d"
if [ "$mode" = kubelet ]; then
  netconf="$dir/kubelet-cni/net.d"
  # containerd 1.6 insists on an eth0 with an address of its own making: give
  # it a macvlan on a veth that leads nowhere (one fixed link-local address,
  # alone in each pod's namespace). The pod network proper is the kubelet's,
  # as eth1.
  dummy="kcpp${n}d$$"; dummy=${dummy:0:15}
  ip link add "$dummy" type veth peer name "${dummy:0:13}p"
  ip link set "$dummy" up
  cat > "$dir/cni/net.d/10-runtime-stub.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "kcpp-runtime-stub", "plugins": [
  {"type": "macvlan", "master": "$dummy", "mode": "bridge",
   "ipam": {"type": "static", "addresses": [{"address": "169.254.213.2/32"}]}},
  {"type": "loopback"}]}
JSON
fi
cat > "$netconf/10-kcpp.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "kcpp-lab",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]],
              "dataDir": "$dir/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON

containerd config default > "$dir/config.toml"
sed -i \
  -e "s|^root = .*|root = \"$dir/root\"|" \
  -e "s|^state = .*|state = \"$dir/state\"|" \
  -e "0,/^  address = \"\/run\/containerd\/containerd.sock\"/s||  address = \"$sock\"|" \
  -e "s|restrict_oom_score_adj = false|restrict_oom_score_adj = true|" \
  -e "s|sandbox_image = .*|sandbox_image = \"kubelet-cpp.local/pause:3.9\"|" \
  -e "s|bin_dir = \"/opt/cni/bin\"|bin_dir = \"/usr/lib/cni\"|" \
  -e "s|conf_dir = \"/etc/cni/net.d\"|conf_dir = \"$dir/cni/net.d\"|" \
  -e "s|SystemdCgroup = true|SystemdCgroup = false|" \
  -e "s|netns_mounts_under_state_dir = false|netns_mounts_under_state_dir = true|" \
  -e "s|path = \"/opt/containerd\"|path = \"$dir/opt\"|" \
  "$dir/config.toml"
if [ -n "$registry" ]; then
  mkdir -p "$dir/certs.d/$registry"
  cat > "$dir/certs.d/$registry/hosts.toml" <<TOML
server = "http://$registry"
[host."http://$registry"]
  capabilities = ["pull", "resolve"]
TOML
  sed -i "s|config_path = \"\"|config_path = \"$dir/certs.d\"|" "$dir/config.toml"
fi
# A second runtime handler (runc under another name), for the RuntimeClass tests.
cat >> "$dir/config.toml" <<'TOML'

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kcpp-alt]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kcpp-alt.options]
    SystemdCgroup = false
TOML
grep -q "address = \"$sock\"" "$dir/config.toml" || { echo "containerd-up: could not set grpc address" >&2; exit 1; }

setsid containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 < /dev/null &
echo $! > "$dir/containerd.pid"
for _ in $(seq 1 100); do
  [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1 && break
  sleep 0.1
done
[ -S "$sock" ] || { echo "containerd-up: no socket after 10s; log:" >&2; tail -20 "$dir/containerd.log" >&2; exit 1; }
for img in "$images"/*.tar; do
  ctr -n k8s.io --address "$sock" images import --all-platforms "$img" >/dev/null
done
# The kubelet's cgroupRoot for this lab: its kubepods tree goes under it.
cgroup_root="/kcpp-lab-$n-$$"
bash "$(dirname "$0")/cgroup-root.sh" up "$cgroup_root"
cat > "$dir/env" <<ENV
CONTAINERD_SOCK=$sock
CGROUP_ROOT=$cgroup_root
REGISTRY=$registry
CNI_BRIDGE=$bridge
CNI_SUBNET=$subnet
CNI_MODE=$mode
CNI_DUMMY=${dummy:-}
KUBELET_CNI_CONF_DIR=$dir/kubelet-cni/net.d
CNI_IPAM_DIR=$dir/cni/ipam
ENV
echo "containerd up: unix://$sock (bridge $bridge, subnet $subnet, pod network by the $mode)"
