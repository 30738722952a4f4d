/**
 * A check asking the agent for a run when its evidence changes (CheckDeps.requestRun): the pleg
 * check asks once per ok-to-problem crossing, not per line, and skips `systemctl show` on that run;
 * the agent's trigger coalesces and rate-limits requests and never overlaps runs; and a real agent
 * (file source, a schedule far in the future) shows the problem on /status within about a second
 * of the line being written, without a scheduled sweep.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import t from 'tap';
import { Agent, coalescedRequester, REQUESTED_RUN_MIN_GAP_MS } from '../agent/agent.js';
import { ManualClock } from '../platform/clock.js';
import { resolveConfig } from '../agent/config.js';
import { RealHost, type Host } from '../platform/host.js';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import { PlegMonitor, plegCheck } from '../checks/pleg.js';
import type { CheckResult } from '../checks/types.js';

const corpus = fileURLToPath(new URL('./fixtures/corpus/kubelet/', import.meta.url));
const unhealthy = readFileSync(corpus + 'kubelet-pleg.tsv', 'utf8')
  .split('\n')
  .slice(1)
  .filter((r) => r.startsWith('pleg-unhealthy\t'))
  .map((r) => r.slice(r.indexOf('\t') + 1));
if (unhealthy.length < 3) throw new Error(`expected at least 3 pleg-unhealthy lines in the corpus, found ${unhealthy.length}`);
const signal = new AbortController().signal;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MIN = 60_000;

/** The real host, counting the commands the check runs (to see whether `systemctl show` was spared). */
function countingHost(clock: ManualClock): { host: Host; commands: string[] } {
  const real = new RealHost({ clock });
  const commands: string[] = [];
  const host: Host = {
    clock,
    run: (argv, opts) => {
      commands.push(argv.join(' '));
      return real.run(argv, opts);
    },
    spawnLines: (argv, opts) => real.spawnLines(argv, opts),
    readFile: (p, max) => real.readFile(p, max),
    statfs: (p) => real.statfs(p),
  };
  return { host, commands };
}

t.test('pleg asks for a run once per crossing into problem, not per line, and skips systemctl on it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-pleg-req-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'kubelet.log');
  writeFileSync(file, '');
  const clock = new ManualClock();
  const { host, commands } = countingHost(clock);
  let requests = 0;
  const check = new PlegMonitor(
    { ...plegCheck.defaults, source: 'file', file, unit: 'nodemedic-test-no-such-unit.service', minOccurrences: 3 },
    { host, requestRun: () => requests++ },
  );
  t.teardown(() => check.stop());
  await check.start();
  const append = async (...lines: string[]) => {
    appendFileSync(file, lines.map((l) => `${l}\n`).join(''));
    await check.readAvailable();
  };
  t.match(await check.run(signal), { status: 'ok' });

  await append(unhealthy[0]!, unhealthy[1]!);
  t.equal(requests, 0, 'two reports are below minOccurrences 3: no request');
  await append(unhealthy[2]!);
  t.equal(requests, 1, 'the third report crosses the threshold: one request');
  await append(...Array.from({ length: 500 }, (_, i) => unhealthy[i % unhealthy.length]!));
  t.equal(requests, 1, '500 more reports before the run: still one request');

  const before = commands.length;
  const r = await check.run(signal);
  t.match(r, { status: 'problem', reason: 'PLEGUnhealthy' });
  t.equal(commands.length, before, 'the requested run did not ask systemctl again');
  t.ok(before > 0, 'the unit was asked about before (start and the first run)');

  await append(...unhealthy.slice(0, 3));
  t.equal(requests, 1, 'already a problem: more reports ask for nothing');
  const before2 = commands.length;
  t.match(await check.run(signal), { status: 'problem' });
  t.equal(commands.length, before2 + 1, 'a scheduled run refreshes the unit as before');

  // The episode ends after a quiet window; the next crossing asks again, once.
  clock.advance(6 * MIN);
  t.match(await check.run(signal), { status: 'ok' });
  await append(unhealthy[0]!, unhealthy[1]!);
  t.equal(requests, 1);
  await append(unhealthy[2]!, unhealthy[0]!);
  t.equal(requests, 2, 'a new crossing after recovery: a second request');
});

