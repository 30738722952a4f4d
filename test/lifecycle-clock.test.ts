/**
 * A wall clock stepped back an hour, then forward two (an injected clock: real time passes, the
 * wall clock jumps), under a whole agent with a PLEG file follower and the systemd watchdog:
 * no stale PLEG problem after the step back, no report aged out early by the step forward, no
 * /healthz failure and no withheld WATCHDOG=1 at either step; each step is logged.
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { Agent } from '../agent/agent.js';
import { resolveConfig } from '../agent/config.js';
import { superviseWithSystemd, type NotifyOutcome, type ServiceNotifier } from '../agent/notify.js';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import type { CheckResult } from '../checks/types.js';
import { ManualClock, SteppableClock, ClockStepDetector } from '../platform/clock.js';

const HOUR = 3_600_000;
const PLEG_LINE = (n: number): string =>
  `E1127 10:00:0${n}.000000    1234 kubelet.go:2412] "Skipping pod synchronization" err="PLEG is not healthy: pleg was last seen active 3m${n}.1s ago; threshold is 3m0s"`;

t.test('ManualClock: advance moves both readings, a step only the wall clock; the detector sees steps', async (t) => {
  const c = new ManualClock(1_000_000);
  const d = new ClockStepDetector(c, 2000);
  c.advance(5000);
  t.equal(d.look(), undefined, 'time passing is no step');
  c.step(-HOUR);
  t.equal(c.elapsed(), 5000);
  t.equal(d.look(), -HOUR);
  c.step(1500);
  t.equal(d.look(), undefined, 'within the tolerance');
});

t.test('clock stepped back 1 h then forward 2 h: PLEG window, /healthz and the watchdog go by the monotonic clock', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-lifecycle-clock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'kubelet.log');
  writeFileSync(file, 'kubelet started\n');
  const checks: Record<string, unknown> = {};
  for (const def of CHECK_DEFINITIONS) checks[def.id] = { enabled: false };
  checks.pleg = { enabled: true, source: 'file', file, unit: 'nodemedic-test-no-such.service', minOccurrences: 2, window: '20s' };
  const config = resolveConfig({ http: { listen: '127.0.0.1:0' }, schedule: '*/1 * * * * *', stateDir: join(dir, 'state'), remediation: { mode: 'off' }, checks });
  const logs: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => logs.push(JSON.parse(s) as { level: number; msg: string }) });
  const clock = new SteppableClock();
  const agent = new Agent({ config, logger, clock });

  // A watchdog of 2 s: a ping every second while healthy.
  const pings: number[] = [];
  const notifier: ServiceNotifier = {
    enabled: true,
    watchdogMs: 2000,
    async send(a: readonly string[]): Promise<NotifyOutcome> {
      if (a.includes('WATCHDOG=1')) pings.push(performance.now());
      return { sent: true };
    },
  };
  const supervision = superviseWithSystemd(agent, notifier, logger);
  t.teardown(async () => {
    supervision.close();
    await agent.stop();
  });
  await agent.start();

  const pleg = (): CheckResult | undefined => agent.results().find((r) => r.check === 'pleg');
  /**
   * Resolves at the end of the next full sweep that starts after now. Sweeps that stop coming (the
   * schedule is 1 s) are a failure of their own, not a wait until tap's timeout.
   */
  const nextSweep = (): Promise<CheckResult[]> =>
    new Promise((resolve, reject) => {
      let first = true;
      const timer = setTimeout(() => {
        agent.off('sweep', on);
        reject(new Error('no sweep ended within 20 s at a 1 s schedule'));
      }, 20_000);
      const on = (rs: CheckResult[]): void => {
        // The sweep running now may have read the file before the last append; skip it.
        if (first) {
          first = false;
          return;
        }
        clearTimeout(timer);
        agent.off('sweep', on);
        resolve(rs);
      };
      agent.on('sweep', on);
    });
  const untilPleg = async (status: string, maxSweeps: number): Promise<number> => {
    for (let i = 1; i <= maxSweeps; i++) {
      await nextSweep();
      if (pleg()?.status === status) return i;
    }
    throw new Error(`pleg not ${status} within ${maxSweeps} sweeps: ${JSON.stringify(pleg())}`);
  };

  appendFileSync(file, `${PLEG_LINE(1)}\n${PLEG_LINE(2)}\n`);
  await untilPleg('problem', 10);

  // Back one hour. The reports leave the 20 s window in 20 s of real time; by the wall clock they are "in the future" for an hour.
  clock.step(-HOUR);
  t.ok(agent.healthy().ok, '/healthz right after the step back');
  const stepBack = performance.now();
  await untilPleg('ok', 60);
  t.ok(performance.now() - stepBack < 45_000, 'the old reports left the window once 20 s passed, not an hour later');
  t.match(pleg(), { status: 'ok', reason: 'PLEGHealthy' });
  t.ok(
    logs.some((l) => /the wall clock stepped back by 3600s/.test(l.msg)),
    'the step back is logged',
  );

  // New reports, then forward two hours: they are two hours old on the wall clock, seconds old in truth.
  appendFileSync(file, `${PLEG_LINE(3)}\n${PLEG_LINE(4)}\n`);
  await untilPleg('problem', 10);
  const pingsBefore = pings.length;
  clock.step(2 * HOUR);
  t.ok(agent.healthy().ok, '/healthz right after the step forward');
  const res = await fetch(`${agent.url}/healthz`);
  t.equal(res.status, 200, 'GET /healthz answers 200');
  await nextSweep();
  t.match(pleg(), { status: 'problem', reason: 'PLEGUnhealthy' }, 'a forward step does not age new reports out');
  t.ok(
    logs.some((l) => /the wall clock stepped forward by 7200s/.test(l.msg)),
    'the step forward is logged',
  );
  t.ok(pings.length > pingsBefore, 'WATCHDOG=1 kept coming after the step');
  t.notOk(
    logs.some((l) => /withholding WATCHDOG=1/.test(l.msg)),
    'no ping was withheld',
  );
  // No gap between pings longer than the watchdog timeout over the whole test.
  const gaps = pings.slice(1).map((p, i) => p - pings[i]!);
  t.ok(Math.max(...gaps) < 2000, `the longest gap between pings was ${Math.round(Math.max(...gaps))} ms (< WatchdogSec 2 s)`);
});
