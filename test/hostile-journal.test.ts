/**
 * Issue 14 item 5 and issue 12's "no systemd" items: a misbehaving journalctl, and a node without
 * systemd. journalctl is a real process (a small script reached through the real host command prefix,
 * as nsenter would be on a node), because a real journal will not misbehave on demand. Each case says
 * what the adversarial run saw before the fix.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { RealHost } from '../platform/host.js';
import { JournaldSource, UNREADABLE_AFTER_LINES } from '../checks/log-source.js';
import { PlegMonitor } from '../checks/pleg.js';
import { kubeletFinding, noSystemdHere } from '../checks/kubelet.js';

// The script: `journalctl --version`, `journalctl -b -n 0` (the presence probe) and the backlog /
// follow reads behave as config.json says. `systemctl` answers as on a machine without systemd.
const FAKE = `
import { appendFileSync, readFileSync } from 'node:fs';
const [dir, ...argv] = process.argv.slice(2);
appendFileSync(dir + '/calls', JSON.stringify(argv) + '\\n');
const cfg = JSON.parse(readFileSync(dir + '/config.json', 'utf8'));
if (argv[0] === 'setpriv') { argv.splice(0, 3); if (argv[0] === 'true') process.exit(0); }
if (argv[0] === 'timeout') { while (argv[0] !== 'systemctl') argv.shift(); }
if (argv[0] === 'systemctl') {
  process.stderr.write('System has not been booted with systemd as init system (PID 1). Can\\'t operate.\\nFailed to connect to bus: Host is down\\n');
  process.exit(1);
}
if (argv.includes('--version')) { console.log('systemd 252 (252.38-1~deb12u1)'); process.exit(0); }
if (!argv.includes('-u')) {
  if (cfg.noJournal) { process.stderr.write('No journal files were found.\\n'); console.log('-- No entries --'); }
  process.exit(0);
}
if (cfg.noJournal) process.exit(0); // exactly what journalctl -u X -o json does without a journal
const follow = argv.includes('-f');
const runs = (() => { try { return readFileSync(dir + '/calls', 'utf8').split('\\n').filter((l) => l.includes('"-u"')).length; } catch { return 1; } })();
if (!follow && cfg.hangBacklogRuns && runs <= cfg.hangBacklogRuns) setInterval(() => {}, 1 << 30);
else {
  let lines = cfg.backlog;
  if (follow) lines = lines.concat(cfg.follow ?? []);
  const after = argv.find((a) => a.startsWith('--after-cursor='))?.slice('--after-cursor='.length);
  // A journalctl that ignores --after-cursor replays everything (cfg.replay).
  if (after && !cfg.replay) {
    const i = lines.findIndex((l) => l.includes('"__CURSOR":"' + after + '"'));
    lines = i === -1 ? [] : lines.slice(i + 1);
  }
  process.stdout.write(lines.map((l) => l + '\\n').join(''), () => {
    if (!follow || cfg.followExits) process.exit(0);
    setInterval(() => {}, 1 << 30);
  });
}
`;

function fake(t: Test, cfg: Record<string, unknown>): { host: RealHost; calls(): string[][] } {
  const dir = mkdtempSync(join(tmpdir(), 'nm-hostile-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'fake.mjs'), FAKE);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ backlog: [], ...cfg }));
  return {
    host: new RealHost({ commandPrefix: ['env', '-u', 'NODE_OPTIONS', process.execPath, join(dir, 'fake.mjs'), dir] }),
    calls: () =>
      readFileSync(join(dir, 'calls'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as string[]),
  };
}

const T0_US = Date.now() * 1000;
function rec(i: number, message: string): string {
  const hex = i.toString(16);
  return JSON.stringify({
    __CURSOR: `s=a309a852a9b847c090f0f2aa549ad47a;i=${hex};b=b17929689a5741c8bc210b8da9b09ed6;m=${hex};t=${hex};x=${hex}`,
    __REALTIME_TIMESTAMP: String(T0_US + i * 1000),
    __MONOTONIC_TIMESTAMP: String(1_000_000 + i * 1000),
    _PID: '4242',
    MESSAGE: message,
  });
}
const PLEG = 'E1127 10:00:00.000000    4242 kubelet.go:2130] "Skipping pod synchronization" err="PLEG is not healthy: pleg was last seen active 3m25.1s ago; threshold is 3m0s"';

async function waitFor(pred: () => boolean, what: string, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('a journalctl that prints only non-JSON: SourceUnreadable, never PLEGHealthy', async (t) => {
  // Before: invalid lines were counted and skipped, the backlog "caught up", and pleg said ok.
  const f = fake(t, { backlog: ['Hint: You are currently not seeing messages from other users', 'kubelet[1]: PLEG is not healthy', 'third line'] });
  const mon = new PlegMonitor(
    { enabled: true, source: 'journald', unit: 'kubelet', file: '', window: '5m', minOccurrences: 3, startupGrace: '5m' },
    { host: f.host },
  );
  t.teardown(() => mon.stop());
  const r = await mon.run(new AbortController().signal);
  t.equal(r.status, 'unknown', r.message);
  t.equal(r.reason, 'SourceUnreadable');
  t.match(r.message, /3 line\(s\) and none was a journal record .*; first: "Hint: You are/);
});

t.test('fewer non-JSON lines than the limit, and nothing else: still SourceUnreadable at the end of the backlog', async (t) => {
  const f = fake(t, { backlog: ['{"not":"a record"}'] });
  const src = new JournaldSource({ host: f.host, unit: 'kubelet', sinceMs: 0, onLine: () => undefined });
  t.teardown(() => src.stop());
  src.start();
  t.equal(await src.whenCaughtUp(20_000), false, 'a failed source is not caught up');
  t.match(src.status().failure, { reason: 'SourceUnreadable', message: /1 line\(s\) and none was a journal record/ });
});

t.test('valid records then a format change: unreadable after a few lines, cleared by the next record', async (t) => {
  const garbage = Array.from({ length: UNREADABLE_AFTER_LINES }, (_, i) => `garbage ${i}`);
  const f = fake(t, { backlog: [rec(1, 'a'), ...garbage, rec(2, 'b')] });
  const seen: string[] = [];
  let failedInBetween = false;
  const src = new JournaldSource({
    host: f.host,
    unit: 'kubelet',
    sinceMs: 0,
    onLine: (l) => {
      if (l.text === 'b') failedInBetween = src.status().failure?.reason === 'SourceUnreadable';
      seen.push(l.text);
    },
  });
  t.teardown(() => src.stop());
  src.start();
  await waitFor(() => src.status().caughtUp, 'caught up');
  t.same(seen, ['a', 'b']);
  t.ok(failedInBetween);
  t.notOk(src.status().failure, 'a record after the garbage clears it');
  t.equal(src.status().invalidRecords, UNREADABLE_AFTER_LINES);
});

t.test('a backlog journalctl that hangs without output is killed and restarted, and reported (not SourceCatchingUp forever)', async (t) => {
  // Before: the backlog read waited forever; every run answered SourceCatchingUp.
  const f = fake(t, { backlog: [rec(1, 'late but fine')], hangBacklogRuns: 1 });
  const lines: string[] = [];
  const src = new JournaldSource({ host: f.host, unit: 'kubelet', sinceMs: 0, backlogIdleMs: 5000, backoffMinMs: 50, onLine: (l) => lines.push(l.text) });
  t.teardown(() => src.stop());
  src.start();
  await waitFor(() => src.status().failure !== undefined || src.status().caughtUp, 'the stuck read to be noticed');
  t.match(src.status().failure, { reason: 'SourceUnavailable', message: /printed nothing for 5000 ms while reading the backlog/ });
  // The second run answers: caught up, failure gone, the record delivered once.
  await waitFor(() => src.status().caughtUp, 'the restarted read to finish').catch((e) => {
    t.comment(JSON.stringify(src.status()), JSON.stringify(f.calls()));
    throw e;
  });
  t.same(lines, ['late but fine']);
  t.notOk(src.status().failure);
  t.equal(src.status().restarts, 1);
});

t.test('a cursor replayed after a restart never counts a record twice', async (t) => {
  // Before: a journalctl that printed from the start again after a restart made every PLEG line count twice.
  const backlog = [rec(1, PLEG), rec(2, PLEG)];
  const follow = [rec(3, PLEG)];
  const f = fake(t, { backlog, follow, followExits: true, replay: true });
  const got: string[] = [];
  const src = new JournaldSource({ host: f.host, unit: 'kubelet', sinceMs: 0, backoffMinMs: 20, backoffMaxMs: 40, onLine: (l) => got.push(l.text) });
  t.teardown(() => src.stop());
  src.start();
  // The follower exits after each print; several restarts, each replaying all three records.
  await waitFor(() => src.status().restarts >= 3, 'three restarts');
  t.equal(got.length, 3, `each record once (got ${got.length})`);
  t.ok(src.replayedRecords >= 6, `replays skipped: ${src.replayedRecords}`);
  const calls = f.calls().filter((c) => c.includes('-f'));
  t.ok(calls.slice(1).every((c) => c.some((a) => a.startsWith('--after-cursor='))), 'it did ask to resume after its cursor');
});

t.test('no journal on the node (no systemd as PID 1): pleg is unknown SourceUnavailable, never healthy; kubelet NotInstalled', async (t) => {
  // Before: `journalctl -u kubelet -o json` printed nothing and exited 0 here, so pleg said PLEGHealthy;
  // systemctl's "not booted with systemd" made kubelet SystemctlFailed.
  const f = fake(t, { noJournal: true });
  const mon = new PlegMonitor(
    { enabled: true, source: 'journald', unit: 'kubelet', file: '', window: '5m', minOccurrences: 3, startupGrace: '5m' },
    { host: f.host },
  );
  t.teardown(() => mon.stop());
  const r = await mon.run(new AbortController().signal);
  t.equal(r.status, 'unknown', r.message);
  t.equal(r.reason, 'SourceUnavailable');
  t.match(r.message, /there is no journal on this node/);
  t.match(r.evidence, { systemd: 'absent (not PID 1)' });

  const q = {
    ok: false as const,
    reason: 'SystemctlFailed' as const,
    message: 'systemctl show kubelet failed: System has not been booted with systemd as init system (PID 1). Can\'t operate.',
  };
  t.ok(noSystemdHere(q));
  const k = kubeletFinding(q, { kind: 'error', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED', latencyMs: 1 }, { unit: 'kubelet', healthzUrl: 'http://127.0.0.1:10248/healthz', timeoutMs: 1000 });
  t.match(k, { status: 'unknown', reason: 'NotInstalled' });
  // A systemd that is there but failing stays SystemctlFailed.
  t.notOk(noSystemdHere({ ok: false, reason: 'SystemctlFailed', message: 'systemctl show kubelet failed: Failed to get properties: Connection timed out' }));
  t.notOk(noSystemdHere({ ok: false, reason: 'CommandTimeout', message: 'systemctl show kubelet did not answer within 5s' }));
});
