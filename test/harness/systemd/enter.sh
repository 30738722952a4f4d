#!/bin/sh
# Runs under script(1), which gives it the pty that becomes the namespace's /dev/console.
# Called by test/harness/systemd-ns.ts with its parameters in the environment (script -c takes
# one command string, so nothing variable is ever put into it).
#   NM_NS_CGROUP  cgroup2 directory made for this namespace (under /sys/fs/cgroup/unified)
#   NM_NS_BASE    the namespace's private host directory (units/, console.log, configs)
#   NM_NS_NAME    unique name, exported to systemd as $container
set -eu
: "${NM_NS_CGROUP:?}" "${NM_NS_BASE:?}" "${NM_NS_NAME:?}"
here=$(dirname "$0")
# The new cgroup namespace is rooted where we stand, so the namespace's systemd manages only this
# subtree and never the host's cgroups.
echo $$ >"$NM_NS_CGROUP/cgroup.procs"
# --kill-child: if unshare dies, its child (the namespace's PID 1) gets SIGKILL, which ends the
# whole PID namespace.
exec unshare --pid --fork --kill-child --mount --propagation private --uts --ipc --cgroup --mount-proc \
  /bin/sh "$here/init.sh"
