#!/usr/bin/env bash
# Makes the lab's OCI image archives offline:
#   pause.tar   - our static pause program      (kubelet-cpp.local/pause:3.9)
#   busybox.tar - Debian's busybox-static + links (kubelet-cpp.local/busybox:1.35)
#   registry/busybox.tar, registry/gcvictim.tar - for the lab registry (pushed,
#                 not imported): the same busybox, and busybox plus a file of its
#                 own (a distinct image for the image GC test)
# usage: build-images.sh OUTDIR [PAUSE_BINARY]
set -euo pipefail
out=${1:?usage: build-images.sh OUTDIR [PAUSE_BINARY]}
pause_bin=${2:-}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# pack NAME REF ROOTFS ENTRYPOINT_JSON CMD_JSON OUT.tar
pack() {
  local name=$1 ref=$2 rootfs=$3 entry=$4 cmd=$5 tarout=$6
  local d="$work/img-$(basename "$tarout" .tar)"
  mkdir -p "$d/blobs/sha256"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$d/layer.tar" .
  local diffid; diffid=$(sha "$d/layer.tar")
  gzip -n -c "$d/layer.tar" > "$d/layer.tgz"
  local ldig; ldig=$(sha "$d/layer.tgz")
  mv "$d/layer.tgz" "$d/blobs/sha256/$ldig"
  local lsize; lsize=$(size "$d/blobs/sha256/$ldig")
  rm "$d/layer.tar"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":%s,"Cmd":%s,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"kubelet-cpp build-images.sh"}]}' \
    "$entry" "$cmd" "$diffid" > "$d/config.json"
  local cdig; cdig=$(sha "$d/config.json"); local csize; csize=$(size "$d/config.json")
  mv "$d/config.json" "$d/blobs/sha256/$cdig"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cdig" "$csize" "$ldig" "$lsize" > "$d/manifest.json"
  local mdig; mdig=$(sha "$d/manifest.json"); local msize; msize=$(size "$d/manifest.json")
  mv "$d/manifest.json" "$d/blobs/sha256/$mdig"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$d/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$mdig" "$msize" "$name" "$ref" > "$d/index.json"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$d" -cf "$tarout" oci-layout index.json blobs
}

# pause
if [ -z "$pause_bin" ]; then
  pause_bin="$work/pause-bin"
  gcc -static -O2 -o "$pause_bin" "$(dirname "$0")/../../tools/pause/pause.c"
fi
mkdir -p "$work/pause-root"
install -m 0755 "$pause_bin" "$work/pause-root/pause"
pack kubelet-cpp.local/pause:3.9 3.9 "$work/pause-root" '["/pause"]' 'null' "$out/pause.tar"

# busybox
bb=/bin/busybox
[ -x "$bb" ] || { echo "build-images.sh: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }
r="$work/bb-root"
mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/var/www" "$r/proc" "$r/sys" "$r/dev"
install -m 0755 "$bb" "$r/bin/busybox"
for app in $("$bb" --list); do
  [ "$app" = busybox ] || ln -sf busybox "$r/bin/$app"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
echo 'root:x:0:' > "$r/etc/group"
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$r/etc/passwd"
echo 'hello from kubelet-cpp busybox' > "$r/var/www/index.html"
chmod 1777 "$r/tmp"
pack kubelet-cpp.local/busybox:1.35 1.35 "$r" 'null' '["sh"]' "$out/busybox.tar"
mkdir -p "$out/registry"
cp "$out/busybox.tar" "$out/registry/busybox.tar"
echo 'an image for the image GC test' > "$r/gcvictim"
pack kubelet-cpp.local/gcvictim:1 1 "$r" 'null' '["sh"]' "$out/registry/gcvictim.tar"
echo "images in $out: pause.tar busybox.tar registry/busybox.tar registry/gcvictim.tar"
