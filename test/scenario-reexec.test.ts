// Issue 15, Must show #2: the ladder's `reexec-systemd` step against a real systemd (PID 1 of a
// namespace) whose bus does not answer, with the real agent (`nodemedic run`) pointed at it.
//
// How the hang is modelled, and why not with SIGSTOP: a SIGSTOPped PID 1 processes nothing, neither
// `systemctl daemon-reexec` nor SIGTERM, so no remedy could work and the test would only show the
// agent waiting. On a node hit by the sd-bus cookie overflow (systemd#11809, runc#1959) PID 1 still
// runs and handles signals; what breaks is its bus: every systemctl call connects and then never gets
// an answer ("Connection timed out"). Here a unit inside the namespace takes over the path of
// systemd's private bus socket, /run/systemd/private (what systemctl uses as root), with a listener
// that accepts connections and never answers. Every `systemctl` then hangs exactly as on such a node,
// while PID 1 itself is healthy and handles signals. A re-executed systemd recreates its private
// socket (it unlinks the path and binds it again), so a reexec cures it, as it cures the real bug;
// a kubelet or runtime restart cannot, since they cannot even be asked for.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { waitFor } from './harness/systemd-ns.js';
import { Scenario, scenarioAvailable, sleep } from './helpers/scenario.js';
import { nodeWithReady, startFakeCluster } from './fake-apiserver/pod-states.js';

/** The unit that jams PID 1's private bus socket: accepts connections, never reads or answers. */
const JAM = `
import { createServer } from 'node:net';
import { renameSync } from 'node:fs';
renameSync('/run/systemd/private', '/run/systemd/private.jammed');
const held = [];
createServer((c) => { c.pause(); held.push(c); }).listen('/run/systemd/private', () => console.log('bus jammed'));
`;

