#!/usr/bin/env bash
# Starts a private image registry (Debian's docker-registry) on 127.0.0.1 over
# plain HTTP, storage under DIR, and pushes IMAGEDIR/registry/NAME.tar to it as
# NAME:<the archive's tag> with skopeo.
#   usage: registry-up.sh DIR IMAGEDIR      Leaves DIR/env with REGISTRY=127.0.0.1:PORT
# Stop with registry-down.sh DIR.
set -euo pipefail
dir=$(realpath -m "${1:?usage: registry-up.sh DIR IMAGEDIR}")
images=${2:?usage: registry-up.sh DIR IMAGEDIR}
mkdir -p "$dir/storage"
# A free loopback port, from a start derived from the folder so parallel labs differ.
port=$(( 15000 + $(echo -n "$dir" | cksum | cut -d' ' -f1) % 2000 ))
while ss -ltnH "sport = :$port" | grep -q .; do port=$((port + 1)); done
cat > "$dir/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 < /dev/null &
echo $! > "$dir/registry.pid"
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/v2/" >/dev/null || { echo "registry-up: not answering; log:" >&2; tail -20 "$dir/registry.log" >&2; exit 1; }
for tar in "$images"/registry/*.tar; do
  name=$(basename "$tar" .tar)
  tag=$(tar -xOf "$tar" index.json | sed -n 's/.*"org.opencontainers.image.ref.name":"\([^"]*\)".*/\1/p')
  skopeo copy --quiet --insecure-policy --dest-tls-verify=false "oci-archive:$tar" "docker://127.0.0.1:$port/$name:${tag:-latest}"
done
echo "REGISTRY=127.0.0.1:$port" > "$dir/env"
echo "registry up: http://127.0.0.1:$port"
