/**
 * The agent's lifecycle as an operator meets it, with real `nodemedic run` processes: a busy port at
 * start and on reload, a second agent on the same state directory, SIGHUP in the first moments,
 * SIGHUP with an unchanged config while PLEG is a problem, a slow client during SIGTERM, /healthz
 * with checks slower than the schedule. Every stdout line of every agent must be JSON.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { agentDir, catches, getJson, type RunProcess } from './helpers/lifecycle.js';

const PLEG_LINE = (n: number): string =>
  `E1127 10:00:0${n}.000000    1234 kubelet.go:2412] "Skipping pod synchronization" err="PLEG is not healthy: pleg was last seen active 3m${n}.1s ago; threshold is 3m0s"`;

function occupy(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

function allJson(t: { same(found: unknown, wanted: unknown, message?: string): unknown }, p: RunProcess): void {
  t.same(p.nonJsonLines, [], 'every stdout line is a JSON record');
}

t.test('a busy port at start: one clear line naming the address, exit 69, no stack', async (t) => {
  const a = await agentDir(t, { checks: { load: {} } });
  const blocker = await occupy(a.port);
  t.teardown(() => blocker.close());
  const p = a.spawn();
  const { code } = await p.exited;
  t.equal(code, 69, 'EX_UNAVAILABLE');
  t.equal(p.stderr, `nodemedic: cannot listen on 127.0.0.1:${a.port} (http.listen): the address is already in use\n`);
  t.notMatch(p.stderr, /at .*\.js:\d+/, 'no stack trace');
  allJson(t, p);
});

t.test('a second agent on the same stateDir exits with a clear error and leaves state.json byte for byte', async (t) => {
  const a = await agentDir(t, { checks: { load: {} }, remediation: { mode: 'off' } });
  const first = a.spawn();
  await first.waitLog(/^nodemedic ready$/);
  // An action in flight, as the first agent would have written it: a second agent that read it would
  // judge it "interrupted" and rewrite the file.
  const state = {
    version: 1,
    seq: 1,
    problemSince: {},
    episode: null,
    latch: null,
    budgets: { restarts: {}, reboots: [], noRebootBefore: null },
    liveRestore: null,
    rebootRequest: null,
    actions: [{ id: 'e1/1', episodeId: 'e1', step: 'restart-kubelet', action: 'restart_kubelet', unit: 'kubelet', mode: 'enforce', intentAt: Date.now() - 1000, reason: 'test' }],
  };
  const statePath = join(a.stateDir, 'state.json');
  writeFileSync(statePath, JSON.stringify(state));
  const before = readFileSync(statePath);

  // The second agent: same stateDir, another port, enforce.
  const b = await agentDir(t, { checks: { load: {} }, stateDir: a.stateDir, remediation: { mode: 'enforce' } });
  const second = b.spawn();
  const { code } = await second.exited;
  t.equal(code, 75, 'EX_TEMPFAIL');
  t.match(second.stderr, new RegExp(`^nodemedic: another nodemedic agent \\(pid ${first.pid}\\) is running with stateDir ${a.stateDir}; one agent per state directory`));
  t.equal(second.stderr.trim().split('\n').length, 1, 'one line');
  t.same(readFileSync(statePath), before, 'state.json is byte-identical');
  t.notOk(second.logs(/interrupted action judged/).length, 'the second agent judged nothing');
  t.equal((await fetch(`${a.url}/healthz`)).status, 200, 'the first agent is unharmed');
  allJson(t, second);

  // Once the first stops, the lock is free: a third start takes it.
  t.equal((await first.stop()).code, 0);
  const third = b.spawn();
  await third.waitLog(/^nodemedic ready$/);
  t.equal((await third.stop()).code, 0);
  allJson(t, first);
});

t.test('an agent killed with SIGKILL leaves no lock behind', async (t) => {
  const a = await agentDir(t, { checks: { load: {} } });
  const first = a.spawn();
  await first.waitLog(/^nodemedic ready$/);
  first.signal('SIGKILL');
  await first.exited;
  const second = a.spawn();
  await second.waitLog(/^nodemedic ready$/);
  t.equal(second.logs(/lock/).length, 0, 'no complaint about the lock');
  const end = await second.stop();
  t.equal(end.code, 0, `a clean exit (${end.code ?? end.signal}): ${second.logs(/stuck|did not stop|abandon/).map((r) => r.msg).join('; ')}`);
});

t.test('SIGHUP moving http.listen to a busy port: the old listener answers, the old config stays whole', async (t) => {
  const a = await agentDir(t, { checks: { load: {} }, remediation: { mode: 'dry-run' } });
  const p = a.spawn();
  await p.waitLog(/^nodemedic ready$/);
  const busy = await occupy(0 as unknown as number);
  t.teardown(() => busy.close());
  const busyPort = (busy.address() as { port: number }).port;
  a.write({ ...a.config, http: { listen: `127.0.0.1:${busyPort}` }, remediation: { mode: 'off' }, checks: { ...(a.config.checks as object), disk: { enabled: true, paths: ['/'] } } });
  p.signal('SIGHUP');
  const rejected = await p.waitLog(/^reload rejected/);
  t.match(rejected.msg, `reload rejected: cannot listen on 127.0.0.1:${busyPort} (http.listen): the address is already in use; keeping the current config`);
  const status = await getJson(`${a.url}/status`);
  t.equal(status.mode, 'dry-run', 'the old mode');
  t.same(
    status.results.map((r: { check: string }) => r.check),
    ['load'],
    'the old checks (disk not added)',
  );
  t.match(status.lifecycle, { reloads: { applied: 0, rejected: 1 }, remediators: 1 });
  t.equal((await fetch(`${a.url}/healthz`)).status, 200, 'the old listener answers');

  // Free the port: the same file now applies, and the listener moves.
  await new Promise((r) => busy.close(r));
  p.signal('SIGHUP');
  await p.waitLog(/^configuration reloaded$/);
  const moved = await getJson(`http://127.0.0.1:${busyPort}/status`);
  t.equal(moved.mode, 'off');
  await t.rejects(fetch(`${a.url}/healthz`, { signal: AbortSignal.timeout(2000) }), 'the old address is closed');
  t.equal((await p.stop()).code, 0);
  allJson(t, p);
});

t.test('SIGHUP with an unchanged config while PLEG is a problem: still a problem, same follower', async (t) => {
  const a = await agentDir(t);
  const log = join(a.dir, 'kubelet.log');
  writeFileSync(log, 'kubelet started\n');
  a.write({ ...a.config, checks: { ...(a.config.checks as object), pleg: { enabled: true, source: 'file', file: log, unit: 'nodemedic-test-no-such.service', minOccurrences: 2, window: '10m' } } });
  const p = a.spawn();
  await p.waitLog(/^nodemedic ready$/);
  appendFileSync(log, `${PLEG_LINE(1)}\n${PLEG_LINE(2)}\n${PLEG_LINE(3)}\n`);
  const pleg = async () => (await getJson(`${a.url}/status`)).results.find((r: { check: string }) => r.check === 'pleg');
  for (let i = 0; (await pleg())?.status !== 'problem'; i++) {
    if (i > 300) throw new Error(`pleg never became a problem:\n${p.dump()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const sweepsBefore = p.logs(/./).length;
  p.signal('SIGHUP');
  const reloaded = await p.waitLog(/^configuration reloaded$/);
  t.match(reloaded, { kept: ['pleg'], rebuilt: [], remediation: 'kept' }, 'the running check was kept');
  t.ok(sweepsBefore > 0);
  // Wait for a sweep that started after the reload, then judge it.
  const after = (await getJson(`${a.url}/status`)).lastSweep;
  for (let i = 0; (await getJson(`${a.url}/status`)).lastSweep === after; i++) {
    if (i > 300) throw new Error('no sweep after the reload');
    await new Promise((r) => setTimeout(r, 100));
  }
  t.match(await pleg(), { status: 'problem', reason: 'PLEGUnhealthy' }, 'still a problem after the reload');
  t.equal((await p.stop()).code, 0);
  allJson(t, p);
});

t.test('SIGHUP in the first moments of start does not kill the agent; the reload runs after the start', async (t) => {
  const a = await agentDir(t, { checks: { load: {} } });
  const p = a.spawn();
  const spawned = performance.now();
  // The moment the process catches SIGHUP; before it, the kernel's default (terminate) applies and
  // no program can help it. It must come before the program has loaded (~0.3 s on this machine).
  while (!catches(p.pid, 1, 'main.js')) {
    if (!p.alive) throw new Error(`exited before catching SIGHUP:\n${p.dump()}`);
    if (performance.now() - spawned > 20_000) throw new Error('SIGHUP never caught');
    await new Promise((r) => setImmediate(r));
  }
  const caughtAfter = performance.now() - spawned;
  p.signal('SIGHUP');
  t.comment(`log records seen when the first SIGHUP was sent: ${p.records.length} (0: the modules were still loading)`);
  // More of them while the program loads and starts.
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 20));
    p.signal('SIGHUP');
  }
  const ready = await p.waitLog(/^nodemedic ready$/);
  t.ok(p.alive, 'alive');
  t.comment(`SIGHUP caught ${Math.round(caughtAfter)} ms after spawn`);
  const firstLog = p.records[0]!;
  t.ok(firstLog, 'it logged');
  await p.waitLog(/^configuration reloaded$/);
  const readyAt = p.records.indexOf(ready);
  const reloadedAt = p.records.findIndex((r) => r.msg === 'configuration reloaded');
  t.ok(reloadedAt > readyAt, 'the reload ran after the start');
  t.ok(p.logs(/^configuration reloaded$/).length <= 2, 'six SIGHUPs during the start coalesce into at most two reloads');
  t.equal((await p.stop()).code, 0);
  allJson(t, p);
});

t.test('a client dribbling header bytes during SIGTERM does not keep the agent alive', async (t) => {
  const a = await agentDir(t, { checks: { load: {} } });
  const p = a.spawn();
  await p.waitLog(/^nodemedic ready$/);
  const sock = connect(a.port, '127.0.0.1');
  sock.on('error', () => undefined);
  await new Promise((r) => sock.once('connect', r));
  sock.write('GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  const dribble = setInterval(() => sock.write('a'), 100);
  t.teardown(() => {
    clearInterval(dribble);
    sock.destroy();
  });
  // An idle keep-alive connection too.
  const idle = connect(a.port, '127.0.0.1');
  idle.on('error', () => undefined);
  await new Promise((r) => idle.once('connect', r));
  idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((r) => idle.once('data', r));
  t.teardown(() => idle.destroy());
  await new Promise((r) => setTimeout(r, 300));
  const sent = performance.now();
  p.signal('SIGTERM');
  const { code, at } = await p.exited;
  t.equal(code, 0);
  t.ok(at - sent < 5000, `exited ${Math.round(at - sent)} ms after SIGTERM (limit 5 s)`);
  allJson(t, p);
});

t.test('/healthz does not flap with a 1 s schedule and checks that take 3 s; node-cron writes nothing', async (t) => {
  // A "dockerd" that accepts and never answers: the docker check takes its whole 3 s timeout every run.
  const sockPath = join((await agentDir(t)).dir, 'hung-docker.sock');
  const conns = new Set<import('node:net').Socket>();
  const hung = createServer((c) => {
    conns.add(c);
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => hung.listen(sockPath, r));
  t.teardown(() => {
    for (const c of conns) c.destroy();
    hung.close();
  });
  const a = await agentDir(t, { checks: { load: {}, docker: { enabled: true, socket: sockPath, timeout: '3s' } } });
  const p = a.spawn();
  await p.waitLog(/^nodemedic ready$/);
  const started = performance.now();
  let polls = 0;
  const bad: string[] = [];
  // 15 s of 1 s schedule: at least four sweeps, each ~3 s long.
  while (performance.now() - started < 15_000) {
    const r = await fetch(`${a.url}/healthz`, { signal: AbortSignal.timeout(5000) });
    polls++;
    if (r.status !== 200) bad.push(`${Math.round(performance.now() - started)} ms: ${r.status} ${await r.text()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  t.same(bad, [], `/healthz answered 200 to all ${polls} polls`);
  const status = await getJson(`${a.url}/status`);
  t.match(status.results.find((r: { check: string }) => r.check === 'docker'), { status: 'problem', reason: 'DockerHung' }, 'the slow check really ran to its timeout');
  t.equal((await p.stop()).code, 0);
  allJson(t, p);
  t.notMatch(p.stderr, /NODE-CRON/, 'no node-cron console output on stderr either');
});

t.test('an API server that never answers does not delay the listener', async (t) => {
  // Accepts connections and never answers: every API call waits for its timeout.
  const conns = new Set<import('node:net').Socket>();
  let total = 0;
  const hung = createServer((c) => {
    conns.add(c);
    total++;
    c.on('close', () => conns.delete(c));
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of conns) c.destroy();
    hung.close();
  });
  const a = await agentDir(t, { checks: { load: {} } });
  const kubeconfig = join(a.dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{ name: hung, cluster: { server: "http://127.0.0.1:' + (hung.address() as { port: number }).port + '", insecure-skip-tls-verify: true } }]',
      'users: [{ name: u, user: { token: t0ken } }]',
      'contexts: [{ name: hung, context: { cluster: hung, user: u } }]',
      'current-context: hung',
      '',
    ].join('\n'),
  );
  a.write({ ...a.config, kubernetes: { kubeconfig }, remediation: { mode: 'enforce' } });
  const p = a.spawn();
  const spawned = performance.now();
  let status = 0;
  while (status !== 200) {
    if (!p.alive) throw new Error(`agent exited:\n${p.dump()}`);
    if (performance.now() - spawned > 60_000) throw new Error(`not listening after 60 s:\n${p.dump()}`);
    status = await fetch(`${a.url}/healthz`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status,
      () => 0,
    );
    if (status !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  t.pass(`/healthz answered ${Math.round(performance.now() - spawned)} ms after spawn`);
  // Before: the listener opened only after the start's first API call (a leftover-cordon check) had timed out.
  t.notOk(total > 0 && conns.size === 0, 'no API call had timed out before the listener answered');
  while (conns.size === 0) {
    if (performance.now() - spawned > 90_000) throw new Error(`the agent never called the API server:\n${p.dump()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal((await fetch(`${a.url}/healthz`)).status, 200, '/healthz answers while an API call hangs');
  // Whether the start has finished by now is not the point (since the fleet work, post-boot recovery and
  // the cluster view no longer hold the start on the API): the listener answers while the API hangs.
  const st = await getJson(`${a.url}/status`);
  t.equal(st.node, 'lifecycle-node', '/status answers too');
  t.equal((await p.stop()).code, 0, 'and it stops cleanly while the API server hangs');
  allJson(t, p);
});
