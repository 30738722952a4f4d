/**
 * Classifies one kernel log line by the node fault it reports.
 *
 * Pure and linear in the line length: every search is `indexOf`; the few regexes are sticky (run at
 * one position) with bounded quantifiers, so a hostile 100 KB line costs about one scan. A line may
 * carry any prefix (journald's MESSAGE is bare, but dmesg `[ts]`, `dmesg -T`, syslog `kernel:` and
 * pasted forms are all seen on real nodes; see test/fixtures/kernel/), so nothing is anchored at the
 * start of the line.
 *
 * What each kind means for the node, after node-problem-detector's config/kernel-monitor.json
 * (a `permanent` rule sets a Node condition, a `temporary` one only raises an Event):
 *
 * | kind                | NPD                               | nodemedic                                    |
 * |---------------------|-----------------------------------|----------------------------------------------|
 * | KernelDeadlock      | permanent, condition KernelDeadlock (DockerHung: `task docker:`) | condition: a hung task of the container runtime or kubelet (dockerd, docker, containerd, containerd-shim, runc, kubelet) |
 * | TaskHung            | temporary                         | event: any other hung task                   |
 * | ReadonlyFilesystem  | permanent, condition ReadonlyFilesystem (`Remounting filesystem read-only`); XfsShutdown | condition: EXT4 remounted read-only, or XFS shut down (every write then fails) |
 * | FilesystemError     | temporary Ext4Error               | event: EXT4-fs error, XFS corruption         |
 * | IOError             | temporary (`Buffer I/O error`)    | event: buffer and block-layer I/O errors     |
 * | OOMKilling          | temporary (every victim)          | event, but only for node-critical victims (`oomProcesses`); pods are OOM-killed routinely |
 * | SoftLockup          | (none)                            | event                                        |
 * | ConntrackFull       | (custom plugin, problem)          | event: packets are being dropped             |
 * | UnregisterNetDevice | temporary                         | event                                        |
 *
 * A condition kind is the node's state for the rest of the boot (a D-state task or a read-only mount
 * does not heal by itself); an event kind matters while it is recent. None is cured by restarting
 * kubelet, so none is a remediation trigger; all of them go into an episode's evidence bundle, where a
 * hung dockerd or an OOM-killed kubelet explains what the ladder saw.
 */

export type KernelKind =
  | 'KernelDeadlock'
  | 'TaskHung'
  | 'ReadonlyFilesystem'
  | 'FilesystemError'
  | 'IOError'
  | 'OOMKilling'
  | 'SoftLockup'
  | 'ConntrackFull'
  | 'UnregisterNetDevice';

/** Kinds that are a Node condition (NPD's condition types), in the order they are reported. */
export const CONDITION_KINDS: readonly KernelKind[] = ['KernelDeadlock', 'ReadonlyFilesystem'];
/** Kinds that are only events, most serious first. */
export const EVENT_KINDS: readonly KernelKind[] = [
  'OOMKilling',
  'SoftLockup',
  'IOError',
  'FilesystemError',
  'ConntrackFull',
  'UnregisterNetDevice',
  'TaskHung',
];

/**
 * Command names (`comm`, at most 15 bytes, so `docker-containerd` shows as `docker-containe`) whose hung
 * task means the runtime or kubelet is stuck in the kernel.
 */
export const CRITICAL_COMMS: readonly string[] = [
  'dockerd',
  'docker',
  'docker-containe',
  'containerd',
  'containerd-shim',
  'runc',
  'runc:[2:INIT]',
  'kubelet',
];

export interface KernelClassification {
  kind: KernelKind;
  /** The process the line names: the hung task, the OOM victim, the task on the locked CPU. */
  comm?: string;
  pid?: number;
  /** `blocked for more than N seconds`, `stuck for Ns`. */
  seconds?: number;
  /** The device named: `sda`, `dm-4`, `lo`. */
  device?: string;
}

