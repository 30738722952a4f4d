#!/usr/bin/env bash
# Installs what nodemedic's integration tests run for real: systemd (PID 1 of a test namespace),
# dockerd and containerd, Prometheus and promtool, busybox for container images, debootstrap for
# the DaemonSet image (deploy/build-image.sh), iproute2 and
# util-linux for namespaces. Idempotent; needs root and Debian/Ubuntu's apt.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "test-setup: run as root (apt-get install)" >&2; exit 1; fi
pkgs=(systemd util-linux iproute2 procps curl docker.io containerd prometheus busybox-static debootstrap)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# kubectl is the reference client the fake API server is checked against. It is not in Debian's own
# archive; machines of this project's kind ship it. Try, and let its test say so if it is missing.
if ! command -v kubectl >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null 2>&1 || echo "test-setup: kubectl not available from apt (the kubectl tests need it)" >&2
fi
# Debian's packages start nothing here (no systemd as PID 1); the tests start their own daemons.
echo "test-setup: ok (${pkgs[*]})"
