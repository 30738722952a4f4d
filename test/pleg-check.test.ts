/**
 * The pleg check's window, threshold, hysteresis, start-up grace and restart logic, driven by a
 * ManualClock and fed through the real file follower: the test appends to, rotates and truncates a
 * real temporary file. The journal path, against a real journald, is in log-source.test.ts.
 */
import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t, { type Test } from 'tap';
import { ManualClock } from '../platform/clock.js';
import { resolveConfig } from '../agent/config.js';
import { RealHost } from '../platform/host.js';
import { MAX_QUOTED_CHARS, MAX_TIMES_PER_LABEL, PlegMonitor, plegCheck, type PlegOptions } from '../checks/pleg.js';
import type { Finding } from '../checks/types.js';

const corpus = fileURLToPath(new URL('./fixtures/corpus/kubelet/', import.meta.url));
const rows = readFileSync(corpus + 'kubelet-pleg.tsv', 'utf8')
  .split('\n')
  .slice(1)
  .filter(Boolean)
  .map((r) => ({ label: r.slice(0, r.indexOf('\t')), line: r.slice(r.indexOf('\t') + 1) }));
const others = readFileSync(corpus + 'kubelet-other.tsv', 'utf8')
  .split('\n')
  .slice(1)
  .filter(Boolean)
  .map((r) => r.slice(r.indexOf('\t') + 1));
const byLabel = (label: string): string[] => rows.filter((r) => r.label === label).map((r) => r.line);
const unhealthy = byLabel('pleg-unhealthy');
const k3s = unhealthy.filter((l) => l.includes(' k3s[1636]: ')); // one kubelet (klog PID 1636)
if (k3s.length !== 4) throw new Error(`expected 4 k3s pleg-unhealthy lines in the corpus, found ${k3s.length}`);
const relist = byLabel('pleg-relist-error').filter((l) => l.includes(' k3s[1636]: ')); // the same kubelet
const benign = byLabel('pleg-benign');
const notReady = byLabel('node-notready-pleg');
/** `pleg was last seen active 2562047h...`: kubelet 32911 never relisted. */
const sentinel = byLabel('pleg-startup').find((l) => l.includes('2562047h'))!;

const MIN = 60_000;
setFlagsFromString('--expose-gc');
/** A full collection, so that heap deltas measure what is retained. */
const gc = runInNewContext('gc') as () => void;
const signal = new AbortController().signal;

interface Fixture {
  clock: ManualClock;
  file: string;
  dir: string;
  check: PlegMonitor;
  /** Appends and lets the follower read them now, at the clock's current time. */
  append(...lines: string[]): Promise<void>;
  run(): Promise<Finding>;
}

async function fixture(t: Test, opts: Partial<PlegOptions> = {}, create = true): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-pleg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'kubelet.log');
  if (create) writeFileSync(file, 'old line written before the agent started\n' + unhealthy.join('\n') + '\n');
  const clock = new ManualClock();
  // No such unit: these tests are about the log; systemctl's answer (if any) must not matter.
  const options: PlegOptions = { ...plegCheck.defaults, source: 'file', file, unit: 'nodemedic-test-no-such-unit.service', ...opts };
  const check = new PlegMonitor(options, { host: new RealHost({ clock }) });
  t.teardown(() => check.stop());
  await check.start();
  return {
    clock,
    file,
    dir,
    check,
    append: async (...lines) => {
      appendFileSync(file, lines.map((l) => `${l}\n`).join(''));
      await check.readAvailable();
    },
    run: () => check.run(signal),
  };
}