const TASK_HUNG = ' blocked for more than ';
const SECONDS = /(\d{1,9}) seconds/y;
const SOFT_LOCKUP = 'BUG: soft lockup - CPU#';
const STUCK = /\d{1,5} stuck for (\d{1,9})s! \[/y;
const OOM_KILLED = ['Killed process ', 'Kill process '];
const PID_COMM = /(\d{1,10}) \(/y;
const NETDEV = 'unregister_netdevice: waiting for ';
const DEVICE_IN_PARENS = /\((?:device )?([\w.-]{1,64})\)/y;

/** `comm:pid` ending just before `end`: the pid is digits after the last ':' (comm may contain ':'). */
function commPidBefore(line: string, start: number, end: number): { comm: string; pid: number } | undefined {
  const colon = line.lastIndexOf(':', end - 1);
  if (colon < start || colon === end - 1) return undefined;
  const pid = line.slice(colon + 1, end);
  if (!/^\d{1,10}$/.test(pid)) return undefined;
  const comm = line.slice(start, colon);
  if (!comm || comm.length > 64) return undefined;
  return { comm, pid: Number(pid) };
}

function stickyAt(re: RegExp, line: string, at: number): RegExpExecArray | null {
  re.lastIndex = at;
  return re.exec(line);
}

/** The victim of an OOM kill: `Killed process 989 (kubelet) total-vm...` or `oom-kill:...,task=kubelet,pid=989,`. */
function oomVictim(line: string): { comm: string; pid: number } | undefined {
  for (const needle of OOM_KILLED) {
    const i = line.indexOf(needle);
    if (i === -1) continue;
    const m = stickyAt(PID_COMM, line, i + needle.length);
    if (!m) continue;
    const open = i + needle.length + m[0].length;
    // The comm may itself contain parentheses (`((resolved))`): it ends at the ')' followed by
    // ' ' or ',' that comes before the first ' total-vm' / ' score' / ', UID'.
    const tail = line.slice(open, open + 80);
    const close = /\)(?=[ ,])/.exec(tail);
    if (!close) continue;
    return { comm: tail.slice(0, close.index), pid: Number(m[1]) };
  }
  const o = line.indexOf('oom-kill:');
  if (o !== -1) {
    const t = line.indexOf(',task=', o);
    const p = t === -1 ? -1 : line.indexOf(',pid=', t + 6);
    if (t !== -1 && p !== -1 && p - t < 80) {
      const pid = /\d{1,10}/y;
      pid.lastIndex = p + 5;
      const m = pid.exec(line);
      if (m) return { comm: line.slice(t + 6, p), pid: Number(m[0]) };
    }
  }
  return undefined;
}

/** What one kernel line reports, or undefined for an ordinary line. */
export function classifyKernelLine(line: string): KernelClassification | undefined {
  // Hung task: `INFO: task dockerd:1810 blocked for more than 328 seconds.`
  const hung = line.indexOf(TASK_HUNG);
  if (hung !== -1) {
    const task = line.lastIndexOf('task ', hung);
    const cp = task === -1 ? undefined : commPidBefore(line, task + 5, hung);
    const s = stickyAt(SECONDS, line, hung + TASK_HUNG.length);
    if (cp && s) {
      const kind: KernelKind = CRITICAL_COMMS.includes(cp.comm) ? 'KernelDeadlock' : 'TaskHung';
      return { kind, comm: cp.comm, pid: cp.pid, seconds: Number(s[1]) };
    }
  }
  if (line.includes('Remounting filesystem read-only')) {
    const fs = line.indexOf('EXT4-fs ');
    const d = fs === -1 ? null : stickyAt(DEVICE_IN_PARENS, line, fs + 8);
    return { kind: 'ReadonlyFilesystem', ...(d ? { device: d[1] } : {}) };
  }
  const xfs = line.indexOf('XFS (');
  if (xfs !== -1) {
    const d = stickyAt(DEVICE_IN_PARENS, line, xfs + 4);
    const device = d ? { device: d[1] } : {};
    // NPD's XfsShutdown: `XFS (dm-4): I/O Error Detected. Shutting down filesystem` (a '.' since 5.15).
    if (line.includes('Shutting down filesystem', xfs)) return { kind: 'ReadonlyFilesystem', ...device };
    if (line.includes('orruption detected', xfs) || line.includes('Internal error', xfs)) return { kind: 'FilesystemError', ...device };
  }
  const ext4 = line.indexOf('EXT4-fs error');
  if (ext4 !== -1) {
    const d = stickyAt(DEVICE_IN_PARENS, line, ext4 + 14);
    return { kind: 'FilesystemError', ...(d ? { device: d[1] } : {}) };
  }
  // Block layer: `Buffer I/O error on dev sdb, ...`, `blk_update_request: I/O error, dev sda, ...`,
  // `blk_update_request: critical medium error, dev sdb`, `print_req_error: I/O error, dev sdc`.
  const buf = line.indexOf('Buffer I/O error on dev');
  if (buf !== -1) {
    const m = /(?:ice)? ([\w.-]{1,64}),/y;
    m.lastIndex = buf + 'Buffer I/O error on dev'.length;
    const d = m.exec(line);
    return { kind: 'IOError', ...(d ? { device: d[1] } : {}) };
  }
  const blk = Math.max(line.indexOf('blk_update_request: '), line.indexOf('print_req_error: '));
  if (blk !== -1) {
    const err = line.indexOf(' error, dev ', blk);
    if (err !== -1 && err - blk < 60) {
      const m = /([\w.-]{1,64})/y;
      m.lastIndex = err + ' error, dev '.length;
      const d = m.exec(line);
      return { kind: 'IOError', ...(d ? { device: d[1] } : {}) };
    }
  }
  const victim = oomVictim(line);
  if (victim) return { kind: 'OOMKilling', comm: victim.comm, pid: victim.pid };
  const lock = line.indexOf(SOFT_LOCKUP);
  if (lock !== -1) {
    const m = stickyAt(STUCK, line, lock + SOFT_LOCKUP.length);
    if (m) {
      const open = lock + SOFT_LOCKUP.length + m[0].length;
      const close = line.indexOf(']', open);
      const cp = close === -1 || close - open > 80 ? undefined : commPidBefore(line, open, close);
      return { kind: 'SoftLockup', seconds: Number(m[1]), ...(cp ?? {}) };
    }
  }
  if (line.includes('nf_conntrack: table full, dropping packet')) return { kind: 'ConntrackFull' };
  const nd = line.indexOf(NETDEV);
  if (nd !== -1) {
    const end = line.indexOf(' to become free', nd);
    if (end !== -1 && end - nd < 120) return { kind: 'UnregisterNetDevice', device: line.slice(nd + NETDEV.length, end) };
  }
  return undefined;
}