async function jammedScenario(t: Test, name: string, mode: 'enforce' | 'dry-run', kubeconfig?: string): Promise<Scenario> {
  const dir = await mkdtemp(join(tmpdir(), 'nm-busjam-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'jam.mjs'), JAM);
  const s = await Scenario.start(t, {
    name,
    remediation: { mode, grace: '1s', settle: '2s', commandTimeout: '30s' },
    checks: { systemd: { enabled: true, timeout: '2s', failures: 2, procPath: '/proc' } },
    ...(kubeconfig ? { kubeconfig } : {}),
  });
  await s.ns.addUnit('bus-jam.service', `[Service]\nExecStart=${process.execPath} ${join(dir, 'jam.mjs')}\n`);
  return s;
}

async function jam(t: Test, s: Scenario): Promise<void> {
  t.equal((await s.ns.systemctl('start', '--no-block', 'bus-jam.service')).exitCode, 0);
  // From now on no systemctl answers (the harness's own included) until PID 1 re-executes.
  await waitFor(async () => (await s.ns.journalctl('-o', 'cat', '-u', 'bus-jam.service')).stdout.includes('bus jammed'), { timeoutMs: 15_000, what: 'the bus jammed' });
}

t.test('enforce: PID 1 does not answer -> reexec-systemd (SIGTERM through the prefix), Reexecuting., kubelet untouched, recovered', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  // With Kubernetes access (a fake API server): the condition and the Event name the reexec.
  const { fake, kubeconfig } = await startFakeCluster(t);
  fake.addNode(nodeWithReady('scenario-reexec', { now: Date.now(), status: 'True', sinceAgoMs: 3 * 3600_000 }));
  const s = await jammedScenario(t, 'reexec', 'enforce', kubeconfig);
  const kubeletPid = await s.mainPid('kubelet');
  const agent = await s.startAgent();
  await agent.waitStatus((st) => st.results.find((r) => r.check === 'systemd')?.status === 'ok', 'systemd ok before the fault');
  await jam(t, s);

  const ep = await agent.waitStatus((st) => st.episode?.state === 'recovered' && st.episode, 'the episode to end recovered', 90_000);
  t.match(ep, { trigger: 'systemd', endReason: /systemd ok after reexec-systemd/ });
  const st = await agent.status();
  t.same(
    st.recentActions.map((a) => `${a.step}:${a.action}:${a.result}`),
    ['reexec-systemd:reexec_systemd:success'],
    'one action: the reexec (no kubelet or runtime restart, no reboot)',
  );
  t.match(st.recentActions[0]!.detail, /systemd re-executed by kill -s TERM 1 \(systemctl daemon-reexec: no answer\).*PID 1 answers again.*the journal says "Reexecuting\."/);
  t.equal(st.rebootRequested, false);
  t.match(st.results.find((r) => r.check === 'systemd'), { status: 'ok', reason: 'SystemdResponsive' });

  const pid1 = await s.ns.journalctl('-o', 'cat', '_PID=1');
  // A sender inside the namespace has a PID there; one outside it (the agent's own process) would be PID 0.
  // `(n/a)`: kill(1) had already exited when systemd looked up its name.
  t.match(pid1.stdout, /Received SIGTERM from PID [1-9]\d* \((kill|n\/a)\)/, 'PID 1 got SIGTERM from a process inside the namespace (kill behind the prefix)');
  t.match(pid1.stdout, /^Reexecuting\.$/m, 'the namespace journal shows "Reexecuting."');
  t.equal(await s.mainPid('kubelet'), kubeletPid, "kubelet's main PID is unchanged");
  t.equal(await s.restarts('kubelet'), 0, 'kubelet was not restarted');
  t.equal(await s.stoppings('kubelet'), 0);
  t.equal((await s.kubelet.starts()).length, 1, 'the fake kubelet started once');
  const lines = agent.lines(/^reexec-systemd: /).filter((l) => l.episodeId === ep.id);
  t.ok(lines.length >= 2, 'the decision and its outcome are logged with the episode id');

  // On the Node: SystemdUnresponsive went True, then back to False; an Event names the reexec and its bundle.
  const written = fake.requests
    .filter((r) => r.method === 'PATCH' && r.path.endsWith('/nodes/scenario-reexec/status'))
    .flatMap((r) => ((r.body as { status?: { conditions?: { type: string; status: string; reason: string }[] } })?.status?.conditions ?? []).filter((c) => c.type === 'SystemdUnresponsive'))
    .map((c) => `${c.status}/${c.reason}`);
  t.ok(written.includes('True/SystemdUnresponsive'), `SystemdUnresponsive True was published (${written.join(' ')})`);
  await waitFor(
    () => {
      const c = (fake.nodes.get('scenario-reexec') as { status?: { conditions?: { type: string; status: string; reason: string }[] } })?.status?.conditions?.find((x) => x.type === 'SystemdUnresponsive');
      return c?.status === 'False' && c.reason === 'SystemdIsResponsive';
    },
    { timeoutMs: 30_000, what: 'SystemdUnresponsive False on the Node after the reexec' },
  );
  const told = fake.events.filter((e) => e.reason === 'NodemedicReexec') as { message: string; involvedObject: { name: string } }[];
  t.equal(told.length, 1, 'one NodemedicReexec Event');
  t.match(told[0], { involvedObject: { name: 'scenario-reexec' }, message: /^systemd \(PID 1\) re-executed: .*Reexecuting.*\(evidence: .*reexec-systemd\.tar\.gz\)$/ });
});

t.test('dry-run: the same episode changes nothing and reports the step', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const s = await jammedScenario(t, 'reexec-dry', 'dry-run');
  const kubeletPid = await s.mainPid('kubelet');
  const agent = await s.startAgent();
  await agent.waitStatus((st) => st.results.find((r) => r.check === 'systemd')?.status === 'ok', 'systemd ok before the fault');
  await jam(t, s);

  // Its outcome, not the intent (in_progress while the evidence bundle is collected).
  const action = await agent.waitStatus((st) => st.recentActions.find((a) => a.step === 'reexec-systemd' && a.result !== 'in_progress'), 'the reexec-systemd step reported', 60_000);
  t.match(action, { action: 'reexec_systemd', mode: 'dry-run', result: 'dry_run', detail: /would run systemctl daemon-reexec/ });
  // Past settle: the dry run changed nothing, so PID 1 still does not answer.
  await sleep(4000);
  const st = await agent.status();
  t.match(st.results.find((r) => r.check === 'systemd'), { status: 'problem', reason: 'SystemdUnresponsive' });
  t.notOk(st.recentActions.some((a) => a.mode === 'enforce' || a.result === 'success'), 'nothing was carried out');
  t.notOk(st.recentActions.some((a) => /restart/.test(String(a.action))), 'no kubelet or runtime restart either');
  // The journal is read without PID 1 (journalctl reads the files), so it can be asked during the jam.
  const pid1 = await s.ns.journalctl('-o', 'cat', '_PID=1');
  t.notMatch(pid1.stdout, /Reexecuting\./, 'systemd was not re-executed');
  t.notMatch(pid1.stdout, /Received SIGTERM/, 'PID 1 got no signal');
  const alive = await s.ns.journalctl('-o', 'cat', '-u', 'kubelet.service');
  t.notMatch(alive.stdout, /Stopping|Stopped/, 'kubelet was not stopped');
  t.same((await s.kubelet.starts()).map((x) => x.pid), [kubeletPid], 'the fake kubelet started once and is the same process');
});
