#!/usr/bin/env bash
# A cgroup of the lab's own for a kubelet's cgroupRoot, so the kubepods tree a
# test kubelet builds lives beside, never inside, the machine's cgroups.
#   cgroup-root.sh up NAME    creates /NAME in every cgroup hierarchy (v1: each
#                             controller mount; v2: the unified mount)
#   cgroup-root.sh down NAME  kills what still runs under it and removes it
set -uo pipefail
cmd=${1:?usage: cgroup-root.sh up|down NAME}
name=${2:?usage: cgroup-root.sh up|down NAME}
name=${name#/}
mounts() {
  # v1 controller mounts (named hierarchies such as name=systemd left alone); the v2 mount only when there are none.
  local v1
  v1=$(awk '$3 == "cgroup" && $4 !~ /name=/ {print $2}' /proc/self/mounts)
  if [ -n "$v1" ]; then echo "$v1"; else awk '$3 == "cgroup2" {print $2}' /proc/self/mounts; fi
}
case "$cmd" in
  up)
    for m in $(mounts); do
      mkdir -p "$m/$name" || exit 1
      if [ -f "$m/cpuset.cpus" ] && [ -z "$(cat "$m/$name/cpuset.cpus" 2>/dev/null)" ]; then
        cat "$m/cpuset.cpus" > "$m/$name/cpuset.cpus"
        cat "$m/cpuset.mems" > "$m/$name/cpuset.mems"
      fi
    done
    ;;
  down)
    for m in $(mounts); do
      [ -d "$m/$name" ] || continue
      find "$m/$name" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do kill -9 "$pid" 2>/dev/null; done
    done
    sleep 0.2
    for m in $(mounts); do
      [ -d "$m/$name" ] || continue
      find "$m/$name" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    true
    ;;
  *) echo "usage: cgroup-root.sh up|down NAME" >&2; exit 2 ;;
esac