t.test('threshold, window and the way back to ok', async (t) => {
  const f = await fixture(t);
  let r = await f.run();
  t.match(r, { status: 'ok', reason: 'PLEGHealthy' }, 'lines present before the start are not read');
  t.equal((r.evidence as { unhealthy: number }).unhealthy, 0);

  await f.append(k3s[0]!);
  f.clock.advance(MIN);
  await f.append(k3s[1]!);
  r = await f.run();
  t.match(r, { status: 'ok', reason: 'PLEGHealthy' }, 'two reports are below minOccurrences 3');
  t.match(r.message, /2 times, below the threshold of 3/);

  f.clock.advance(MIN);
  await f.append(k3s[2]!);
  r = await f.run();
  t.equal(r.status, 'problem');
  t.equal(r.reason, 'PLEGUnhealthy');
  t.equal(
    r.message,
    'kubelet reported PLEG is not healthy 3 times in the last 5m (last: pleg was last seen active 4m38s ago)',
  );
  const ev = r.evidence as Record<string, any>;
  t.match(ev, {
    window: '5m',
    minOccurrences: 3,
    unhealthy: 3,
    counts: { 'pleg-unhealthy': 3, 'node-notready-pleg': 0, 'pleg-startup': 0, 'pleg-relist-error': 0, 'pleg-benign': 0 },
    countsCapped: false,
    first: { label: 'pleg-unhealthy', line: k3s[0], lastSeenActive: '4m51.763621609s', threshold: '3m0s' },
    last: { label: 'pleg-unhealthy', line: k3s[2], lastSeenActive: '4m38.209858468s' },
    source: { kind: 'file', path: f.file, state: 'following', caughtUp: true, lines: 3 },
    kubeletStartedAt: null,
  });
  t.equal(ev.first.time, new Date(Date.parse('2026-11-27T10:00:00Z')).toISOString(), 'the file source stamps lines when read');

  // Just over 4m after the third report the first two have left the window: still a problem (hysteresis).
  f.clock.advance(4 * MIN + 1);
  r = await f.run();
  t.match(r, { status: 'problem', evidence: { unhealthy: 1 } });
  t.match(r.message, /1 time in the last 5m .*still a problem until 5m pass without one/);

  // A full window without a report: ok again, and the episode is over.
  f.clock.advance(MIN);
  r = await f.run();
  t.match(r, { status: 'ok', reason: 'PLEGHealthy', evidence: { unhealthy: 0 } });
  t.notOk((r.evidence as Record<string, unknown>).first);

  // A new episode starts from scratch.
  await f.append(k3s[3]!);
  r = await f.run();
  t.match(r, { status: 'ok', evidence: { unhealthy: 1 } }, 'one report after recovery is not a problem');
});

t.test('relist errors are a runtime hint, not a problem; NotReady lines count', async (t) => {
  const f = await fixture(t, { minOccurrences: 2 });
  await f.append(relist[0]!, relist[0]!, relist[0]!);
  let r = await f.run();
  t.match(r, { status: 'ok', reason: 'PLEGRelistErrors', evidence: { unhealthy: 0, counts: { 'pleg-relist-error': 3 } } });
  t.match(r.message, /GenericPLEG failed to list pods 3 times: the container runtime is not answering/);
  t.match(r.evidence, { lastRelistError: { label: 'pleg-relist-error', line: relist[0] }, runtimeHint: /container runtime/ });

  await f.append(k3s[0]!, k3s[1]!);
  r = await f.run();
  t.match(r, { status: 'problem', reason: 'PLEGUnhealthy', evidence: { unhealthy: 2, counts: { 'pleg-relist-error': 3 } } });
  t.match(r.message, /2 times in the last 5m .*GenericPLEG failed to list pods 3 times/);

  const g = await fixture(t, { minOccurrences: 2 });
  await g.append(notReady[0]!, notReady[0]!);
  r = await g.run();
  t.match(r, { status: 'problem', evidence: { unhealthy: 2, counts: { 'node-notready-pleg': 2, 'pleg-unhealthy': 0 } } });
  t.match(r.evidence, { first: { label: 'node-notready-pleg', lastSeenActive: '3m7.629592089s' } });
  t.match(r.message, /last: pleg was last seen active 3m8s ago/);
});

t.test('ordinary kubelet chatter and benign PLEG lines never count', async (t) => {
  const f = await fixture(t, { minOccurrences: 1 });
  for (let i = 0; i < 20; i++) await f.append(...others, ...benign);
  const r = await f.run();
  t.match(r, { status: 'ok', reason: 'PLEGHealthy', evidence: { unhealthy: 0, counts: { 'pleg-benign': 60 } } });
  t.equal((r.evidence as any).source.lines, 20 * (others.length + benign.length));
});

t.test('start-up reports count only after the grace period', async (t) => {
  const f = await fixture(t, { minOccurrences: 2, startupGrace: '2m' });
  // kubelet 32911 starts (a new PID on PLEG lines is a restart) and says it never relisted.
  await f.append(sentinel, sentinel);
  let r = await f.run();
  t.match(r, { status: 'ok', evidence: { unhealthy: 0, startupInGrace: 2, counts: { 'pleg-startup': 2 } } });
  t.match(r.message, /2 start-up report\(s\) within the 2m grace/);

  // Still saying "never relisted" 3 minutes after we began to watch: that is a PLEG problem.
  f.clock.advance(3 * MIN);
  await f.append(sentinel);
  r = await f.run();
  t.match(r, { status: 'ok', evidence: { unhealthy: 1 } });
  f.clock.advance(10_000);
  await f.append(sentinel);
  r = await f.run();
  t.match(r, { status: 'problem', reason: 'PLEGUnhealthy', evidence: { unhealthy: 2, startupInGrace: 2 } });
  t.match(r.message, /2 times in the last 5m \(last: pleg has never relisted\)/);
});

