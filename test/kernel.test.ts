/**
 * The kernel check through the code path the agent runs: the journald follower with its real argv,
 * through the host boundary, spawning a `journalctl` that prints the real corpus lines as journald
 * JSON records (an `env PATH=...` host prefix puts the fake first on PATH, the way nsenter is a prefix
 * in the DaemonSet). And /dev/kmsg: a file of kmsg records, and the real /dev/kmsg read-only.
 */
import t from 'tap';
import { appendFileSync, chmodSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { RealHost } from '../platform/host.js';
import { kernelCheck, type KernelOptions } from '../checks/kernel.js';
import { classifyKernelLine } from '../checks/kernel-classify.js';
import { KmsgSource, parseKmsgRecord } from '../checks/kernel-kmsg.js';
import type { CheckResult, Finding } from '../checks/types.js';
import { desiredConditions } from '../remediations/kubernetes/conditions.js';
import { kernelRows, type KernelRow } from './helpers/kernel-corpus.js';

const logger = pino({ level: 'silent' });
const rows = kernelRows();

// Prints the records of $FAKE_DIR/backlog.jsonl (records after --after-cursor only), then with -f
// follows $FAKE_DIR/live.jsonl. Refuses anything but a kernel-log query, so the argv rewrite is tested.
const FAKE_JOURNALCTL = `#!/bin/sh
case " $* " in *" --version "*) echo "systemd 252 (252.33-1~deb12u1)"; exit 0;; esac
echo "$*" >> "$FAKE_DIR/argv.log"
case " $* " in *" -k "*) ;; *) echo "fake journalctl: not a kernel query: $*" >&2; exit 2;; esac
case " $* " in *" -u "*) echo "fake journalctl: -u given: $*" >&2; exit 2;; esac
case " $* " in *" -f "*) exec tail -n +1 -f "$FAKE_DIR/live.jsonl";; esac
cat "$FAKE_DIR/backlog.jsonl"
`;

let seq = 0;
function record(text: string, atMs: number): string {
  seq++;
  const hex = seq.toString(16);
  return `${JSON.stringify({
    __CURSOR: `s=6d1f0c2a0b0e4c2e8f0a7c1b2d3e4f50;i=${hex};b=0a1b2c3d4e5f60718293a4b5c6d7e8f9;m=${hex};t=5f0000000000${hex};x=abcdef${hex}`,
    __REALTIME_TIMESTAMP: String(Math.round(atMs * 1000)),
    __MONOTONIC_TIMESTAMP: String(seq * 1000),
    _TRANSPORT: 'kernel',
    MESSAGE: text,
  })}\n`;
}

interface Fake {
  dir: string;
  host: RealHost;
  live(text: string, atMs?: number): void;
}

function fake(t: Tap, backlog: { text: string; atMs?: number }[]): Fake {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-kjournal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'journalctl'), FAKE_JOURNALCTL);
  chmodSync(join(dir, 'journalctl'), 0o755);
  writeFileSync(join(dir, 'backlog.jsonl'), backlog.map((b) => record(b.text, b.atMs ?? Date.now())).join(''));
  writeFileSync(join(dir, 'live.jsonl'), '');
  const host = new RealHost({ commandPrefix: ['env', `PATH=${dir}:${process.env.PATH}`, `FAKE_DIR=${dir}`] });
  return { dir, host, live: (text, atMs = Date.now()) => appendFileSync(join(dir, 'live.jsonl'), record(text, atMs)) };
}

type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

async function check(t: Tap, host: RealHost, over: Partial<KernelOptions> = {}, requestRun?: () => void) {
  const c = kernelCheck.create({ ...kernelCheck.defaults, ...over }, { host, logger, nodeName: 'n', ...(requestRun ? { requestRun } : {}) });
  await c.start?.();
  t.teardown(() => c.stop?.());
  return c;
}

const run = (c: { run(s: AbortSignal): Promise<Finding> }) => c.run(new AbortController().signal);
const reportable = (r: KernelRow): boolean => {
  const c = classifyKernelLine(r.line);
  return !!c && (c.kind !== 'OOMKilling' || kernelCheck.defaults.oomProcesses.includes(c.comm ?? ''));
};

