/**
 * Hung-docker detection and /metrics under load, against a real dockerd (test/harness/dockerd.ts)
 * watched by a real `nodemedic run` (test/helpers/agent.ts). Run by bench/run.ts under tap's
 * TypeScript loader: `node --import=@tapjs/typescript/import bench/docker.mts --result F`.
 *
 * - docker-hang: from `kill -STOP` of dockerd to the agent's docker check `problem`, against the
 *   configured timeout, over several trials (SIGCONT and back to `ok` between them).
 * - metrics-load: autocannon on /metrics for 10 s while dockerd stays stopped (the docker probe is
 *   always in flight), against a bare node:http server answering a static body of the same size and
 *   content type, in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { parse, stringify } from 'yaml';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import type { CheckResult } from '../checks/types.js';
import { startDockerd, type DockerdHandle } from '../test/harness/dockerd.js';
import { startAgent, type RunningAgent } from '../test/helpers/agent.js';
import { CLI } from '../test/helpers/cli.js';
import { which } from '../test/helpers/require.js';
import {
  fmt,
  freePort,
  harnessMain,
  httpGet,
  loadAverage,
  marginBelow,
  median,
  onCleanup,
  PACKAGE,
  percentile,
  summarizeProfile,
  type ProfileSummary,
  runs,
  sleep,
  stopChild,
  table,
  waitFor200,
  type StepOptions,
  type StepReport,
} from './lib.js';

const TIMEOUT_MS = 2000;
const SCHEDULE = '*/1 * * * * *';

interface Ctx {
  dockerd: DockerdHandle;
  agent: RunningAgent;
  paused: boolean;
}

let ctx: Promise<Ctx> | undefined;

/** Why dockerd cannot run here, or undefined. */
function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'a real dockerd needs root';
  for (const c of ['dockerd', 'containerd']) if (!which(c)) return `${c} is not installed (run \`npm run test:setup\` as root)`;
  return undefined;
}

