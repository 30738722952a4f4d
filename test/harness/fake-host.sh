#!/usr/bin/env bash
# A fake node behind `hostCommandPrefix` for fleet tests: the agent's host commands arrive here as
# `bash fake-host.sh DIR <argv...>` and act only on files in DIR, never on this machine. A shell, not
# a Node.js process: every agent runs `systemctl show` on every sweep, and a Node.js start per
# command (about 0.2 s of CPU) is what kept a fleet of 8 from fitting on 2 cores.
#
# - `[timeout ...] [env TZ=UTC] systemctl show --property=... -- UNIT`: a loaded, active unit whose
#   start time is `DIR/boot-time` (written by the test at each simulated boot).
# - `[timeout ...] systemctl restart -- UNIT`: recorded; the unit "restarts" (its start time moves).
#   It cures nothing: the fault of these tests is cured only by a reboot.
# - `systemctl reboot`: recorded and `DIR/reboot-requested` created (exclusively, with its time
#   already in it); the test, playing systemd and the machine, stops the agent, keeps it down, changes
#   the boot id and starts it again.
# Every command is appended to `DIR/commands.log` as one JSON line, {"at": ms, "argv": [...]}.
# Anything else fails (exit 1), so an unexpected command shows up in the agent's results.
# Bash builtins only on the path of `systemctl show` (EPOCHREALTIME, printf %()T): no fork.
export LC_ALL=C TZ=UTC

dir=$1
if [ -z "$dir" ]; then
  echo 'usage: fake-host.sh DIR COMMAND...' >&2
  exit 2
fi
shift

now_us=${EPOCHREALTIME//[!0-9]/}
now_ms=$((10#$now_us / 1000))

json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  REPLY="\"$s\""
}

line="{\"at\":$now_ms,\"argv\":["
sep=
for a in "$@"; do
  json_string "$a"
  line+="$sep$REPLY"
  sep=,
done
line+=']}'
printf '%s\n' "$line" >>"$dir/commands.log"

argv=("$@")
args=("$@")
# timeout(1): options, then the duration.
if [ "${args[0]}" = timeout ]; then
  args=("${args[@]:1}")
  while [[ ${args[0]} == -* ]]; do
    if [ "${args[0]}" = -k ] || [ "${args[0]}" = -s ]; then args=("${args[@]:2}"); else args=("${args[@]:1}"); fi
  done
  args=("${args[@]:1}")
fi
if [ "${args[0]}" = env ]; then
  args=("${args[@]:1}")
  while [[ ${args[0]} == *=* ]]; do args=("${args[@]:1}"); done
fi

if [ "${args[0]}" != systemctl ]; then
  echo "fake-host: not simulated: ${argv[*]}" >&2
  exit 1
fi

verb=${args[1]}
unit=${args[${#args[@]} - 1]}
unit=${unit%.service}

systemd_time() {
  printf -v REPLY '%(%a %Y-%m-%d %H:%M:%S UTC)T' "$(($1 / 1000))"
}

# The unit's start time (ms): its last restart, else the last boot, else an hour ago.
unit_start() {
  local f
  for f in "$dir/start-$unit" "$dir/boot-time"; do
    if [ -f "$f" ]; then
      read -r REPLY <"$f" || true
      if [ -n "$REPLY" ]; then return; fi
    fi
  done
  REPLY=$((now_ms - 3600000))
}

case $verb in
show)
  unit_start
  systemd_time "$REPLY"
  t=$REPLY
  printf '%s\n' "Id=$unit.service" LoadState=loaded ActiveState=active SubState=running Result=success MainPID=4242 NRestarts=0 \
    "ActiveEnterTimestamp=$t" "InactiveExitTimestamp=$t" "ExecMainStartTimestamp=$t"
  exit 0
  ;;
restart)
  printf '%s' "$now_ms" >"$dir/start-$unit.tmp" && mv -f -- "$dir/start-$unit.tmp" "$dir/start-$unit"
  exit 0
  ;;
reboot)
  # Created whole or not at all (a link cannot replace a file): a second request before the
  # "machine" went down fails here, and systemd would take it as the same job.
  tmp="$dir/reboot-requested.$$"
  printf '%s' "$now_ms" >"$tmp" && { ln -- "$tmp" "$dir/reboot-requested" 2>/dev/null || true; }
  rm -f -- "$tmp"
  exit 0
  ;;
esac
echo "fake-host: systemctl $verb: not simulated" >&2
exit 1
