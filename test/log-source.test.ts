/**
 * The log followers. Three layers:
 * - pure: journal record parsing (the corpus sample, byte arrays, null, cut records) and line splitting;
 * - the journald follower against a scripted `journalctl` (a real process reached through the real
 *   host command prefix, as on a node) for what a real journal will not produce on demand: invalid
 *   JSON, a missing binary, a journalctl that keeps failing;
 * - a REAL journal: systemd as PID 1 of a namespace, units writing to it; journalctl killed
 *   mid-stream resumes from its cursor with no loss and no duplicate; a flood of 10,000 lines/s
 *   through the whole pleg check with bounded memory;
 * plus the file follower on real files with real timers (fs.watch and the polling fallback).
 */
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t, { type Test } from 'tap';
import { systemClock } from '../platform/clock.js';
import { RealHost } from '../platform/host.js';
import {
  FileSource,
  JournaldSource,
  LineSplitter,
  parseJournalRecord,
  UNIT_STARTED_MESSAGE_ID,
  type LogLine,
} from '../checks/log-source.js';
import { MAX_TIMES_PER_LABEL, PlegMonitor, plegCheck } from '../checks/pleg.js';
import { requireSystemdNs, startSystemdNs, waitFor } from './harness/systemd-ns.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const corpusDir = fileURLToPath(new URL('./fixtures/corpus/', import.meta.url));
const plegRows = readFileSync(join(corpusDir, 'kubelet/kubelet-pleg.tsv'), 'utf8')
  .split('\n')
  .slice(1)
  .filter(Boolean)
  .map((r) => ({ label: r.slice(0, r.indexOf('\t')), line: r.slice(r.indexOf('\t') + 1) }));
const unhealthyLines = plegRows.filter((r) => r.label === 'pleg-unhealthy').map((r) => r.line);
const otherLines = readFileSync(join(corpusDir, 'kubelet/kubelet-other.tsv'), 'utf8')
  .split('\n')
  .slice(1)
  .filter(Boolean)
  .map((r) => r.slice(r.indexOf('\t') + 1));
