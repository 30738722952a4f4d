import t from 'tap';
import { pino } from 'pino';
import { systemClock } from '../platform/clock.js';
import { Sweeper, type ActiveCheck } from '../agent/sweep.js';
import type { CheckResult, Finding } from '../checks/types.js';

const logger = pino({ level: 'silent' });
const ok: Finding = { status: 'ok', reason: 'Fine', message: 'fine' };

function check(id: string, run: (signal: AbortSignal) => Promise<Finding>, timeoutMs = 200): ActiveCheck {
  return { id, timeoutMs, check: { id, run } };
}

t.test('a hanging check is unknown on time and never delays the others', async (t) => {
  let hung = 0;
  let aborted = false;
  const hanging = check('hangs', (signal) => {
    hung++;
    signal.addEventListener('abort', () => (aborted = true));
    return new Promise<Finding>(() => {});
  });
  const fast = check('fast', async () => ok);
  const seen: { id: string; at: number }[] = [];
  const t0 = performance.now();
  const sweeper = new Sweeper(systemClock, logger);
  const results = await sweeper.sweep([hanging, fast], (r) => seen.push({ id: r.check, at: performance.now() - t0 }));
  const elapsed = performance.now() - t0;
  t.ok(elapsed >= 190 && elapsed < 1000, `sweep bounded by the timeout (${elapsed.toFixed(0)} ms)`);
  t.equal(seen[0]!.id, 'fast', 'the fast result is published first');
  t.ok(seen[0]!.at < 100, `fast result published at ${seen[0]!.at.toFixed(0)} ms, not after the hung one`);
  const byId = Object.fromEntries(results.map((r) => [r.check, r])) as Record<string, CheckResult>;
  t.equal(byId.hangs!.status, 'unknown');
  t.equal(byId.hangs!.reason, 'CheckTimeout');
  t.ok(aborted, 'the check was told to abort');
  t.equal(byId.fast!.status, 'ok');

  const again = await sweeper.sweep([hanging]);
  t.equal(again[0]!.reason, 'CheckStillRunning', 'a stuck run is not stacked');
  t.equal(hung, 1, 'run() called once');
});

t.test('a check that throws is unknown with the error, and results are stamped', async (t) => {
  const sweeper = new Sweeper({ now: () => Date.parse('2026-11-27T10:00:00Z') }, logger);
  const [r] = await sweeper.sweep([check('boom', async () => { throw new Error('kaput'); })]);
  t.match(r, { check: 'boom', status: 'unknown', reason: 'CheckFailed', message: 'boom failed: kaput', observedAt: '2026-11-27T10:00:00.000Z', evidence: {} });
  t.type(r!.durationSeconds, 'number');
  const [sync] = await sweeper.sweep([check('sync', (() => { throw new TypeError('sync throw'); }) as never)]);
  t.equal(sync!.reason, 'CheckFailed', 'a synchronous throw is caught too');
});