/** One dockerd and one agent for both steps. */
function context(log: (m: string) => void): Promise<Ctx> {
  return (ctx ??= (async () => {
    log('docker: starting a private dockerd');
    const dockerd = await startDockerd();
    onCleanup(() => dockerd.stop());
    const dir = mkdtempSync(join(tmpdir(), 'nm-bench-docker-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    // Only the docker check and two cheap host checks: every other check would need components this
    // benchmark does not start, and nothing may act on the host (remediation off).
    const checks: Record<string, unknown> = {};
    for (const def of CHECK_DEFINITIONS) checks[def.id] = { enabled: false };
    checks.disk = { enabled: true, paths: [dir] };
    checks.load = { enabled: true };
    checks.docker = { enabled: true, socket: dockerd.socket, unit: 'nodemedic-bench-no-such-unit', timeout: `${TIMEOUT_MS}ms` };
    const agent = await startAgent({ schedule: SCHEDULE, log: { level: 'info' }, remediation: { mode: 'off' }, checks });
    onCleanup(async () => {
      await agent.stop();
      rmSync(join(agent.configPath, '..'), { recursive: true, force: true });
    });
    log(`docker: dockerd pid ${dockerd.pid}, agent at ${agent.url}`);
    return { dockerd, agent, paused: false };
  })());
}

async function docker(agent: { url: string }): Promise<CheckResult | undefined> {
  const r = await httpGet(`${agent.url}/status`, 2000);
  return (JSON.parse(r.body) as { results: CheckResult[] }).results.find((x) => x.check === 'docker');
}

/** Polls /status every `everyMs` until the docker check satisfies `pred`; returns it and performance.now() then. */
async function until(agent: { url: string }, pred: (r: CheckResult) => boolean, limitMs: number, everyMs = 10): Promise<{ r: CheckResult; at: number }> {
  const t0 = performance.now();
  for (;;) {
    const r = await docker(agent);
    if (r && pred(r)) return { r, at: performance.now() };
    if (performance.now() - t0 > limitMs) throw new Error(`docker check not as expected within ${limitMs} ms; last: ${JSON.stringify(r)}`);
    await sleep(everyMs);
  }
}

async function dockerHang(opts: StepOptions): Promise<StepReport> {
  const why = unavailable();
  if (why) return { id: 'docker-hang', title: 'Hung-docker detection', measured: false, why, body: '', goals: [] };
  const { dockerd, agent } = await context(opts.log);
  const trials = opts.quick ? 3 : 10;
  const visible: number[] = [];
  const observed: number[] = [];
  const reasons = new Map<string, number>();
  const late: string[] = [];
  /** Late results that were `ok` because GET /info, not /_ping, went unanswered. */
  let lateInfo = 0;
  for (let i = 0; i < trials; i++) {
    await until(agent, (r) => r.status === 'ok', 30_000, 50);
    // A random phase against the 1 s sweep, so the trials sample the whole interval.
    await sleep(Math.random() * 1000);
    const wall0 = Date.now();
    const t0 = performance.now();
    dockerd.pause();
    // Every result published after the stop that still said something else, to explain a slow trial.
    const seen = new Map<string, CheckResult>();
    const { r, at } = await until(
      agent,
      (x) => {
        if (x.status !== 'problem' && Date.parse(x.observedAt) > wall0) seen.set(x.observedAt, x);
        return x.status === 'problem';
      },
      30_000,
    );
    for (const x of seen.values()) {
      const info = (x.evidence as { infoError?: string }).infoError;
      if (x.status === 'ok' && info) lateInfo++;
      late.push(
        `trial ${i + 1} (${fmt(at - t0)} ms): ${fmt(Date.parse(x.observedAt) - wall0)} ms after the stop the check still returned ` +
          `\`${x.status}\` ${x.reason}${info ? ` ("${info}")` : ''}`,
      );
    }
    visible.push(at - t0);
    observed.push(Date.parse(r.observedAt) - wall0);
    reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
    dockerd.resume();
    opts.log(`docker-hang: trial ${i + 1}/${trials}: ${fmt(at - t0)} ms (${r.reason})`);
  }
  const limit = TIMEOUT_MS + 1000;
  const p50 = percentile(visible, 50);
  const p99 = percentile(visible, 99);
  const over = visible.map((v) => v - TIMEOUT_MS);
  const body = [
    `Method: a private dockerd (${'`'}test/harness/dockerd.ts${'`'}) watched by \`nodemedic run\` with schedule \`${SCHEDULE}\` and ` +
      `\`checks.docker.timeout: ${TIMEOUT_MS}ms\` (remediation off; only the disk, load and docker checks enabled). ${trials} trials: ` +
      'wait for `ok`, wait a random 0-1 s (so the stop falls anywhere in the sweep interval), `kill -STOP` dockerd, poll ' +
      '`/status` every 10 ms until the docker check is `problem`, then `kill -CONT`. "Visible" is STOP to the poll that sees ' +
      '`problem`; "decided" is STOP to the result\'s `observedAt` (the agent\'s clock when the check returned; ms resolution).',
    '',
    table(
      ['', 'p50 ms', 'p99 ms (n = ' + trials + ': the max)', 'runs, ms'],
      [
        ['STOP to `problem` visible on /status', fmt(p50), fmt(p99), runs(visible)],
        ['STOP to the check\'s decision (`observedAt`)', fmt(percentile(observed, 50)), fmt(percentile(observed, 99)), runs(observed)],
        ['visible minus the configured timeout', fmt(percentile(over, 50)), fmt(percentile(over, 99)), runs(over)],
      ],
    ),
    '',
    `Reasons seen: ${[...reasons].map(([k, v]) => `${k} x${v}`).join(', ')}. What bounds it: the stop is noticed by the first probe ` +
      `that starts after it, i.e. at the next sweep (0-1 s with a 1 s schedule), and that probe reports \`DockerHung\` when ` +
      `its ${TIMEOUT_MS} ms timeout expires; so detection is the timeout plus up to one sweep interval plus the time to publish ` +
      'the result. With the default 15 s schedule the same bound is timeout + up to 15 s.' +
      (late.length
        ? ` Trials where a result published after the stop still was not \`problem\`: ${late.join('; ')}.` +
          (lateInfo
            ? " A stop that falls after `GET /_ping` has answered but before `GET /info` has (the check's second request) leaves that " +
              'probe waiting the rest of its timeout for /info and then reporting `ok` with `infoError`; the hang is only seen by the ' +
              'next probe, one interval and one more timeout later.'
            : '')
        : ' No result published after a stop said anything but `problem`.'),
  ].join('\n');
  return {
    id: 'docker-hang',
    title: 'Hung-docker detection',
    measured: true,
    body,
    goals: [
      {
        goal: 'hung-docker detection within timeout + 1 s',
        measured: `p99 ${fmt(p99)} ms, p50 ${fmt(p50)} ms (timeout ${TIMEOUT_MS} ms, 1 s schedule)`,
        met: p99 <= limit,
        margin: marginBelow(p99, limit, ' ms'),
        ...(p99 > limit
          ? {
              close:
                (lateInfo
                  ? 'the slowest trials are stops that fell between /_ping\'s answer and /info\'s: the docker check then reports `ok` ' +
                    '(DockerHealthy with infoError) after waiting its whole timeout for /info, and only the next probe sees the hang; ' +
                    'treating an /info timeout on a daemon that just answered /_ping as `DockerHung` (it is the same hung daemon) closes ' +
                    'that; beyond it, '
                  : '') +
                'the probe starts only at the next sweep, so up to a whole interval is added to the timeout: start a probe ' +
                'as soon as the previous one returns (a per-check cadence instead of the sweep tick), or run the sweep more often ' +
                'than once a second for the daemon checks',
            }
          : {}),
      },
    ],
    data: { timeoutMs: TIMEOUT_MS, visibleMs: visible, observedMs: observed, reasons: Object.fromEntries(reasons), late },
  };
}

/** A bare node:http server answering `body` with `contentType` on every request: the floor for serving it. */
async function bareServer(dir: string, body: string, contentType: string): Promise<{ url: string; child: ChildProcess }> {
  const file = join(dir, 'metrics-body.txt');
  writeFileSync(file, body);
  const port = await freePort();
  const script =
    "const body = require('node:fs').readFileSync(process.argv[1]); const type = process.argv[2];" +
    "require('node:http').createServer((q, s) => { s.writeHead(200, { 'content-type': type, 'content-length': body.length }); s.end(body); })" +
    ".listen(Number(process.argv[3]), '127.0.0.1');";
  const child = spawn(process.execPath, ['-e', script, file, contentType, String(port)], { stdio: 'ignore' });
  onCleanup(() => stopChild(child));
  const url = `http://127.0.0.1:${port}/metrics`;
  await waitFor200(url, { timeoutMs: 10_000, intervalMs: 20, child, what: 'bare http server' });
  return { url, child };
}

interface Load {
  rps: number;
  p50: number;
  p99: number;
  max: number;
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

/** autocannon for `durationS`; latencies from its per-response hrtime (sub-ms), not its integer-ms histogram. */
async function load(url: string, connections: number, durationS: number): Promise<Load> {
  const lat: number[] = [];
  const instance = autocannon({ url, connections, duration: durationS, pipelining: 1 });
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, ms: number) => {
    if (statusCode === 200) lat.push(ms);
  });
  const result = (await instance) as {
    requests: { average: number; total: number };
    non2xx: number;
    errors: number;
    timeouts: number;
    duration: number;
  };
  return {
    rps: result.requests.total / result.duration,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: percentile(lat, 100),
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}


/**
 * Where a scrape's time goes: a second agent with the same config, started under `--cpu-prof` (the
 * profiler's cost keeps it out of the figures), loaded like the measured rounds for `seconds`.
 */
async function profileScrapes(agent: RunningAgent, connections: number, seconds: number, log: (m: string) => void): Promise<{ profile: ProfileSummary; requests: number } | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-metrics-prof-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const cfg = parse(readFileSync(agent.configPath, 'utf8')) as Record<string, unknown>;
  cfg.http = { listen: `127.0.0.1:${port}` };
  cfg.stateDir = join(dir, 'state');
  writeFileSync(join(dir, 'config.yaml'), stringify(cfg));
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, CLI, 'run', '--config', join(dir, 'config.yaml')], {
    stdio: 'ignore',
    env: { ...process.env, NODEMEDIC_CONFIG: '' },
  });
  onCleanup(() => stopChild(child));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor200(`${url}/healthz`, { timeoutMs: 30_000, intervalMs: 50, child, what: 'profiled agent' });
    await until({ url }, (r) => r.status === 'problem', 30_000, 50);
    const from = performance.now() - spawnedAt;
    const r = await load(`${url}/metrics`, connections, seconds);
    const to = performance.now() - spawnedAt;
    await stopChild(child);
    const f = readdirSync(dir).find((n) => n.endsWith('.cpuprofile'));
    if (!f) return undefined;
    // Only the load window (offsets from the spawn; the profile starts a few ms after it).
    const profile = summarizeProfile(join(dir, f), { fromMs: from, toMs: to, groups: { pkg: PACKAGE, collector: /\/prom-client\/lib\/metrics\/([^/]+)\.js$/ } });
    return { profile, requests: r.requests };
  } catch (e) {
    log(`metrics-load: profiling failed: ${(e as Error).message}`);
    return undefined;
  }
}