t.test('every reason from real lines through journalctl -k', async (t) => {
  const byKind = new Map<string, KernelRow[]>();
  for (const r of rows.filter(reportable)) {
    const k = classifyKernelLine(r.line)!.kind;
    byKind.set(k, [...(byKind.get(k) ?? []), r]);
  }
  t.equal(byKind.size, 9, 'all nine kinds have real lines');
  for (const [kind, rs] of byKind) {
    const f = fake(t, rs.map((r) => ({ text: r.line })));
    const c = await check(t, f.host);
    const r = await run(c);
    t.equal(r.status, 'problem', `${kind}: ${r.message}`);
    t.equal(r.reason, kind);
    const ev = r.evidence as { kinds: Record<string, { count: number; lines: string[]; condition: boolean }> };
    t.equal(ev.kinds[kind]!.count, rs.length, `${kind}: every line counted`);
    t.equal(ev.kinds[kind]!.lines.at(-1), rs.at(-1)!.line, 'the line itself is the evidence');
    t.equal(ev.kinds[kind]!.condition, kind === 'KernelDeadlock' || kind === 'ReadonlyFilesystem');
    const argv = readFileSync(join(f.dir, 'argv.log'), 'utf8');
    t.match(argv, /(^| )-k( |$)/m, 'journalctl asked for the kernel log');
    t.notMatch(argv, /\u0000/, 'the placeholder unit never reaches journalctl');
  }
});

t.test('Node conditions: KernelDeadlock and ReadonlyFilesystem from real lines, NPD names; events set neither', async (t) => {
  const asResult = (f: Finding): CheckResult => ({ check: 'kernel', evidence: {}, observedAt: new Date().toISOString(), durationSeconds: 0, ...f }) as CheckResult;
  const conditions = (f: Finding) =>
    Object.fromEntries(
      desiredConditions([asResult(f)], undefined)
        .filter((c) => c.type === 'KernelDeadlock' || c.type === 'ReadonlyFilesystem')
        .map((c) => [c.type, `${c.status} ${c.reason}`]),
    );
  const byKind = new Map<string, KernelRow[]>();
  for (const r of rows.filter(reportable)) {
    const k = classifyKernelLine(r.line)!.kind;
    byKind.set(k, [...(byKind.get(k) ?? []), r]);
  }
  for (const [kind, rs] of byKind) {
    const r = await run(await check(t, fake(t, rs.map((x) => ({ text: x.line }))).host));
    t.same(
      conditions(r),
      {
        KernelDeadlock: kind === 'KernelDeadlock' ? 'True KernelDeadlock' : 'False KernelHasNoDeadlock',
        ReadonlyFilesystem: kind === 'ReadonlyFilesystem' ? 'True ReadonlyFilesystem' : 'False FilesystemIsNotReadOnly',
      },
      `${kind}: its own condition only`,
    );
  }
  // Both at once (a hung dockerd and a read-only remount): both True; the condition names the process.
  const both = [...byKind.get('KernelDeadlock')!, ...byKind.get('ReadonlyFilesystem')!];
  const r = await run(await check(t, fake(t, both.map((x) => ({ text: x.line }))).host));
  t.same(conditions(r), { KernelDeadlock: 'True KernelDeadlock', ReadonlyFilesystem: 'True ReadonlyFilesystem' });
  const dl = desiredConditions([asResult(r)], undefined).find((c) => c.type === 'KernelDeadlock')!;
  t.match(dl.message, /^kernel: KernelDeadlock \(.+\): \d+ line\(s\) this boot, last "/, 'the message names the hung processes and quotes the line');
  // No verdict: Unknown, except while catching up (nothing published yet).
  t.same(conditions({ status: 'unknown', reason: 'NoKernelLines', message: 'no kernel lines' }), { KernelDeadlock: 'Unknown NoKernelLines', ReadonlyFilesystem: 'Unknown NoKernelLines' });
  t.same(conditions({ status: 'unknown', reason: 'SourceCatchingUp', message: 'still reading' }), {});
});

t.test('ordinary kernel lines and OOM kills of workloads never report', async (t) => {
  const quiet = rows.filter((r) => !reportable(r));
  t.ok(quiet.filter((r) => r.label === 'oom-kill').length >= 5, 'OOM kills of python3/node/agetty are in the mix');
  const f = fake(t, quiet.map((r) => ({ text: r.line })));
  const r = await run(await check(t, f.host));
  t.equal(r.status, 'ok', r.message);
  t.equal(r.reason, 'KernelLogQuiet');
  t.ok((r.evidence as { linesRead: number }).linesRead >= quiet.length, 'they were all read');
  t.ok((r.evidence as { ignoredOomKills: number }).ignoredOomKills >= 5);
});

t.test('events age out after the window; conditions hold for the boot', async (t) => {
  const old = Date.now() - 20 * 60_000;
  const f = fake(t, [
    { text: '[1454500.910215] nf_conntrack: table full, dropping packet', atMs: old },
    { text: '[450528.013688] INFO: task dockerd:1810 blocked for more than 328 seconds.', atMs: old },
  ]);
  const r = await run(await check(t, f.host));
  t.equal(r.reason, 'KernelDeadlock');
  t.notMatch(r.message, /ConntrackFull/, 'a 20-minute-old conntrack drop is past the 10m window');
  const f2 = fake(t, [{ text: '[1454500.910215] nf_conntrack: table full, dropping packet', atMs: old }]);
  const r2 = await run(await check(t, f2.host));
  t.equal(r2.status, 'ok', 'an old event alone is no longer a problem');
  t.equal((r2.evidence as { kinds: Record<string, { active: boolean }> }).kinds.ConntrackFull!.active, false);
});

t.test('a live line asks for a run and is reported', async (t) => {
  const f = fake(t, [{ text: '[    2.666672] hub 1-1:1.0: USB hub found' }]);
  let asked!: () => void;
  const requested = new Promise<void>((r) => (asked = r));
  const c = await check(t, f.host, {}, () => asked());
  t.equal((await run(c)).status, 'ok');
  f.live('[  147.377885] Memory cgroup out of memory: Killed process 989 (kubelet) total-vm:856872kB, anon-rss:49600kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:464kB oom_score_adj:-999');
  await requested;
  const r = await run(c);
  t.equal(r.reason, 'OOMKilling');
  t.match(r.message, /kubelet/);
});

t.test('a journal without kernel lines: unknown, never ok', async (t) => {
  const f = fake(t, []);
  const r = await run(await check(t, f.host));
  t.match(r, { status: 'unknown', reason: 'NoKernelLines' });
});

t.test('no journalctl: unknown, never ok', async (t) => {
  const host = new RealHost({ commandPrefix: ['env', 'PATH=/nonexistent'] });
  const r = await run(await check(t, host));
  t.equal(r.status, 'unknown');
  t.equal(r.reason, 'NotInstalled');
});

t.test('kmsg records from a file', async (t) => {
  t.same(parseKmsgRecord('6,1234,5678901,-;EXT4-fs (dm-4): Remounting filesystem read-only'), {
    facility: 0,
    level: 6,
    seq: 1234,
    usec: 5678901,
    text: 'EXT4-fs (dm-4): Remounting filesystem read-only',
  });
  t.equal(parseKmsgRecord(' SUBSYSTEM=block'), undefined);
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-kmsg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'kmsg');
  const hung = rows.find((r) => r.line.includes('task dockerd:'))!.line;
  writeFileSync(
    path,
    [
      '6,1,1000,-;Booting Linux on physical CPU 0x0',
      ` DEVICE=+block:8:0`,
      `3,2,2000,-;${hung}`,
      // Userspace writes to kmsg (facility 1 = user) are not the kernel's.
      '14,3,3000,-;[6901]: Remounting filesystem read-only',
    ].join('\n') + '\n',
  );
  const c = await check(t, new RealHost(), { source: 'kmsg', kmsgPath: path, pollInterval: '100ms' });
  const r = await run(c);
  t.equal(r.reason, 'KernelDeadlock', r.message);
  t.notOk((r.evidence as { kinds: Record<string, unknown> }).kinds.ReadonlyFilesystem, 'facility 1 ignored');
  const missing = await run(await check(t, new RealHost(), { source: 'kmsg', kmsgPath: join(dir, 'none') }));
  t.equal(missing.status, 'unknown');
});

