#!/usr/bin/env bash
# Installs nodemedic as a systemd service from an `npm pack` tarball, or removes it.
#
#   install.sh [options] nodemedic-X.Y.Z.tgz     install or upgrade, enable, (re)start
#   install.sh --uninstall [--purge] [options]   stop, disable, remove; --purge also removes config and state
#
# Options (defaults in brackets):
#   --prefix DIR       the package and its production dependencies [/opt/nodemedic]
#   --config-dir DIR   config.yaml, never overwritten once there [/etc/nodemedic]
#   --state-dir DIR    ladder state (budgets, episodes) [/var/lib/nodemedic]
#   --unit-dir DIR     where nodemedic.service goes [/etc/systemd/system]
#   --systemctl CMD    systemctl command, split on spaces (e.g. for a container or a test namespace) [systemctl]
#   --npm CMD          npm command, split on spaces [npm]
#   --no-enable        do not enable the service
#   --no-start         do not (re)start the service
#   --uninstall        remove instead of install
#   --purge            with --uninstall: also remove config.yaml and the state directory
#
# Paths other than the defaults are written to nodemedic.service.d/10-install-paths.conf, so the
# unit itself is always the shipped one. Dependencies come from npm's cache when it has them
# (--prefer-offline), else from the registry.
set -euo pipefail

readonly DEFAULT_PREFIX=/opt/nodemedic
readonly DEFAULT_CONFIG_DIR=/etc/nodemedic
readonly DEFAULT_STATE_DIR=/var/lib/nodemedic
readonly UNIT=nodemedic.service
readonly DROPIN=10-install-paths.conf
# A marker that lets --purge remove the state directory only if this script created it.
readonly STATE_MARKER=.nodemedic-state-dir
# PATH of system services when the unit sets none (systemd.exec(5), "Environment variables in spawned processes").
readonly SYSTEMD_DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

prefix=$DEFAULT_PREFIX
config_dir=$DEFAULT_CONFIG_DIR
state_dir=$DEFAULT_STATE_DIR
unit_dir=/etc/systemd/system
systemctl_cmd=(systemctl)
npm_cmd=(npm)
enable=1
start=1
uninstall=0
purge=0
tarball=""

say() { printf 'install.sh: %s\n' "$*"; }
die() {
  printf 'install.sh: error: %s\n' "$1" >&2
  exit "${2:-1}"
}
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
  exit "${1:-0}"
}