const pctOf = (x: number, of: number) => `${fmt((x / of) * 100, 2)} %`;

async function metricsLoad(opts: StepOptions): Promise<StepReport> {
  const why = unavailable();
  if (why) return { id: 'metrics-load', title: '/metrics under load while a check hangs', measured: false, why, body: '', goals: [] };
  const c = await context(opts.log);
  const { dockerd, agent } = c;
  const rounds = opts.quick ? 1 : 3;
  const durationS = opts.quick ? 3 : 10;
  const connections = 10;
  await until(agent, (r) => r.status === 'ok', 30_000, 50);
  dockerd.pause();
  onCleanup(() => dockerd.resume());
  const hung = await until(agent, (r) => r.status === 'problem', 30_000, 50);
  opts.log(`metrics-load: dockerd stopped, docker check ${hung.r.reason}`);

  const first = await fetch(`${agent.url}/metrics`);
  const body = await first.text();
  const contentType = first.headers.get('content-type') ?? 'text/plain';
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-metrics-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const bare = await bareServer(dir, body, contentType);

  const agentRuns: Load[] = [];
  const bareRuns: Load[] = [];
  const hungDuring: boolean[] = [];
  for (let i = 0; i < rounds; i++) {
    // Alternate which goes first so that drifting machine load does not favour one.
    const order = i % 2 === 0 ? ['agent', 'bare'] : ['bare', 'agent'];
    for (const which of order) {
      if (which === 'agent') {
        const r = await load(`${agent.url}/metrics`, connections, durationS);
        agentRuns.push(r);
        const d = await docker(agent);
        hungDuring.push(d?.status === 'problem');
        opts.log(`metrics-load: agent ${fmt(r.rps)} req/s, p99 ${fmt(r.p99)} ms (docker ${d?.status} ${d?.reason})`);
      } else {
        const r = await load(bare.url, connections, durationS);
        bareRuns.push(r);
        opts.log(`metrics-load: bare ${fmt(r.rps)} req/s, p99 ${fmt(r.p99)} ms`);
      }
    }
  }
  // A scrape-shaped figure too: one connection, as Prometheus uses.
  const singleS = Math.min(durationS, 5);
  const single = { agent: await load(`${agent.url}/metrics`, 1, singleS), bare: await load(bare.url, 1, singleS) };
  const stillHung = (await docker(agent))?.status === 'problem';
  opts.log('metrics-load: profiling scrapes on a second agent');
  const prof = await profileScrapes(agent, connections, opts.quick ? 2 : 4, opts.log);
  dockerd.resume();

  const med = (xs: Load[], k: keyof Load) => median(xs.map((x) => x[k]));
  const p99 = med(agentRuns, 'p99');
  const failures = [...agentRuns, single.agent].reduce((s, r) => s + r.non2xx + r.errors + r.timeouts, 0);
  const row = (name: string, xs: Load[]) => [
    name,
    `${fmt(med(xs, 'rps'))} (${runs(xs.map((x) => x.rps))})`,
    `${fmt(med(xs, 'p50'), 2)}`,
    `${fmt(med(xs, 'p99'), 2)} (${runs(xs.map((x) => x.p99), 2)})`,
    fmt(med(xs, 'max'), 2),
    String(xs.reduce((s, x) => s + x.non2xx + x.errors + x.timeouts, 0)),
  ];
  const bodyMd = [
    `Method: the agent of the docker-hang step (1 s schedule, docker timeout ${TIMEOUT_MS} ms) with dockerd stopped by ` +
      '`kill -STOP` for the whole measurement, so a docker probe is in flight (or timing out) at every moment. autocannon ' +
      `(${connections} connections, pipelining 1, ${durationS} s, loopback) on \`GET /metrics\`, ${rounds} round(s), alternating with ` +
      `the baseline: a bare \`node:http\` server in its own process answering the agent's own /metrics body ` +
      `(${body.length} bytes, \`${contentType}\`) to every request. Latencies are autocannon's per-response hrtime (sub-millisecond), ` +
      'the percentiles computed over every response of the round; each figure is the median over rounds.',
    '',
    table(
      ['server', 'req/s (rounds)', 'p50 ms', 'p99 ms (rounds)', 'max ms', 'errors + non-2xx + timeouts'],
      [row('`nodemedic run` /metrics, a check hung', agentRuns), row('bare node:http, same body', bareRuns)],
    ),
    '',
    `Ratios: throughput agent / bare ${fmt(med(agentRuns, 'rps') / med(bareRuns, 'rps'))}x, p99 agent / bare ` +
      `${fmt(p99 / med(bareRuns, 'p99'))}x. One connection (a scrape's shape, ${singleS} s each): agent ${fmt(single.agent.rps)} req/s, p99 ` +
      `${fmt(single.agent.p99, 2)} ms; bare ${fmt(single.bare.rps)} req/s, p99 ${fmt(single.bare.p99, 2)} ms.`,
    '',
    prof
      ? `**Where a scrape's time goes.** A second agent with the same config ran under \`--cpu-prof\` (not in the figures) and took ` +
        `${prof.requests} requests in the same way: ${fmt(prof.profile.busyMs)} ms busy, ${fmt(prof.profile.busyMs / prof.requests, 2)} ms of CPU per ` +
        `scrape. Inclusive by package: ${(prof.profile.groups.pkg ?? []).slice(0, 5).map(([k, v]) => `${k} ${pctOf(v, prof.profile.busyMs)}`).join(', ')}; ` +
        `prom-client's default-metric collectors: ${(prof.profile.groups.collector ?? []).slice(0, 6).map(([k, v]) => `${k} ${pctOf(v, prof.profile.busyMs)}`).join(', ')}. ` +
        `Top self time: ${prof.profile.topSelf.map(([k, v]) => `\`${k}\` ${fmt(v)} ms`).join(', ')}.`
      : '**Where a scrape\'s time goes:** the profiled agent left no profile.',
    '',
    `The docker check was \`problem\` after every agent round: ${hungDuring.every(Boolean) && stillHung ? 'yes' : `no (${JSON.stringify(hungDuring)}, at the end ${stillHung})`}. ` +
      `Failed requests to the agent: ${failures}. Load average after: ${loadAverage()}.`,
  ].join('\n');
  const limit = 5;
  const bareP99 = med(bareRuns, 'p99');
  return {
    id: 'metrics-load',
    title: '/metrics under load while a check hangs',
    measured: true,
    body: bodyMd,
    goals: [
      {
        goal: '/metrics p99 under 5 ms while a check hangs',
        measured: `p99 ${fmt(p99, 2)} ms at ${connections} connections (bare node:http ${fmt(bareP99, 2)} ms); 1 connection ${fmt(single.agent.p99, 2)} ms`,
        met: p99 < limit,
        margin: marginBelow(p99, limit, ' ms'),
        ...(p99 >= limit
          ? {
              close:
                (bareP99 >= limit
                  ? `on this machine even the bare server's p99 is ${fmt(bareP99, 2)} ms at ${connections} connections (a loaded CPU), so part of ` +
                    'the miss is the machine; '
                  : '') +
                `the agent's p99 is ${fmt(p99 / bareP99)}x the bare server's on the same body and it serves ${fmt(med(agentRuns, 'rps'))} ` +
                `req/s against ${fmt(med(bareRuns, 'rps'))}, so requests queue behind each other's rendering` +
                (prof
                  ? `: ${fmt(prof.profile.busyMs / prof.requests, 2)} ms of CPU per scrape (under the profiler), ` +
                    `${pctOf(prof.profile.groups.pkg?.find(([k]) => k === 'prom-client')?.[1] ?? 0, prof.profile.busyMs)} of it in prom-client, ` +
                    `${pctOf((prof.profile.groups.collector ?? []).reduce((a, [, v]) => a + v, 0), prof.profile.busyMs)} in its default-metric ` +
                    `collectors (most: ${(prof.profile.groups.collector ?? []).slice(0, 3).map(([k, v]) => `${k} ${pctOf(v, prof.profile.busyMs)}`).join(', ')}), ` +
                    'which run on every scrape. Collecting the default metrics on a timer (or caching the rendered text for a second) ' +
                    "would leave a scrape little more than writing a ready string, the bare server's case (not measured here)"
                  : ''),
            }
          : {}),
      },
    ],
    data: { connections, durationS, agentRuns, bareRuns, single, bodyBytes: body.length, profile: prof },
  };
}

await harnessMain({ 'docker-hang': dockerHang, 'metrics-load': metricsLoad });