t.test('the real /dev/kmsg, read-only and non-blocking', async (t) => {
  let lines = 0;
  const src = new KmsgSource({ path: '/dev/kmsg', bootTimeMs: 0, pollIntervalMs: 60_000, onLine: () => lines++ });
  src.start();
  t.teardown(() => src.stop());
  const caughtUp = await src.whenCaughtUp(10_000);
  if (src.status().failure) {
    t.fail(`cannot read /dev/kmsg here: ${src.status().failure!.message}`);
    return;
  }
  t.ok(caughtUp, 'drained the ring buffer without blocking');
  t.ok(lines > 0, `${lines} kernel records read`);
  // The kernel's own view of the descriptor: access mode O_RDONLY (0) and O_NONBLOCK (04000) set.
  const fd = src.fd!;
  t.match(readlinkSync(`/proc/self/fd/${fd}`), /^\/dev\/kmsg$/);
  const flags = parseInt(/^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
  t.equal(flags & 0o3, 0, 'opened O_RDONLY: nothing can be written through it');
  t.equal(flags & 0o4000, 0o4000, 'O_NONBLOCK');
  // And through the check.
  const r = await run(await check(t, new RealHost(), { source: 'kmsg', pollInterval: '60s' }));
  t.not(r.status, 'unknown', `${r.reason}: ${r.message}`);
});
