#!/bin/sh
# Cleans up a test namespace when its owner (the test process) goes away without doing it, even by
# SIGKILL: the owner holds the write end of our stdin, which the kernel closes when it dies.
# usage: watchdog.sh CGROUP_DIR BASE_DIR
set -u
cg=$1 base=$2
case "$cg" in /sys/fs/cgroup/nodemedic-ns-* | /sys/fs/cgroup/unified/nodemedic-ns-*) ;; *) echo "watchdog.sh: refusing cgroup $cg" >&2; exit 2 ;; esac
case "$base" in */nodemedic-ns-*) ;; *) echo "watchdog.sh: refusing directory $base" >&2; exit 2 ;; esac
cat >/dev/null
if [ -d "$cg" ]; then
  echo 1 >"$cg/cgroup.kill" 2>/dev/null
  i=0
  while [ $i -lt 50 ]; do
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$cg" ] || break
    i=$((i + 1))
    sleep 0.1
  done
fi
rm -rf -- "$base"
