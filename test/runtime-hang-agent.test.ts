import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CheckResult } from '../checks/types.js';
import { startContainerd } from './harness/containerd.js';
import { startDockerd } from './harness/dockerd.js';
import { CLI } from './helpers/cli.js';
import { allChecksOff } from './helpers/lifecycle.js';
import { requireComponent } from './helpers/require.js';

/**
 * Issue 3, Must show #3, end to end: the real agent (`nodemedic run`, its own process) watching a
 * real dockerd and a real containerd. Stopping either daemon with SIGSTOP turns its check into a
 * `*Hung` problem while /healthz, /metrics and the other checks keep answering; SIGCONT heals it.
 */

const TIMEOUT_MS = 2000;
const INTERVAL_MS = 1000;

interface Agent {
  url: string;
  child: ChildProcess;
  output: () => string;
}

async function startAgent(t: Test, dir: string, docker: string, containerd: string): Promise<Agent> {
  const config = {
    nodeName: 'hang-test',
    http: { listen: '127.0.0.1:0' },
    schedule: '* * * * * *',
    stateDir: join(dir, 'state'),
    log: { level: 'info' },
    // Nothing may act on the host: the ladder is off.
    remediation: { mode: 'off' },
    checks: {
      ...allChecksOff(),
      disk: { paths: [dir], timeout: '2s' },
      load: { enabled: true },
      docker: { socket: docker, unit: 'nodemedic-test-no-such-unit', timeout: `${TIMEOUT_MS}ms` },
      containerd: { socket: containerd, unit: 'nodemedic-test-no-such-unit', timeout: `${TIMEOUT_MS}ms` },
    },
  };
  const file = join(dir, 'config.json');
  await writeFile(file, JSON.stringify(config));
  const child = spawn(process.execPath, [CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODEMEDIC_CONFIG: '' } });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  });
  // 'nodemedic ready' follows the first sweep. 90 s is the unit's TimeoutStartSec, the bound systemd
  // gives a start; 30 s ran out once on a machine loaded well beyond CI's hog.
  const until = performance.now() + 90_000;
  while (performance.now() < until) {
    const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
    if (m) return { url: m[1]!, child, output: () => out };
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  throw new Error(`the agent did not become ready:\n${out.slice(-3000)}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function get(url: string): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = await res.text();
  return { status: res.status, body, ms: performance.now() - t0 };
}

async function results(agent: Agent): Promise<Map<string, CheckResult>> {
  const s = JSON.parse((await get(`${agent.url}/status`)).body) as { results: CheckResult[] };
  return new Map(s.results.map((r) => [r.check, r]));
}

/** Polls /status until `pred` holds; returns the results then and how long it took. */
async function until(agent: Agent, pred: (r: Map<string, CheckResult>) => boolean, limitMs: number): Promise<{ r: Map<string, CheckResult>; ms: number }> {
  const t0 = performance.now();
  for (;;) {
    const r = await results(agent);
    if (pred(r)) return { r, ms: performance.now() - t0 };
    if (performance.now() - t0 > limitMs) throw new Error(`condition not reached within ${limitMs} ms; last results: ${JSON.stringify([...r.values()].map((x) => [x.check, x.status, x.reason]))}`);
    await sleep(50);
  }
}

/**
 * While one daemon is stopped: /healthz and /metrics answer 200, quickly, every time; the disk and
 * load checks keep producing fresh results. Returns the worst endpoint latency seen.
 */
async function watchWhileHung(t: Test, agent: Agent, forMs: number): Promise<number> {
  const before = await results(agent);
  const diskBefore = before.get('disk')!.observedAt;
  const loadBefore = before.get('load')!.observedAt;
  let worst = 0;
  let polls = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < forMs) {
    const h = await get(`${agent.url}/healthz`);
    const m = await get(`${agent.url}/metrics`);
    if (h.status !== 200) t.fail(`/healthz answered ${h.status}: ${h.body}`);
    if (m.status !== 200) t.fail(`/metrics answered ${m.status}`);
    worst = Math.max(worst, h.ms, m.ms);
    polls++;
    await sleep(100);
  }
  const after = await results(agent);
  t.ok(polls >= 10, `polled /healthz and /metrics ${polls} times`);
  t.not(after.get('disk')!.observedAt, diskBefore, 'the disk check kept answering');
  t.not(after.get('load')!.observedAt, loadBefore, 'the load check kept answering');
  return worst;
}

t.test('the agent detects a hung dockerd and a hung containerd and keeps serving', async (t) => {
  if (!(await requireComponent(t, 'dockerd and containerd', ['dockerd', 'containerd', 'ctr']))) return;
  if (!existsSync(CLI)) {
    t.fail(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'nm-agent-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const [dockerd, containerd] = await Promise.all([startDockerd({ liveRestore: true }), startContainerd()]);
  t.teardown(() => dockerd.stop());
  t.teardown(() => containerd.stop());
  const agent = await startAgent(t, dir, dockerd.socket, containerd.socket);

  const healthy = await until(agent, (r) => r.get('docker')?.status === 'ok' && r.get('containerd')?.status === 'ok', 10_000);
  t.match(healthy.r.get('docker'), { reason: 'DockerHealthy', evidence: { liveRestoreEnabled: true } }, '/status shows liveRestoreEnabled');
  t.match(healthy.r.get('containerd'), { reason: 'ContainerdHealthy', evidence: { version: /\S/ } });

  // dockerd stopped: detected within one interval (the next sweep starts) + timeout + 1 s.
  dockerd.pause();
  const hung = await until(agent, (r) => r.get('docker')?.reason === 'DockerHung', INTERVAL_MS + TIMEOUT_MS + 1000 + 500);
  t.pass(`DockerHung seen in /status ${Math.round(hung.ms)} ms after SIGSTOP`);
  t.equal(hung.r.get('containerd')?.status, 'ok', 'containerd is unaffected');
  const metrics = (await get(`${agent.url}/metrics`)).body;
  t.match(metrics, /nodemedic_check_status\{check="docker",status="problem"\} 1/, '/metrics shows the problem');
  const worstDocker = await watchWhileHung(t, agent, 4000);
  t.ok(worstDocker < 1000, `/healthz and /metrics stayed fast while dockerd was stopped (worst ${Math.round(worstDocker)} ms)`);
  t.equal((await results(agent)).get('docker')?.reason, 'DockerHung', 'still hung after several sweeps, never a CheckTimeout');

  dockerd.resume();
  await until(agent, (r) => r.get('docker')?.status === 'ok', INTERVAL_MS + TIMEOUT_MS + 2000);
  t.pass('docker ok again after SIGCONT');

  containerd.pause();
  const chung = await until(agent, (r) => r.get('containerd')?.reason === 'ContainerdHung', INTERVAL_MS + TIMEOUT_MS + 1000 + 500);
  t.pass(`ContainerdHung seen in /status ${Math.round(chung.ms)} ms after SIGSTOP`);
  t.equal(chung.r.get('docker')?.status, 'ok', 'docker is unaffected');
  const worstContainerd = await watchWhileHung(t, agent, 3000);
  t.ok(worstContainerd < 1000, `/healthz and /metrics stayed fast while containerd was stopped (worst ${Math.round(worstContainerd)} ms)`);

  containerd.resume();
  await until(agent, (r) => r.get('containerd')?.status === 'ok', INTERVAL_MS + TIMEOUT_MS + 2000);
  t.pass('containerd ok again after SIGCONT');

  agent.child.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => (agent.child.exitCode !== null ? r(agent.child.exitCode) : agent.child.once('exit', (c) => r(c))));
  t.equal(code, 0, 'the agent stops cleanly on SIGTERM');
});
