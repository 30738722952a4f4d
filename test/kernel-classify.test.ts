import t from 'tap';
import { classifyKernelLine, CRITICAL_COMMS, type KernelKind } from '../checks/kernel-classify.js';
import { kernelRows } from './helpers/kernel-corpus.js';

const rows = kernelRows();

t.test('every real line is classified as its label says', async (t) => {
  const expected: Record<string, KernelKind[]> = {
    'hung-task': ['KernelDeadlock', 'TaskHung'],
    'oom-kill': ['OOMKilling'],
    'fs-readonly': ['ReadonlyFilesystem', 'FilesystemError'],
    'fs-error': ['FilesystemError'],
    'io-error': ['IOError'],
    'soft-lockup': ['SoftLockup'],
    'conntrack-full': ['ConntrackFull'],
    'netdev-leak': ['UnregisterNetDevice'],
  };
  const seen = new Set<string>();
  for (const r of rows) {
    const c = classifyKernelLine(r.line);
    if (r.label === 'benign' || r.label === 'benign-oom-context') {
      t.equal(c, undefined, `ordinary: ${r.line}`);
      continue;
    }
    const kinds = expected[r.label];
    t.ok(kinds, `known label ${r.label}`);
    t.ok(c && kinds!.includes(c.kind), `${r.label} → ${c?.kind}: ${r.line}`);
    if (c) seen.add(c.kind);
    if (r.label === 'oom-kill') {
      const victim = /killed=([^;\s]+)/.exec(r.note)?.[1];
      t.equal(c?.comm, victim, `OOM victim ${victim}`);
    }
    if (r.label === 'hung-task') {
      const comm = /task (.+):\d+ blocked/.exec(r.line)![1]!;
      t.equal(c?.comm, comm);
      t.equal(c?.kind, CRITICAL_COMMS.includes(comm) ? 'KernelDeadlock' : 'TaskHung', `hung ${comm}`);
    }
    if (r.line.includes('Remounting filesystem read-only') || r.line.includes('Shutting down filesystem')) {
      t.equal(c?.kind, 'ReadonlyFilesystem');
    }
  }
  // Every kind has at least one real line behind it.
  t.same(
    [...seen].sort(),
    ['ConntrackFull', 'FilesystemError', 'IOError', 'KernelDeadlock', 'OOMKilling', 'ReadonlyFilesystem', 'SoftLockup', 'TaskHung', 'UnregisterNetDevice'],
  );
});

t.test('details the evidence needs', async (t) => {
  t.match(classifyKernelLine('[450528.013688] INFO: task dockerd:1810 blocked for more than 328 seconds.'), {
    kind: 'KernelDeadlock',
    comm: 'dockerd',
    pid: 1810,
    seconds: 328,
  });
  t.match(classifyKernelLine('[26825.855448] INFO: task kworker/2:1:5747 blocked for more than 120 seconds.'), { kind: 'TaskHung', comm: 'kworker/2:1', pid: 5747 });
  t.match(classifyKernelLine('[  147.377885] Memory cgroup out of memory: Killed process 989 (kubelet) total-vm:856872kB, anon-rss:49600kB'), { comm: 'kubelet', pid: 989 });
  t.match(classifyKernelLine('[7438185.635874] EXT4-fs (dm-4): Remounting filesystem read-only'), { kind: 'ReadonlyFilesystem', device: 'dm-4' });
  t.match(classifyKernelLine('[  543.676116] Buffer I/O error on device dm-0, logical block 2477053'), { device: 'dm-0' });
  t.match(classifyKernelLine(' kernel:[56076.238577] watchdog: BUG: soft lockup - CPU#20 stuck for 22s! [SCTP timer:2111]'), { kind: 'SoftLockup', comm: 'SCTP timer', pid: 2111, seconds: 22 });
  t.match(classifyKernelLine('unregister_netdevice: waiting for eth0 to become free. Usage count = 2'), { device: 'eth0' });
});

t.test('linear time on hostile lines', async (t) => {
  const big = 100_000;
  const hostile = [
    'task '.repeat(big / 5) + ' blocked for more than '.repeat(10),
    'Killed process 1 ('.repeat(big / 18),
    'XFS ('.repeat(big / 5),
    'BUG: soft lockup - CPU#1 stuck for 1s! ['.repeat(big / 40),
    'oom-kill:,task=,task='.repeat(big / 20),
    ':'.repeat(big) + ' blocked for more than 1 seconds',
  ];
  for (const line of hostile) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < 5; i++) classifyKernelLine(line);
    const ms = Number(process.hrtime.bigint() - start) / 1e6 / 5;
    t.ok(ms < 200, `${line.slice(0, 20)}…: ${ms.toFixed(1)} ms`);
  }
});
