/**
 * Pure helpers of the `systemd` check (checks/systemd.ts) and of the `reexec-systemd` step
 * (remediations/reexec.ts): reading runc processes from /proc, judging whether a systemd version is
 * known to carry the sd-bus cookie overflow that makes PID 1 stop answering, picking the symptom's
 * journal lines. No I/O here.
 */
import type { Host } from '../platform/host.js';
import { compareEVR, isEl7Release, parseNVRA, rpmvercmp } from './rpm-version.js';

/**
 * USER_HZ, the unit of /proc/<pid>/stat's start time. The kernel reports 100 on every architecture
 * Kubernetes nodes run (x86_64, arm64, ppc64le, s390x); `getconf CLK_TCK` would cost a process.
 */
export const CLOCK_TICKS_PER_SECOND = 100;

/** A process as /proc/<pid>/stat describes it. */
export interface ProcStat {
  pid: number;
  /** The executable's name, at most 15 characters (`runc:[2:INIT]`, `docker-runc-cur`). */
  comm: string;
  /** `R`, `S`, `D` (uninterruptible: stuck in the kernel), `Z`, `T`, ... */
  state: string;
  /** Start time in clock ticks after boot. */
  startTicks: number;
}

/** One /proc/<pid>/stat line; undefined when it cannot be read. The name sits between the first `(` and the LAST `)`. */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 1 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 2).split(' ');
  // After the name: state is field 3, starttime field 22 of proc(5), i.e. index 19 here.
  const state = rest[0];
  const start = Number(rest[19]);
  if (!Number.isInteger(pid) || !state || !Number.isFinite(start)) return undefined;
  return { pid, comm: text.slice(open + 1, close), state, startTicks: start };
}