const signal = new AbortController().signal;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tmp(t: Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `nodemedic-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ------------------------------------------------------------------------------------------------
// pure

t.test('parseJournalRecord', async (t) => {
  const sample = readFileSync(join(corpusDir, 'journal/journal-json-sample.jsonl'), 'utf8').trim();
  t.match(parseJournalRecord(sample), {
    kind: 'record',
    cursor: 's=71c4550142d14ace8e2959e3540cc15c;i=133c;b=44864010f0d94baba7b6bf8019f82a56;m=2945cd3;t=5a00d4eb59180;x=8ed47f7f9b3d798',
    realtimeUs: 1583353899094400,
    monotonicUs: 43277523,
    messages: ['2020/03/04 20:31:39 POST / - 200 OK - ContentLength: 83'],
    pid: 2254,
    unitStarted: false,
  });

  const base = { __CURSOR: 'c1', __REALTIME_TIMESTAMP: '1795802865861787' };
  const bytes = [...Buffer.from('hello '), 0xff, 0xfe, ...Buffer.from(' PLEG')];
  t.match(parseJournalRecord(JSON.stringify({ ...base, MESSAGE: bytes })), { kind: 'record', messages: ['hello \ufffd\ufffd PLEG'] }, 'a byte array is decoded lossily');
  t.match(parseJournalRecord(JSON.stringify({ ...base, MESSAGE: null })), { kind: 'record', messages: [] }, 'MESSAGE null');
  t.match(parseJournalRecord(JSON.stringify(base)), { kind: 'record', messages: [] }, 'no MESSAGE');
  t.match(parseJournalRecord(JSON.stringify({ ...base, MESSAGE: ['a', [98, 255], 7] })), { kind: 'record', messages: ['a', 'b\ufffd'] }, 'a repeated field');
  t.match(parseJournalRecord(JSON.stringify({ ...base, MESSAGE: [1, 2, 300] })), { kind: 'record', messages: [] }, 'numbers that are not bytes');
  t.match(parseJournalRecord(JSON.stringify({ ...base, MESSAGE: 'Started kubelet.service.', MESSAGE_ID: UNIT_STARTED_MESSAGE_ID, _PID: '1' })), { unitStarted: true, pid: 1 });
  t.match(parseJournalRecord(JSON.stringify({ ...base, MESSAGE: 'x', MESSAGE_ID: UNIT_STARTED_MESSAGE_ID, _PID: '77' })), { unitStarted: false }, 'only PID 1 speaks for systemd');

  t.match(parseJournalRecord('not json'), { kind: 'invalid', why: 'not JSON' });
  t.match(parseJournalRecord('[1,2]'), { kind: 'invalid', why: 'not a JSON object' });
  t.match(parseJournalRecord('null'), { kind: 'invalid' });
  t.match(parseJournalRecord(JSON.stringify({ MESSAGE: 'x', __REALTIME_TIMESTAMP: '1' })), { kind: 'invalid', why: 'no __CURSOR' });
  t.match(parseJournalRecord(JSON.stringify({ __CURSOR: 'c', __REALTIME_TIMESTAMP: 'soon' })), { kind: 'invalid', why: 'no __REALTIME_TIMESTAMP', cursor: 'c' });

  // A record cut by the line limit: the cursor is recovered when it came before the cut.
  const cursor = 's=a309a852a9b847c090f0f2aa549ad47a;i=5;b=b17929689a5741c8bc210b8da9b09ed6;m=24161de9;t=66145efe8049b;x=30898f2a18446c26';
  const cut = JSON.stringify({ __CURSOR: cursor, __REALTIME_TIMESTAMP: '1', MESSAGE: 'y'.repeat(1000) }).slice(0, 600);
  t.match(parseJournalRecord(cut, true), { kind: 'invalid', cursor });
  t.match(parseJournalRecord(cut.replace('"__CURSOR":', '"__CURSOR" : '), true), { kind: 'invalid', cursor }, 'old journalctl spacing');
  t.notOk((parseJournalRecord(cut, false) as any).cursor, 'a merely invalid line is not mined for a cursor');
  t.notOk((parseJournalRecord('{"MESSAGE":"a","__CURSOR":"garbage', true) as any).cursor, 'a cut cursor is not used');
  t.notOk((parseJournalRecord('{"__CURSOR":"not-a-cursor","MESSAGE":"yyy', true) as any).cursor, 'nor one of the wrong shape');
});

t.test('LineSplitter: chunks, long lines, multi-byte characters, flush', async (t) => {
  const got: [string, boolean][] = [];
  const s = new LineSplitter(8, (l, cut) => got.push([l, cut]));
  s.push(Buffer.from('ab'));
  s.push(Buffer.from('c\nde'));
  s.push(Buffer.from('f\n\n0123456789abc\nxyz'));
  t.equal(s.buffered, 3);
  s.flush();
  s.flush();
  const euro = Buffer.from('€\n'); // 3 bytes + newline, split in the middle of the character
  s.push(euro.subarray(0, 1));
  s.push(euro.subarray(1));
  t.same(got, [
    ['abc', false],
    ['def', false],
    ['', false],
    ['01234567', true],
    ['xyz', false],
    ['€', false],
  ]);
  t.equal(s.buffered, 0);
  s.push(Buffer.alloc(1024 * 1024, 0x61));
  t.equal(s.buffered, 8, 'an endless line holds maxLineBytes, not more');
});

// ------------------------------------------------------------------------------------------------
// journald follower against a scripted journalctl

const FAKE_JOURNALCTL = `
import { appendFileSync, readFileSync } from 'node:fs';
const [dir, ...argv] = process.argv.slice(2);
appendFileSync(dir + '/calls', JSON.stringify(argv) + '\\n');
const cfg = JSON.parse(readFileSync(dir + '/config.json', 'utf8'));
if (argv[0] === 'setpriv') {
  if (!cfg.setpriv) { process.stderr.write("setpriv: unrecognized option '--pdeathsig'\\n"); process.exit(1); }
  argv.splice(0, 3);
  if (argv[0] === 'true') process.exit(0);
}
if (argv[0] !== 'journalctl') { process.stderr.write('no such command ' + argv[0] + '\\n'); process.exit(127); }
if (argv.includes('--version')) { console.log(cfg.version); process.exit(0); }
if (cfg.fail) { process.stderr.write(cfg.fail.stderr); process.exit(cfg.fail.code); }
const follow = argv.includes('-f');
let lines = readFileSync(dir + '/backlog.jsonl', 'utf8').split('\\n').filter(Boolean);
if (follow) lines = lines.concat(readFileSync(dir + '/follow.jsonl', 'utf8').split('\\n').filter(Boolean));
const after = argv.find((a) => a.startsWith('--after-cursor='))?.slice('--after-cursor='.length);
if (after) {
  const i = lines.findIndex((l) => l.includes('"__CURSOR":"' + after + '"'));
  lines = i === -1 ? [] : lines.slice(i + 1);
}
process.stdout.write(lines.map((l) => l + '\\n').join(''), () => {
  if (!follow || cfg.followExits) process.exit(0);
  setInterval(() => {}, 1 << 30);
});
`;

interface Fake {
  dir: string;
  host: RealHost;
  calls(): string[][];
  config(c: Record<string, unknown>): void;
}

function fakeJournalctl(t: Test, backlog: string[], follow: string[] = [], config: Record<string, unknown> = {}): Fake {
  const dir = tmp(t, 'journalctl');
  writeFileSync(join(dir, 'journalctl.mjs'), FAKE_JOURNALCTL);
  writeFileSync(join(dir, 'backlog.jsonl'), backlog.map((l) => `${l}\n`).join(''));
  writeFileSync(join(dir, 'follow.jsonl'), follow.map((l) => `${l}\n`).join(''));
  const cfgFile = join(dir, 'config.json');
  const write = (c: Record<string, unknown>): void => writeFileSync(cfgFile, JSON.stringify({ version: 'systemd 252 (252.38-1~deb12u1)', setpriv: true, ...c }));
  write(config);
  return {
    dir,
    // Everything "on the node" goes through this prefix, exactly as nsenter would be used. Without
    // tap's NODE_OPTIONS (its TypeScript loader), a node process starts in milliseconds, not a second.
    host: new RealHost({ commandPrefix: ['env', '-u', 'NODE_OPTIONS', process.execPath, join(dir, 'journalctl.mjs'), dir] }),
    calls: () =>
      readFileSync(join(dir, 'calls'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as string[]),
    config: write,
  };
}

const T0_US = 1_795_802_865_000_000;
function rec(i: number, message: unknown, extra: Record<string, unknown> = {}): string {
  const hex = i.toString(16);
  return JSON.stringify({
    __CURSOR: `s=a309a852a9b847c090f0f2aa549ad47a;i=${hex};b=b17929689a5741c8bc210b8da9b09ed6;m=${hex};t=${hex};x=${hex}`,
    __REALTIME_TIMESTAMP: String(T0_US + i * 1000),
    __MONOTONIC_TIMESTAMP: String(1_000_000 + i * 1000),
    _PID: '4242',
    ...(message === undefined ? {} : { MESSAGE: message }),
    ...extra,
  });
}
const cursorOf = (line: string): string => (JSON.parse(line) as { __CURSOR: string }).__CURSOR;

t.test('journald: backlog, then follow from the cursor; bad records are counted and skipped', async (t) => {
  const pleg = unhealthyLines[0]!;
  const nonUtf8 = [...Buffer.from('kubelet: '), 0xc3, 0x28, ...Buffer.from(' ' + pleg)];
  const mb = 'z'.repeat(1024 * 1024);
  const backlog = [
    rec(0, 'before the window'), // older than sinceMs: read, not delivered
    rec(1, pleg),
    rec(2, nonUtf8),
    rec(3, null),
    rec(4, undefined),
    rec(5, ['first value', 'second value']),
    'this is not JSON',
    '[1,2,3]',
    JSON.stringify({ MESSAGE: 'no cursor', __REALTIME_TIMESTAMP: String(T0_US) }),
    rec(6, 'Started kubelet.service.', { _PID: '1', MESSAGE_ID: UNIT_STARTED_MESSAGE_ID }),
    // 1 MB: the MESSAGE comes after the cursor, as journalctl writes it, so the cursor survives the cut.
    JSON.stringify({ __CURSOR: cursorOf(rec(7, '')), __REALTIME_TIMESTAMP: String(T0_US + 7000), MESSAGE: mb }),
  ];
  const follow = [rec(8, 'followed line'), rec(9, unhealthyLines[1]!)];
  const fake = fakeJournalctl(t, backlog, follow);
  const got: LogLine[] = [];
  const src = new JournaldSource({ host: fake.host, unit: 'kubelet', sinceMs: T0_US / 1000 + 0.5, onLine: (l) => got.push(l) });
  t.teardown(() => src.stop());
  src.start();
  t.equal(await src.whenCaughtUp(10_000), true, 'the backlog was read to its end');
  await waitFor(() => got.length >= 7, { timeoutMs: 10_000, what: 'the followed lines' });
  t.same(
    got.map((l) => l.text),
    [pleg, `kubelet: \ufffd( ${pleg}`, 'first value', 'second value', 'Started kubelet.service.', 'followed line', unhealthyLines[1]!],
  );
  t.equal(got[0]!.timeMs, T0_US / 1000 + 1, 'the record time, not the time of reading');
  t.equal(got[0]!.pid, 4242);
  t.equal(got[4]!.unitStarted, true);
  const st = src.status();
  t.match(st, { state: 'following', caughtUp: true, invalidRecords: 3, truncatedLines: 1, emptyMessages: 2, restarts: 0, lines: 7 });
  t.equal(st.cursor, cursorOf(follow[1]!));

  const calls = fake.calls().filter((c) => c.includes('-u'));
  t.equal(calls.length, 2, 'one backlog read, one follower');
  const [first, second] = calls as [string[], string[]];
  t.same(first.slice(0, 4), ['setpriv', '--pdeathsig', 'TERM', 'journalctl']);
  t.ok(first.includes('-b') && first.includes('--no-pager') && first.includes('--all'));
  t.ok(first.includes('--output-fields=MESSAGE,MESSAGE_ID,_PID'));
  t.notOk(first.includes('-f'), 'the backlog is read without -f');
  t.ok(first.includes(`--since=@${Math.floor(T0_US / 1e6)}`), 'whole seconds, rounded down');
  t.ok(second.includes('-f') && second.includes('--no-tail'));
  t.ok(second.includes(`--after-cursor=${cursorOf(backlog[10]!)}`), 'follows after the cut record, whose cursor was recovered');
  t.notOk(second.some((a) => a.startsWith('--since')));
});

t.test('journald: an old journalctl (no --output-fields) and no setpriv', async (t) => {
  const fake = fakeJournalctl(t, [rec(1, 'a')], [], { version: 'systemd 219\n+PAM +AUDIT', setpriv: false });
  const got: string[] = [];
  const src = new JournaldSource({ host: fake.host, unit: 'kubelet', sinceMs: 0, onLine: (l) => got.push(l.text) });
  t.teardown(() => src.stop());
  src.start();
  t.equal(await src.whenCaughtUp(10_000), true);
  const first = fake.calls().find((c) => c.includes('-u'))!;
  t.equal(first[0], 'journalctl', 'run directly when setpriv cannot help');
  t.notOk(first.some((a) => a.startsWith('--output-fields')), 'systemd 219 does not know --output-fields');
  t.same(got, ['a']);
});

t.test('journald: journalctl exiting while following is restarted from its cursor: no loss, no duplicate', async (t) => {
  const backlog = [rec(1, 'one'), rec(2, 'two')];
  const follow = [rec(3, 'three'), rec(4, 'four')];
  const fake = fakeJournalctl(t, backlog, follow, { followExits: true });
  const got: string[] = [];
  const src = new JournaldSource({ host: fake.host, unit: 'kubelet', sinceMs: 0, backoffMinMs: 20, backoffMaxMs: 200, onLine: (l) => got.push(l.text) });
  t.teardown(() => src.stop());
  src.start();
  await waitFor(() => src.status().restarts >= 3, { timeoutMs: 10_000, what: 'restarts' });
  // More is written while it is down; the next run starts after the last cursor handled.
  writeFileSync(join(fake.dir, 'follow.jsonl'), [...follow, rec(5, 'five')].join('\n') + '\n');
  await waitFor(() => got.length >= 5, { timeoutMs: 10_000, what: 'line five' });
  await sleep(300);
  t.same(got, ['one', 'two', 'three', 'four', 'five']);
  const st = src.status();
  t.notOk(st.failure, 'a journalctl that delivered something is not a failing one');
  const follows = fake.calls().filter((c) => c.includes('-f'));
  t.ok(follows.length >= 3);
  t.ok(follows.slice(1).every((c) => c.some((a) => a.startsWith('--after-cursor='))), 'every restart resumes from a cursor');
});

t.test('journald: journalctl missing, or failing every time', async (t) => {
  const missing = new JournaldSource({
    host: new RealHost({ commandPrefix: ['/nonexistent-nodemedic-test/bin'] }),
    unit: 'kubelet',
    sinceMs: 0,
    backoffMaxMs: 100,
    onLine: () => t.fail('no line expected'),
  });
  t.teardown(() => missing.stop());
  missing.start();
  t.equal(await missing.whenCaughtUp(10_000), false);
  t.match(missing.status(), { state: 'error', failure: { reason: 'NotInstalled', message: /journalctl is not installed/ } });

  const fake = fakeJournalctl(t, [], [], { fail: { code: 1, stderr: 'Failed to open journal: Permission denied\n' } });
  const failing = new JournaldSource({ host: fake.host, unit: 'kubelet', sinceMs: 0, backoffMinMs: 10, backoffMaxMs: 100, onLine: () => undefined });
  t.teardown(() => failing.stop());
  failing.start();
  t.equal(await failing.whenCaughtUp(10_000), false);
  t.match(failing.status(), {
    state: 'error',
    failure: { reason: 'SourceUnavailable', message: 'journalctl exited (code 1): Failed to open journal: Permission denied' },
  });
  t.ok(failing.status().restarts >= 2, 'it was retried before being reported');

  // Fixed meanwhile (permissions granted): it recovers by itself.
  fake.config({});
  writeFileSync(join(fake.dir, 'backlog.jsonl'), rec(1, 'back') + '\n');
  await waitFor(() => failing.status().caughtUp, { timeoutMs: 10_000, what: 'recovery' });
  t.notOk(failing.status().failure);
});

t.test('journald: a flood of 10,000 records in one second is read quickly in bounded memory', async (t) => {
  const backlog: string[] = [];
  for (let i = 0; i < 10_000; i++) backlog.push(rec(i, i % 2 ? otherLines[i % otherLines.length]! : unhealthyLines[i % unhealthyLines.length]!, {}));
  const fake = fakeJournalctl(t, backlog.map((l, i) => l.replace(`"__REALTIME_TIMESTAMP":"${T0_US + i * 1000}"`, `"__REALTIME_TIMESTAMP":"${T0_US + i * 100}"`)));
  let n = 0;
  let firstAt = 0;
  let lastAt = 0;
  const src = new JournaldSource({
    host: fake.host,
    unit: 'kubelet',
    sinceMs: 0,
    onLine: () => {
      lastAt = performance.now();
      if (n++ === 0) firstAt = lastAt;
    },
  });
  t.teardown(() => src.stop());
  gc();
  const before = process.memoryUsage().heapUsed;
  src.start();
  t.equal(await src.whenCaughtUp(20_000), true);
  t.equal(n, 10_000);
  const ms = lastAt - firstAt;
  // About 0.3 s on an idle machine; the bound leaves room for a loaded CI runner. Falling behind
  // would not grow memory anyway: the pipe pushes back on journalctl.
  t.ok(ms < 2000, `10,000 records parsed in ${ms.toFixed(0)} ms`);
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  t.ok(grown < 8 * 1024 * 1024, `heap grew ${(grown / 1024).toFixed(0)} KiB`);
});

// ------------------------------------------------------------------------------------------------
// file follower with real timers

async function collectFile(t: Test, path: string, pollMs: number): Promise<{ src: FileSource; got: string[] }> {
  const got: string[] = [];
  const src = new FileSource({ path, clock: systemClock, pollMs, onLine: (l) => got.push(l.text) });
  t.teardown(() => src.stop());
  src.start();
  await src.whenCaughtUp(5000);
  return { src, got };
}

t.test('file: fs.watch delivers appended lines promptly; rotation and truncation by themselves', async (t) => {
  const dir = tmp(t, 'tail');
  const file = join(dir, 'kubelet.log');
  writeFileSync(file, 'old\n');
  // A poll interval of a minute: whatever arrives quickly came through fs.watch.
  const { src, got } = await collectFile(t, file, 60_000);
  appendFileSync(file, 'a\nb\n');
  await waitFor(() => got.length === 2, { timeoutMs: 2000, what: 'lines via fs.watch' });
  renameSync(file, `${file}.1`);
  appendFileSync(`${file}.1`, 'c\n');
  writeFileSync(file, 'd\n');
  await waitFor(() => got.length === 4, { timeoutMs: 2000, what: 'lines after rotation' });
  truncateSync(file, 0);
  await sleep(100);
  appendFileSync(file, 'e\n');
  await waitFor(() => got.length === 5, { timeoutMs: 2000, what: 'lines after truncation' });
  t.same(got, ['a', 'b', 'c', 'd', 'e']);
  t.match(src.status(), { state: 'following', rotations: 1, truncations: 1 });

  await src.stop();
  appendFileSync(file, 'after stop\n');
  await sleep(200);
  t.same(got, ['a', 'b', 'c', 'd', 'e'], 'nothing is read after stop()');
});

t.test('file: polling finds what fs.watch cannot see (a symlink into another directory)', async (t) => {
  const dir = tmp(t, 'tail-poll');
  mkdirSync(join(dir, 'real'));
  mkdirSync(join(dir, 'link'));
  const target = join(dir, 'real', 'kubelet.log');
  writeFileSync(target, '');
  symlinkSync(target, join(dir, 'link', 'kubelet.log'));
  const { got } = await collectFile(t, join(dir, 'link', 'kubelet.log'), 100);
  appendFileSync(target, 'through the poll\n');
  await waitFor(() => got.length === 1, { timeoutMs: 3000, what: 'a line via polling' });
  t.same(got, ['through the poll']);
});

t.test('file: unreadable, then readable', async (t) => {
  const dir = tmp(t, 'tail-perm');
  const file = join(dir, 'kubelet.log');
  writeFileSync(file, '');
  chmodSync(dir, 0o700);
  // root reads anything; a directory in place of the file is what stays unreadable here.
  rmSync(file);
  mkdirSync(file);
  const got: string[] = [];
  const src = new FileSource({ path: file, clock: systemClock, pollMs: 50, onLine: (l) => got.push(l.text) });
  t.teardown(() => src.stop());
  src.start();
  t.equal(await src.whenCaughtUp(2000), false);
  t.match(src.status(), { state: 'error', failure: { reason: 'SourceUnavailable', message: /is not a regular file/ } });
  rmSync(file, { recursive: true });
  writeFileSync(file, 'now a file\n');
  await waitFor(() => got.length === 1, { timeoutMs: 3000, what: 'the file to be read' });
  t.same(got, ['now a file'], 'a file that appears later is read from its start');
  t.notOk(src.status().failure);
});

// ------------------------------------------------------------------------------------------------
// a real journal

const EMITTER = `
// Writes "seq N" lines to stdout at a steady pace, then a non-UTF-8 PLEG line, then a 1 MB line.
const total = Number(process.argv[2]);
const perTick = Number(process.argv[3]);
let i = 0;
const timer = setInterval(() => {
  let out = '';
  for (let k = 0; k < perTick && i < total; k++) out += 'seq ' + i++ + '\\n';
  process.stdout.write(out);
  if (i >= total) {
    clearInterval(timer);
    process.stdout.write(Buffer.concat([Buffer.from('bytes \\xff\\xfe ', 'latin1'), Buffer.from(process.argv[4] + '\\n')]));
    process.stdout.write('M'.repeat(1024 * 1024) + '\\n');
    process.stdout.write('end\\n');
    setInterval(() => {}, 1 << 30);
  }
}, 2);
`;

const FLOODER = `
// 10,000 lines within one second: half PLEG reports, half ordinary kubelet lines.
const lines = require('fs').readFileSync(process.argv[2], 'utf8').split('\\n').filter(Boolean);
let i = 0;
const timer = setInterval(() => {
  let out = '';
  for (let k = 0; k < 100 && i < 10000; k++, i++) out += lines[i % lines.length] + '\\n';
  process.stdout.write(out);
  if (i >= 10000) { clearInterval(timer); process.stdout.write('flood done\\n'); setInterval(() => {}, 1 << 30); }
}, 10);
`;

/** The PID of the journalctl a follower runs: nsenter's child (setpriv execs into journalctl). */
function journalctlPid(nsenterPid: number): number {
  const children = readFileSync(`/proc/${nsenterPid}/task/${nsenterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  if (children.length !== 1) throw new Error(`nsenter ${nsenterPid} has children ${JSON.stringify(children)}`);
  const pid = Number(children[0]);
  const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (comm !== 'journalctl') throw new Error(`child ${pid} of nsenter is ${comm}, not journalctl`);
  return pid;
}

t.test('a real journal', async (t) => {
  if (!(await requireSystemdNs(t))) return;
  const dir = tmp(t, 'journal');
  writeFileSync(join(dir, 'emitter.cjs'), EMITTER);
  writeFileSync(join(dir, 'flooder.cjs'), FLOODER);
  const floodLines: string[] = [];
  for (let i = 0; i < 100; i++) floodLines.push(i % 2 ? otherLines[i % otherLines.length]! : unhealthyLines[i % unhealthyLines.length]!);
  writeFileSync(join(dir, 'flood.txt'), floodLines.join('\n') + '\n');
  const TOTAL = 3000;
  const node = process.execPath;
  const ns = await startSystemdNs({
    t,
    name: 'log-source',
    start: [],
    units: {
      'kubelet.service': `[Service]\nExecStart=${node} ${join(dir, 'emitter.cjs')} ${TOTAL} 6 "${unhealthyLines[0]!.replace(/[\\"%$]/g, '')}"\n`,
      'flood.service': `[Service]\nExecStart=${node} ${join(dir, 'flooder.cjs')} ${join(dir, 'flood.txt')}\n`,
    },
  });
  const host = new RealHost({ commandPrefix: ns.prefix });

  await t.test('journalctl killed twice mid-stream: every line exactly once, in order', async (t) => {
    const got: LogLine[] = [];
    const src = new JournaldSource({ host, unit: 'kubelet', sinceMs: Date.now() - 60_000, backoffMinMs: 200, onLine: (l) => got.push(l) });
    t.teardown(() => src.stop());
    src.start();
    t.equal(await src.whenCaughtUp(10_000), true, 'the (empty) backlog is read');
    t.equal((await ns.systemctl('start', 'kubelet')).exitCode, 0);
    const seqCount = (): number => got.filter((l) => l.text.startsWith('seq ')).length;
    for (const at of [TOTAL / 5, TOTAL / 2]) {
      await waitFor(() => seqCount() >= at, { timeoutMs: 20_000, what: `${at} lines` });
      const restarts = src.status().restarts;
      process.kill(journalctlPid(src.status().pid!), 'SIGKILL');
      await waitFor(() => src.status().restarts > restarts && src.status().state === 'following', { timeoutMs: 10_000, what: 'a restart' });
    }
    await waitFor(() => got.some((l) => l.text === 'end'), { timeoutMs: 30_000, what: 'the last line' });
    const seqs = got.filter((l) => l.text.startsWith('seq ')).map((l) => Number(l.text.slice(4)));
    t.equal(seqs.length, TOTAL, 'no line lost, none twice');
    t.ok(seqs.every((n, i) => n === i), 'in order');
    t.match(src.status(), { restarts: 2, invalidRecords: 0, truncatedLines: 0 });
    t.ok(got.some((l) => l.unitStarted && l.text === 'Started kubelet.service.'), "systemd's start record is marked");

    const bytes = got.find((l) => l.text.startsWith('bytes '));
    t.ok(bytes, 'the non-UTF-8 line arrived');
    t.equal(bytes!.text, `bytes \ufffd\ufffd ${unhealthyLines[0]!.replace(/[\\"%$]/g, '')}`, 'journald stored bytes, journalctl printed an array, we decoded it lossily');
    const big = got.filter((l) => /^M+$/.test(l.text));
    t.equal(big.reduce((n, l) => n + l.text.length, 0), 1024 * 1024, 'the 1 MB line arrived whole, in journald-sized records');
    t.ok(big.length > 1, `journald split it into ${big.length} records`);
    const times = got.map((l) => l.timeMs);
    t.ok(times.every((x, i) => i === 0 || x >= times[i - 1]!), 'record times, in order');
    t.ok(Math.abs(times.at(-1)! - Date.now()) < 30_000, 'and they are real times');
  });

  await t.test('the pleg check through the real journal: a flood of 10,000 lines in a second, bounded memory', async (t) => {
    const check = new PlegMonitor({ ...plegCheck.defaults, source: 'journald', unit: 'flood', window: '5m', minOccurrences: 3 }, { host });
    t.teardown(() => check.stop());
    await check.start();
    let r = await check.run(signal);
    t.match(r, { status: 'ok', reason: 'PLEGHealthy' }, 'the unit exists and has logged nothing yet');
    gc();
    const before = process.memoryUsage().heapUsed;
    const started = Date.now();
    t.equal((await ns.systemctl('start', 'flood')).exitCode, 0);
    await waitFor(async () => ((await ns.journalctl('-u', 'flood', '-o', 'cat', '-n', '1')).stdout.includes('flood done') ? true : undefined), {
      timeoutMs: 20_000,
      intervalMs: 100,
      what: 'the flood to be written',
    });
    t.ok(Date.now() - started < 5000, `written in ${Date.now() - started} ms`);
    await waitFor(() => (check.sourceStatus()?.lines ?? 0) >= 10_001, { timeoutMs: 20_000, what: 'the flood to be read' });
    t.ok(Date.now() - started < 8000, `read ${check.sourceStatus()!.lines} lines within ${Date.now() - started} ms`);
    r = await check.run(signal);
    t.equal(r.status, 'problem');
    const ev = r.evidence as any;
    t.equal(ev.counts['pleg-unhealthy'], MAX_TIMES_PER_LABEL, '5,000 reports, capped');
    t.equal(ev.countsCapped, true);
    t.equal(ev.counts['pleg-benign'], 0);
    t.match(ev.source, { kind: 'journald', unit: 'flood', state: 'following', caughtUp: true, invalidRecords: 0, restarts: 0 });
    t.ok(['systemd', 'journal'].includes(ev.kubeletStartedFrom), `the unit's start is known (${ev.kubeletStartedFrom})`);
    t.ok(Math.abs(Date.parse(ev.kubeletStartedAt) - started) < 5000);
    const mem = check.memoryStats();
    t.ok(mem.timesKept <= mem.timesCapacity);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    t.ok(grown < 8 * 1024 * 1024, `heap grew ${(grown / 1024).toFixed(0)} KiB over 10,000 records`);

    // A restart of the unit ends the episode at once: the old reports are dropped.
    t.equal((await ns.systemctl('stop', 'flood')).exitCode, 0);
    await ns.addUnit('flood.service.d/quiet.conf', `[Service]\nExecStart=\nExecStart=/bin/sleep infinity\n`);
    t.equal((await ns.systemctl('start', 'flood')).exitCode, 0);
    r = await waitFor(
      async () => {
        const f = await check.run(signal);
        return f.status === 'ok' ? f : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 200, what: 'ok after the restart' },
    );
    t.match(r, { reason: 'PLEGHealthy', evidence: { unhealthy: 0, counts: { 'pleg-unhealthy': 0 } } });
  });

  await t.test('an unknown unit, and no systemctl on the node, are NotInstalled', async (t) => {
    const none = new PlegMonitor({ ...plegCheck.defaults, unit: 'no-such-kubelet' }, { host });
    t.teardown(() => none.stop());
    t.match(await none.run(signal), { status: 'unknown', reason: 'NotInstalled', message: /no-such-kubelet is not installed/ });
    const bare = new PlegMonitor({ ...plegCheck.defaults }, { host: new RealHost({ commandPrefix: [...ns.prefix, 'env', 'PATH=/nonexistent'] }) });
    t.teardown(() => bare.stop());
    t.match(await bare.run(signal), { status: 'unknown', reason: 'NotInstalled', message: /could not run/ });
  });

});