# Paths end up in a systemd drop-in and a YAML file; keep them to characters neither needs to quote.
check_path() {
  local flag=$1 value=${2%/}
  [[ $value == /* ]] || die "$flag: must be an absolute path other than /, got '$2'" 64
  [[ $value =~ ^/[A-Za-z0-9._@+/-]*$ ]] || die "$flag: only letters, digits and ._@+-/ are allowed, got '$2'" 64
  printf '%s' "$value"
}

set_option() {
  local opt=$1 value=$2
  [ -n "$value" ] || die "$opt: needs a value" 64
  case $opt in
    --prefix) prefix=$(check_path "$opt" "$value") ;;
    --config-dir) config_dir=$(check_path "$opt" "$value") ;;
    --state-dir) state_dir=$(check_path "$opt" "$value") ;;
    --unit-dir) unit_dir=$(check_path "$opt" "$value") ;;
    --systemctl) read -r -a systemctl_cmd <<<"$value" ;;
    --npm) read -r -a npm_cmd <<<"$value" ;;
  esac
}

while [ $# -gt 0 ]; do
  case $1 in
    --prefix=* | --config-dir=* | --state-dir=* | --unit-dir=* | --systemctl=* | --npm=*)
      set_option "${1%%=*}" "${1#*=}"
      shift
      ;;
    --prefix | --config-dir | --state-dir | --unit-dir | --systemctl | --npm)
      [ $# -ge 2 ] || die "$1: needs a value" 64
      set_option "$1" "$2"
      shift 2
      ;;
    --no-enable) enable=0; shift ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) usage 0 ;;
    -*) die "unknown option $1 (see --help)" 64 ;;
    *)
      [ -z "$tarball" ] || die "unexpected argument '$1': give one tarball" 64
      tarball=$1
      shift
      ;;
  esac
done

[ ${#systemctl_cmd[@]} -gt 0 ] || die "--systemctl: empty command" 64
[ ${#npm_cmd[@]} -gt 0 ] || die "--npm: empty command" 64
if [ "$purge" = 1 ] && [ "$uninstall" = 0 ]; then die "--purge goes with --uninstall" 64; fi

systemctl_() { "${systemctl_cmd[@]}" "$@"; }

unit_path=$unit_dir/$UNIT
dropin_dir=$unit_dir/$UNIT.d
config=$config_dir/config.yaml
bin=$prefix/bin/nodemedic

uninstall_() {
  [ -z "$tarball" ] || die "--uninstall takes no tarball" 64
  if [ -e "$unit_path" ]; then
    say "stopping and disabling $UNIT"
    systemctl_ disable --now "$UNIT" || say "warning: could not stop/disable $UNIT (continuing)"
    rm -f -- "$unit_path"
  else
    say "$unit_path not there; nothing to stop"
  fi
  rm -f -- "$dropin_dir/$DROPIN"
  if [ -d "$dropin_dir" ]; then rmdir -- "$dropin_dir" 2>/dev/null || say "kept $dropin_dir (it holds other drop-ins)"; fi
  systemctl_ daemon-reload || say "warning: daemon-reload failed"
  if [ -e "$prefix/lib/node_modules/nodemedic" ]; then
    say "removing the package from $prefix"
    "${npm_cmd[@]}" uninstall --global --prefix "$prefix" --no-audit --no-fund nodemedic >/dev/null
  fi
  for d in "$prefix/bin" "$prefix/lib/node_modules" "$prefix/lib" "$prefix"; do
    [ -d "$d" ] && rmdir -- "$d" 2>/dev/null || true
  done
  if [ "$purge" = 1 ]; then
    rm -f -- "$config"
    if [ -d "$config_dir" ]; then rmdir -- "$config_dir" 2>/dev/null || say "kept $config_dir (it holds other files)"; fi
    if [ -e "$state_dir/$STATE_MARKER" ]; then
      rm -rf -- "$state_dir"
      say "removed $config and $state_dir"
    elif [ -d "$state_dir" ]; then
      say "kept $state_dir: it has no $STATE_MARKER, so install.sh did not create it"
    fi
  else
    say "kept $config and $state_dir (use --purge to remove them)"
  fi
  say "uninstalled"
}

install_() {
  [ -n "$tarball" ] || die "give the npm pack tarball to install (nodemedic-X.Y.Z.tgz); see --help" 64
  [ -f "$tarball" ] || die "tarball not found: $tarball" 66
  tarball=$(cd "$(dirname -- "$tarball")" && pwd)/$(basename -- "$tarball")
  local node
  node=$(command -v node) || die "node not found in PATH: nodemedic needs Node.js >= 20 (or use the DaemonSet, README \"DaemonSet mode\")" 69
  "$node" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
    die "$node is Node.js $("$node" --version); nodemedic needs >= 20 (or use the DaemonSet, README \"DaemonSet mode\")" 69

  say "installing $(basename -- "$tarball") into $prefix (production dependencies)"
  mkdir -p -- "$prefix"
  npm_config_update_notifier=false "${npm_cmd[@]}" install --global --prefix "$prefix" --omit=dev \
    --prefer-offline --no-audit --no-fund --loglevel=error "$tarball" >/dev/null
  [ -x "$bin" ] || die "npm did not create $bin"
  local pkg=$prefix/lib/node_modules/nodemedic
  say "installed $("$bin" version)"

  mkdir -p -- "$config_dir"
  if [ -e "$config" ]; then
    say "keeping the existing $config"
  else
    local tmp=$config.install-tmp
    if [ "$state_dir" = "$DEFAULT_STATE_DIR" ]; then
      cp -- "$pkg/systemd-units/config.production.yaml" "$tmp"
    else
      sed "s|^stateDir: $DEFAULT_STATE_DIR\$|stateDir: $state_dir|" "$pkg/systemd-units/config.production.yaml" >"$tmp"
      grep -qx "stateDir: $state_dir" "$tmp" || die "could not set stateDir in $tmp"
    fi
    chmod 0640 "$tmp"
    mv -f -- "$tmp" "$config"
    say "wrote $config (remediation.mode: enforce; review it, then: systemctl reload nodemedic)"
  fi
  # An invalid config would crash-loop the service; stop here, before anything is restarted.
  if ! "$bin" config validate "$config" >/dev/null; then
    die "$config is not valid for this version (the errors are above); fix it and run install.sh again" 78
  fi

  mkdir -p -m 0700 -- "$state_dir"
  chmod 0700 "$state_dir"
  : >"$state_dir/$STATE_MARKER"

  mkdir -p -- "$unit_dir"
  install -m 0644 -- "$pkg/systemd-units/$UNIT" "$unit_path"
  local node_dir path_env=""
  node_dir=$(dirname -- "$(readlink -f -- "$node")")
  case ":$SYSTEMD_DEFAULT_PATH:" in
    *":$node_dir:"*) ;;
    *) path_env="$node_dir:$SYSTEMD_DEFAULT_PATH" ;;
  esac
  if [ "$prefix" != "$DEFAULT_PREFIX" ] || [ "$config_dir" != "$DEFAULT_CONFIG_DIR" ] || [ "$state_dir" != "$DEFAULT_STATE_DIR" ] || [ -n "$path_env" ]; then
    mkdir -p -- "$dropin_dir"
    {
      echo "# Written by nodemedic's install.sh for this node's paths; install.sh rewrites it."
      echo "[Service]"
      echo "ExecStart="
      echo "ExecStart=$bin run --config $config"
      if [ "$state_dir" != "$DEFAULT_STATE_DIR" ]; then
        echo "# StateDirectory= manages only /var/lib/nodemedic."
        echo "StateDirectory="
        echo "ReadWritePaths=$state_dir"
      fi
      if [ -n "$path_env" ]; then
        echo "# node is in $node_dir, outside systemd's default PATH."
        echo "Environment=PATH=$path_env"
      fi
    } >"$dropin_dir/$DROPIN"
    chmod 0644 "$dropin_dir/$DROPIN"
    say "wrote $dropin_dir/$DROPIN"
  else
    rm -f -- "$dropin_dir/$DROPIN"
  fi

  systemctl_ daemon-reload
  if [ "$enable" = 1 ]; then
    systemctl_ enable "$UNIT"
    say "enabled $UNIT"
  fi
  if [ "$start" = 1 ]; then
    # Type=notify: this returns once the agent answers /healthz and finished its first sweep.
    if ! systemctl_ restart "$UNIT"; then
      die "$UNIT did not start; see: journalctl -u nodemedic -n 50" 1
    fi
    say "started $UNIT"
  fi
  say "done: $bin, $config, $state_dir, $unit_path"
}

if [ "$uninstall" = 1 ]; then uninstall_; else install_; fi