t.test('requested runs: coalesced, at most one per gap, never overlapping, and none lost', async (t) => {
  let running = 0;
  let maxRunning = 0;
  const starts: number[] = [];
  const req = coalescedRequester(
    async () => {
      starts.push(performance.now());
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(30);
      running--;
    },
    REQUESTED_RUN_MIN_GAP_MS,
    (e) => t.fail(`run failed: ${String(e)}`),
  );
  t.teardown(() => req.close());
  // 10,000 requests over about a second, as a flood of log lines would make them.
  const t0 = performance.now();
  for (let batch = 0; batch < 10; batch++) {
    for (let i = 0; i < 1000; i++) req.request();
    await sleep(100);
  }
  const lastRequestAt = performance.now();
  await sleep(REQUESTED_RUN_MIN_GAP_MS + 100);
  const elapsed = lastRequestAt - t0;
  t.equal(maxRunning, 1, 'never two runs at once');
  t.ok(starts.length >= 2, `several runs (${starts.length})`);
  t.ok(starts.length <= Math.ceil(elapsed / REQUESTED_RUN_MIN_GAP_MS) + 2, `${starts.length} runs for 10,000 requests over ${Math.round(elapsed)} ms`);
  for (let i = 1; i < starts.length; i++) {
    // Timers may fire a millisecond early by rounding; never a whole gap early.
    t.ok(starts[i]! - starts[i - 1]! >= REQUESTED_RUN_MIN_GAP_MS - 2, `runs ${i} and ${i + 1} are ${Math.round(starts[i]! - starts[i - 1]!)} ms apart`);
  }
  t.ok(starts.at(-1)! >= lastRequestAt - 100 - 30, 'a request during the last run got a run after it');

  // After close, requests do nothing.
  await req.close();
  const n = starts.length;
  req.request();
  await sleep(REQUESTED_RUN_MIN_GAP_MS + 50);
  t.equal(starts.length, n, 'closed: no more runs');
});

t.test('a real agent shows a PLEG problem on /status without waiting for a scheduled sweep', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-pleg-agent-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'kubelet.log');
  writeFileSync(file, 'kubelet started\n');
  const checks: Record<string, unknown> = {};
  for (const def of CHECK_DEFINITIONS) checks[def.id] = { enabled: false };
  checks.pleg = { enabled: true, source: 'file', file, unit: 'nodemedic-test-no-such-unit.service', minOccurrences: 2, window: '5m' };
  const config = resolveConfig({
    http: { listen: '127.0.0.1:0' },
    // Once a year: no scheduled sweep can happen during the test; only the one at start.
    schedule: '0 0 0 1 1 *',
    stateDir: join(dir, 'state'),
    remediation: { mode: 'off' },
    checks,
  });
  const agent = new Agent({ config, logger: pino({ level: 'silent' }) });
  t.teardown(() => agent.stop());
  await agent.start();
  const status = async () => (await (await fetch(`${agent.url}/status`, { signal: AbortSignal.timeout(2000) })).json()) as { lastSweep: string; results: CheckResult[] };
  const first = await status();
  t.match(first.results.find((r) => r.check === 'pleg'), { status: 'ok' });

  appendFileSync(file, `${unhealthy[0]}\n`);
  await sleep(1200);
  t.match((await status()).results.find((r) => r.check === 'pleg'), { status: 'ok' }, 'one report is below the threshold: no run, still ok');

  const written = performance.now();
  appendFileSync(file, `${unhealthy[1]}\n`);
  let seen: CheckResult | undefined;
  let s = first;
  while (performance.now() - written < 5000) {
    s = await status();
    seen = s.results.find((r) => r.check === 'pleg' && r.status === 'problem');
    if (seen) break;
    await sleep(10);
  }
  const latency = performance.now() - written;
  t.ok(seen, 'pleg problem visible on /status');
  // The file follower polls about once a second; the requested run then takes a few ms.
  t.ok(latency < 1500, `visible ${Math.round(latency)} ms after the line was written`);
  t.equal(s.lastSweep, first.lastSweep, 'no full sweep ran meanwhile');
  t.match(seen, { reason: 'PLEGUnhealthy', evidence: { unhealthy: 2 } });
  const metrics = await (await fetch(`${agent.url}/metrics`)).text();
  t.match(metrics, /nodemedic_check_status\{[^}]*check="pleg"[^}]*status="problem"[^}]*\} 1/, '/metrics says problem too');
});
