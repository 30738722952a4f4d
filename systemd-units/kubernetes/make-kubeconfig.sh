#!/usr/bin/env bash
# Writes the kubeconfig nodemedic's systemd service uses (kubernetes.kubeconfig), from the token of
# the nodemedic ServiceAccount (rbac.yaml) and the cluster entry of your current kubectl context.
#
#   make-kubeconfig.sh [--namespace kube-system] [--secret nodemedic-token] [--output FILE]
#
# Run it where kubectl reaches the cluster as an administrator (KUBECONFIG / --context as usual, via
# the KUBECTL_ARGS environment variable, e.g. KUBECTL_ARGS="--context prod"). Without --output the
# kubeconfig goes to stdout; with it, the file is written with mode 0600. Copy it to each node as
# /etc/nodemedic/kubeconfig (root:root, 0600) and set `kubernetes.kubeconfig: /etc/nodemedic/kubeconfig`.
set -euo pipefail

namespace=kube-system
secret=nodemedic-token
output=
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) namespace=${2:?--namespace needs a value}; shift 2 ;;
    --secret) secret=${2:?--secret needs a value}; shift 2 ;;
    --output) output=${2:?--output needs a value}; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-kubeconfig: unknown argument: $1 (try --help)" >&2; exit 64 ;;
  esac
done

# shellcheck disable=SC2086 # KUBECTL_ARGS is a list of flags on purpose.
k() { kubectl ${KUBECTL_ARGS:-} --request-timeout=20s "$@"; }

# The token controller fills the Secret in asynchronously after `kubectl apply -f rbac.yaml`.
token=
for _ in $(seq 1 30); do
  token=$(k -n "$namespace" get secret "$secret" -o jsonpath='{.data.token}') || {
    echo "make-kubeconfig: cannot read secret $namespace/$secret (did you kubectl apply -f rbac.yaml?)" >&2
    exit 1
  }
  [ -n "$token" ] && break
  sleep 1
done
if [ -z "$token" ]; then
  echo "make-kubeconfig: secret $namespace/$secret has no token after 30s (is the token controller running?)" >&2
  exit 1
fi
token=$(printf '%s' "$token" | base64 -d)

cluster() { k config view --minify --raw -o "jsonpath={.clusters[0].cluster.$1}"; }
server=$(cluster server)
[ -n "$server" ] || { echo "make-kubeconfig: the current kubectl context has no cluster server" >&2; exit 1; }
ca_data=$(cluster certificate-authority-data)
ca_file=$(cluster certificate-authority)
skip_tls=$(cluster insecure-skip-tls-verify)
if [ -z "$ca_data" ] && [ -n "$ca_file" ]; then ca_data=$(base64 -w0 < "$ca_file"); fi
if [ -z "$ca_data" ] && [ "$skip_tls" != true ]; then
  ca_data=$(k -n "$namespace" get secret "$secret" -o "jsonpath={.data['ca\.crt']}")
fi

render() {
  echo "# nodemedic's kubeconfig: ServiceAccount $namespace/nodemedic on $server"
  echo "apiVersion: v1"
  echo "kind: Config"
  echo "clusters:"
  echo "- name: cluster"
  echo "  cluster:"
  echo "    server: $server"
  if [ "$skip_tls" = true ]; then echo "    insecure-skip-tls-verify: true"; fi
  if [ -n "$ca_data" ] && [ "$skip_tls" != true ]; then echo "    certificate-authority-data: $ca_data"; fi
  echo "users:"
  echo "- name: nodemedic"
  echo "  user:"
  echo "    token: $token"
  echo "contexts:"
  echo "- name: nodemedic"
  echo "  context:"
  echo "    cluster: cluster"
  echo "    user: nodemedic"
  echo "current-context: nodemedic"
}

if [ -n "$output" ]; then
  umask 077
  render > "$output.tmp"
  mv "$output.tmp" "$output"
  echo "make-kubeconfig: wrote $output for ServiceAccount $namespace/nodemedic on $server" >&2
else
  render
fi
