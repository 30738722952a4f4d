#!/bin/sh
# PID 1 of the test namespace until it execs systemd. Every mount below is private to the
# namespace's mount namespace: the host sees none of them.
# Isolation, beyond what TESTING.md's recipe requires:
#  - systemd sees only NM_NS_BASE/units and a private, empty /etc/systemd/system (so
#    `systemctl enable/edit/mask` inside never write to the host's /etc);
#  - a private /dev (the host's devtmpfs is shared, and systemd/journald would otherwise create
#    nodes or log to the host's /dev/kmsg);
#  - /proc/sys and /sys read-only: systemd as PID 1 bumps fs.file-max, fs.nr_open and
#    net.unix.max_dgram_qlen, which are not namespaced;
#  - tmpfs over /run, /var/log/journal and /var/lib/systemd: the journal and state are volatile.
set -eu
: "${NM_NS_BASE:?}" "${NM_NS_NAME:?}"
console=$(readlink /proc/self/fd/0)
case "$console" in /dev/pts/*) ;; *) echo "init.sh: stdin is $console, not a pty (run under script -c)" >&2; exit 1 ;; esac

mount --make-rprivate /
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run

dev=/run/nm-dev
mkdir "$dev"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$dev"
for n in null zero full random urandom tty; do
  touch "$dev/$n"
  mount --bind "/dev/$n" "$dev/$n"
done
touch "$dev/console"
mount --bind "$console" "$dev/console"
mkdir "$dev/pts" "$dev/shm" "$dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$dev/pts"
ln -s pts/ptmx "$dev/ptmx"
ln -s /proc/self/fd "$dev/fd"
ln -s /proc/self/fd/0 "$dev/stdin"
ln -s /proc/self/fd/1 "$dev/stdout"
ln -s /proc/self/fd/2 "$dev/stderr"
mount --move "$dev" /dev
rmdir "$dev"

mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
if [ -e /proc/sysrq-trigger ]; then
  mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
  mount -o remount,bind,ro /proc/sysrq-trigger
fi
mount -o remount,bind,ro /sys
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup

mount -t tmpfs -o mode=0755 tmpfs /etc/systemd
mkdir /etc/systemd/system
cp "$NM_NS_BASE/journald.conf" "$NM_NS_BASE/system.conf" /etc/systemd/
for d in /var/log/journal /var/lib/systemd; do
  if [ -d "$d" ]; then mount -t tmpfs -o mode=0755 tmpfs "$d"; fi
done

# No trailing ':' in SYSTEMD_UNIT_PATH: that would append the host's unit directories (TESTING.md DANGER).
exec env -i container="$NM_NS_NAME" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  SYSTEMD_UNIT_PATH="/etc/systemd/system:$NM_NS_BASE/units" \
  /lib/systemd/systemd --system --unit=nodemedic-ns.target --show-status=no