t.test('a kubelet restart ends the episode at once and drops the old reports', async (t) => {
  const f = await fixture(t);
  await f.append(...k3s.slice(0, 4));
  let r = await f.run();
  t.match(r, { status: 'problem', evidence: { unhealthy: 4, kubeletStartedAt: null } });

  f.clock.advance(30_000);
  const restartAt = f.clock.now();
  // The new kubelet (another PID) logs its start-up PLEG state.
  await f.append(sentinel);
  r = await f.run();
  t.match(r, {
    status: 'ok',
    reason: 'PLEGHealthy',
    evidence: { unhealthy: 0, startupInGrace: 1, kubeletStartedAt: new Date(restartAt).toISOString(), kubeletStartedFrom: 'log-pid' },
  });
  t.equal((r.evidence as any).counts['pleg-unhealthy'], 0, 'reports from before the restart are gone');

  // The old reports do not come back when the window is evaluated again.
  f.clock.advance(1000);
  r = await f.run();
  t.match(r, { status: 'ok', evidence: { unhealthy: 0 } });
});

t.test('follows across rotation (rename + new file) and copytruncate, without loss or double counting', async (t) => {
  const f = await fixture(t, { minOccurrences: 100, window: '1h' });
  await f.append(k3s[0]!);
  let r = await f.run();
  t.match(r, { evidence: { unhealthy: 1 } });

  // logrotate without copytruncate: the writer still appends to the renamed file until told.
  renameSync(f.file, f.file + '.1');
  appendFileSync(f.file + '.1', `${k3s[1]}\n`);
  r = await f.run();
  t.match(r, { evidence: { unhealthy: 2, source: { state: 'waiting' } } }, 'the renamed file is still followed');
  t.equal(r.status, 'ok', 'a moment between rename and create is not a failure');
  // An unfinished line at rotation is delivered when the file is left behind.
  appendFileSync(f.file + '.1', k3s[2]!);
  writeFileSync(f.file, `${k3s[3]}\n${k3s[0]}\n`);
  r = await f.run();
  t.match(r, { evidence: { unhealthy: 5, source: { rotations: 1, state: 'following' } } });

  // copytruncate: the file shrinks, then the writer goes on.
  truncateSync(f.file, 0);
  r = await f.run();
  t.match(r, { evidence: { unhealthy: 5, source: { truncations: 1 } } });
  await f.append(k3s[0]!, benign[0]!);
  r = await f.run();
  t.match(r, { evidence: { unhealthy: 6, counts: { 'pleg-benign': 1 }, source: { truncations: 1, rotations: 1 } } });

  // Truncated and already longer again before we looked: seen as a shrink only if it shrank below
  // our position; here it did (position was past two long lines).
  truncateSync(f.file, 0);
  await f.append(k3s[1]!);
  r = await f.run();
  t.match(r, { evidence: { unhealthy: 7, source: { truncations: 2 } } });
});

t.test('a missing file, a directory, and a file appearing later', async (t) => {
  const f = await fixture(t, {}, false);
  let r = await f.run();
  t.match(r, { status: 'unknown', reason: 'SourceUnavailable' });
  t.match(r.message, /does not exist/);
  t.match(r.evidence, { source: { state: 'waiting' } });

  // Created later: read from its beginning (everything in it is new).
  writeFileSync(f.file, `${k3s[0]}\n${k3s[1]}\n${k3s[2]}\n`);
  r = await f.run();
  t.match(r, { status: 'problem', evidence: { unhealthy: 3 } });

  const d = join(f.dir, 'adir');
  mkdirSync(d);
  const g = new PlegMonitor({ ...plegCheck.defaults, source: 'file', file: d, unit: 'nodemedic-test-no-such-unit.service' }, { host: new RealHost({ clock: f.clock }) });
  t.teardown(() => g.stop());
  r = await g.run(signal);
  t.match(r, { status: 'unknown', reason: 'SourceUnavailable', message: /not a regular file/ });
});