/** `/proc/uptime`'s first number (seconds since boot). */
export function parseUptime(text: string): number | undefined {
  const n = Number(text.trim().split(/\s+/)[0]);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/**
 * runc as the kernel names it: `runc`, `runc:[0:PARENT]`/`runc:[1:CHILD]`/`runc:[2:INIT]` (what
 * `runc init` renames itself to), docker's `docker-runc` and RHEL's `docker-runc-current` (cut to 15
 * characters: `docker-runc-cur`).
 */
export function isRuncComm(comm: string): boolean {
  return /^(?:docker-)?runc(?:$|:|-)/.test(comm);
}

/** runc processes older than a threshold: what piles up while PID 1 does not answer runc's cgroup calls. */
export interface StuckRunc {
  /** runc processes at least `olderThanSeconds` old. */
  count: number;
  olderThanSeconds: number;
  /** Age of the oldest one (0 when none). */
  oldestSeconds: number;
  /** Up to 10 of them, oldest first, as `pid comm state age`. */
  sample: { pid: number; comm: string; state: string; ageSeconds: number }[];
  /** All of them (for the optional kill after a reexec); PIDs as seen in the scanned /proc. */
  pids: number[];
}

/** Which of these processes are runc older than `olderThanSeconds`. Pure. */
export function stuckRuncFrom(procs: readonly ProcStat[], uptimeSeconds: number, olderThanSeconds: number): StuckRunc {
  const old = procs
    .filter((p) => isRuncComm(p.comm))
    .map((p) => ({ pid: p.pid, comm: p.comm, state: p.state, ageSeconds: Math.max(0, Math.round(uptimeSeconds - p.startTicks / CLOCK_TICKS_PER_SECOND)) }))
    .filter((p) => p.ageSeconds >= olderThanSeconds)
    .sort((a, b) => b.ageSeconds - a.ageSeconds);
  return { count: old.length, olderThanSeconds, oldestSeconds: old[0]?.ageSeconds ?? 0, sample: old.slice(0, 10), pids: old.map((p) => p.pid) };
}

/** At most this many /proc entries are read per scan (a node with more processes is reported partially). */
const MAX_PROCS = 20_000;

/**
 * runc processes older than the threshold, read from `procPath` (`/proc`; `/proc/1/root/proc` or a
 * namespace's `/proc/<pid>/root/proc` to see another PID namespace). Only `stat` is read: unlike
 * `cmdline`, it never blocks on a process's memory map. Rejects when `procPath` cannot be listed.
 */
export async function scanStuckRunc(host: Host, procPath: string, olderThanSeconds: number, signal?: AbortSignal): Promise<StuckRunc> {
  const { readdir } = await import('node:fs/promises');
  const { readFileSync } = await import('node:fs');
  const uptime = parseUptime(await host.readFile(`${procPath}/uptime`, 256));
  if (uptime === undefined) throw new Error(`${procPath}/uptime is unreadable`);
  const pids = (await readdir(procPath)).filter((n) => /^\d+$/.test(n)).slice(0, MAX_PROCS);
  const procs: ProcStat[] = [];
  for (const pid of pids) {
    if (signal?.aborted) break;
    try {
      // Synchronous on purpose: a stat file is generated from the task struct without waiting on the
      // process (unlike cmdline or environ), and one readFileSync costs a fraction of an async
      // open/read/close through the thread pool; a few hundred of them take about a millisecond.
      const st = parseProcStat(readFileSync(`${procPath}/${pid}/stat`, 'latin1'));
      if (st) procs.push(st);
    } catch {
      // Exited between readdir and read.
    }
  }
  return stuckRuncFrom(procs, uptime, olderThanSeconds);
}

/** Whether a systemd build is known to carry the sd-bus cookie overflow (PID 1 stops answering D-Bus). */
export interface BugVerdict {
  status: 'affected' | 'fixed' | 'unknown';
  /** One sentence: which version, compared with what. */
  why: string;
}

/** The first el7 release with the backport of "sd-bus: deal with cookie overruns" (RHBZ#1693559). */
export const EL7_FIXED = '219-65.el7';
/** The first upstream release with the fix (systemd v242). */
export const UPSTREAM_FIXED = 242;

/**
 * Judges a version as `rpm -q systemd` prints it (`systemd-219-62.el7.x86_64`) or as PID 1 reports its
 * `Version` property (`219`, `252.38-1~deb12u1`). Pure.
 */
export function bugVerdict(reading: { rpm?: string; version?: string }): BugVerdict {
  if (reading.rpm) {
    const r = parseNVRA(reading.rpm.trim().split('\n')[0] ?? '');
    if (r.ok && isEl7Release(r.value.release)) {
      const v = `${r.value.version}-${r.value.release}`;
      if (compareEVR(r.value, EL7_FIXED) < 0) {
        return {
          status: 'affected',
          why: `systemd ${v} is older than ${EL7_FIXED}, the first el7 build with the sd-bus cookie overflow fix (RHBZ#1693559; a few late 219-62.el7_6 z-stream builds carry it too, RHBZ#1720699)`,
        };
      }
      return { status: 'fixed', why: `systemd ${v} is at or above ${EL7_FIXED} (RHBZ#1693559)` };
    }
    if (r.ok) return upstream(r.value.version, `rpm ${reading.rpm.trim()}`);
  }
  if (reading.version) return upstream(reading.version.split(/[.-]/)[0] ?? '', `PID 1 reports Version=${reading.version}`);
  return { status: 'unknown', why: 'the systemd version is not known' };
}

function upstream(version: string, source: string): BugVerdict {
  if (!/^\d+$/.test(version)) return { status: 'unknown', why: `${source}: not a version number` };
  if (version === '219') {
    // RHEL/CentOS 7's PID 1 says just 219; whether the backport is in depends on the release.
    return { status: 'unknown', why: `${source}: systemd 219 is RHEL/CentOS 7's; the package release (rpm -q systemd) tells whether it has the fix` };
  }
  if (rpmvercmp(version, String(UPSTREAM_FIXED)) < 0) {
    return { status: 'affected', why: `${source}: upstream systemd ${version} predates v${UPSTREAM_FIXED} ("sd-bus: deal with cookie overruns"), unless the distribution backported it` };
  }
  return { status: 'fixed', why: `${source}: systemd ${version} has the cookie overflow fix (v${UPSTREAM_FIXED} and later)` };
}

/** Journal lines of the symptom: runc's and systemctl's D-Bus timeouts, systemd's own bus errors. */
export const SYMPTOM_PATTERN =
  /Failed to start transient scope unit|Failed to introspect object|Connection timed out|Failed to activate service 'org\.freedesktop\.systemd1'|Failed to connect to bus|Activation of org\.freedesktop\.systemd1 timed out|Failed to create bus connection|Transport endpoint is not connected/;

/** The last `max` lines of a journal excerpt that show the symptom. Pure. */
export function symptomLines(text: string, max = 5): string[] {
  return text
    .split('\n')
    .filter((l) => SYMPTOM_PATTERN.test(l))
    .slice(-max)
    .map((l) => (l.length > 300 ? `${l.slice(0, 297)}...` : l));
}