t.test('invalid options are reported, never a silent ok', async (t) => {
  const host = new RealHost({ clock: new ManualClock() });
  const bad = new PlegMonitor({ ...plegCheck.defaults, source: 'file', file: '' }, { host });
  t.match(await bad.run(signal), { status: 'unknown', reason: 'InvalidConfig', message: /checks\.pleg\.file must be an absolute path/ });
  t.throws(() => resolveConfig({ checks: { pleg: { source: 'file' } } }), /checks\.pleg\.file: must be an absolute path/);
  t.throws(() => resolveConfig({ checks: { pleg: { source: 'file', file: 'relative.log' } } }), /checks\.pleg\.file/);
  t.doesNotThrow(() => resolveConfig({ checks: { pleg: { source: 'file', file: '/var/log/messages' } } }));
  t.doesNotThrow(() => resolveConfig({ checks: { pleg: { source: 'journald' } } }));
  t.throws(() => resolveConfig({ checks: { pleg: { window: '5' } } }), /checks\.pleg\.window/);
});

t.test('a flood of 10,000 lines in a second and a 1 MB line: bounded memory, correct counts', async (t) => {
  const f = await fixture(t, { window: '10m' });
  const batch: string[] = [];
  for (let i = 0; i < 10_000; i++) batch.push(i % 2 ? others[i % others.length]! : k3s[i % k3s.length]!);
  gc();
  const before = process.memoryUsage().heapUsed;
  // 10,000 lines (half unhealthy, the rest chatter) written within one second of the clock.
  let readMs = 0;
  for (let i = 0; i < 10; i++) {
    appendFileSync(f.file, batch.slice(i * 1000, (i + 1) * 1000).join('\n') + '\n');
    const started = performance.now();
    await f.check.readAvailable();
    readMs += performance.now() - started;
    f.clock.advance(100);
  }
  // About 0.25 s on an idle machine; the bound leaves room for a loaded CI runner.
  t.ok(readMs < 2000, `10,000 lines read and classified in ${readMs.toFixed(0)} ms`);
  const r = await f.run();
  t.match(r, { status: 'problem', evidence: { countsCapped: true, source: { lines: 10_000 } } });
  const ev = r.evidence as any;
  t.equal(ev.counts['pleg-unhealthy'], MAX_TIMES_PER_LABEL, 'the count saturates at the cap');
  t.equal(ev.unhealthy, MAX_TIMES_PER_LABEL);
  t.match(r.message, new RegExp(`^kubelet reported PLEG is not healthy at least ${MAX_TIMES_PER_LABEL} times in the last 10m`));
  const mem = f.check.memoryStats();
  t.equal(mem.timesKept, MAX_TIMES_PER_LABEL, 'only the capped ring of unhealthy timestamps is kept');
  t.ok(mem.quotedChars <= 3 * MAX_QUOTED_CHARS);
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  t.ok(grown < 4 * 1024 * 1024, `heap grew ${(grown / 1024).toFixed(0)} KiB over the flood`);

  // A line of 1 MB with PLEG text only at its end (cut off), then a report followed by 1 MB of junk.
  appendFileSync(f.file, 'x'.repeat(1024 * 1024) + ' PLEG is not healthy: pleg was last seen active 9m0s ago; threshold is 3m0s\n');
  appendFileSync(f.file, 'I0101 00:00:00.000000 1636 kubelet.go:1] PLEG is not healthy: pleg was last seen active 9m9s ago; threshold is 3m0s ' + 'y'.repeat(1024 * 1024) + '\n');
  await f.check.readAvailable();
  t.equal(f.check.sourceBufferedBytes(), 0, 'nothing is held once lines end');
  const r2 = await f.run();
  t.match(r2.evidence, { source: { truncatedLines: 2, lines: 10_002 } });
  t.equal((r2.evidence as any).last.lastSeenActive, '9m9s', 'a PLEG report at the start of a huge line is still seen');
  t.equal((r2.evidence as any).last.line.length, MAX_QUOTED_CHARS, 'quoted lines are capped');

  // An unfinished huge line (no newline yet) is held only up to the line limit.
  appendFileSync(f.file, 'z'.repeat(3 * 1024 * 1024));
  await f.check.readAvailable();
  t.equal(f.check.sourceBufferedBytes(), 64 * 1024, 'an unfinished line is held up to 64 KiB, not 3 MiB');
});
