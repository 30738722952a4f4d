/**
 * Issue 11, the races and leftovers, with real controllers against the fake API server:
 * - guards after the slot: two agents holding two slots under a storm limit of one never both go out;
 * - a cordon PATCH the server applies after the client gave up ends uncordoned (the orphan is ours by
 *   its mark and is uncordoned once the node's checks are ok), and a Node left with this agent's mark
 *   and no plan is uncordoned on start;
 * - runtime restarts honour the storm guard when the agent has Kubernetes access.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { resolveConfig } from '../agent/config.js';
import { CORDON_TOKEN, CORDONED_BY } from '../remediations/kubernetes/cordon.js';
import { createRemediator } from '../remediations/index.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { delayNext } from './fake-apiserver/faults.js';
import { agentlet, result, sleep, startCluster, until } from './fake-apiserver/harness.js';
import { cordonTimeline, maxCordoned } from './harness/fake-host.js';

const SELF = 'worker-1';
const healthy = () => [result('kubelet', 'ok'), result('pleg', 'ok'), result('docker', 'unknown', 'NotInstalled'), result('containerd', 'ok')];

t.test('two agents racing for two slots with a storm limit of one: never more than one node out', async (t) => {
  for (let round = 0; round < 2; round++) {
    const c = await startCluster(t, { msPerGraceSecond: 10 });
    const names = ['worker-1', 'worker-2', 'worker-3', 'worker-4'];
    for (const n of names) {
      c.fake.addNode(makeNode({ name: n }));
      c.fake.addPod(makePod({ name: `web-${n}`, node: n, terminationGracePeriodSeconds: 1 }));
    }
    // Two slots, but at most 0 other nodes out besides the one that goes: one node out at a time.
    const racers = names.slice(0, 2).map((n) => agentlet(c, n, { maxConcurrentReboots: 2, maxUnhealthyNodes: 0 }));
    t.teardown(() => Promise.all(racers.map((a) => a.controller.stop())));
    const outcomes: string[][] = [[], []];
    let someoneWent = false;
    await Promise.all(
      racers.map(async (a, i) => {
        for (let attempt = 0; attempt < 40 && !someoneWent; attempt++) {
          const r = await a.controller.run({ episodeId: `r${round}-${i}-${attempt}`, reason: 'race', dryRun: false });
          outcomes[i]!.push(r.result === 'success' ? 'success' : `${r.result}:${r.refusedBy?.guard ?? '?'}`);
          if (r.result === 'success') someoneWent = true;
          else await sleep(20 + Math.random() * 200);
        }
      }),
    );
    t.comment(`round ${round}: ${outcomes.map((o) => o.join(',')).join(' | ')}`);
    const most = maxCordoned(cordonTimeline(c.fake.requests));
    t.ok(most.max <= 1, `round ${round}: never more than one node cordoned (${most.nodes.join(', ')})`);
    t.equal(racers.reduce((n, a) => n + a.host.reboots, 0), 1, `round ${round}: exactly one reboot`);
    // The one that went out holds its slot across the reboot; the other gave its slot back.
    const holders = [...c.fake.leases.values()].map((l) => l.spec.holderIdentity).filter(Boolean);
    t.equal(holders.length, 1, `round ${round}: one slot held (${holders.join(', ')})`);
    t.ok(outcomes.flat().filter((o) => o !== 'success').every((o) => /^skipped:(storm|lease)$/.test(o)), `round ${round}: every refusal is the storm guard or a busy slot`);
  }
});

t.test('a cordon PATCH the server applies after the client gave up: the node ends uncordoned', async (t) => {
  const c = await startCluster(t, { msPerGraceSecond: 10 });
  c.fake.addNode(makeNode({ name: SELF }));
  c.fake.addNode(makeNode({ name: 'worker-2' }));
  const a = agentlet(c, SELF, {}, { orphanCheckMs: 0 });
  t.teardown(() => a.controller.stop());
  // The client gives up after 3 s (startCluster's request timeout); the server applies the cordon at 4.5 s.
  const applied = delayNext(c.fake, 'PATCH', new RegExp(`^/api/v1/nodes/${SELF}$`), 4500);
  const r = await a.controller.run({ episodeId: 'late', reason: 'kubelet down', dryRun: false });
  t.equal(r.result, 'failure', r.detail);
  t.match(r.detail, /cordon failed: .*Timeout.*rolled back/);
  t.equal(a.host.reboots, 0, 'no reboot');
  await applied;
  await until(() => c.fake.node(SELF).spec.unschedulable === true, 5000);
  t.equal(c.fake.node(SELF).metadata.annotations[CORDONED_BY], `agent/${SELF}`, 'the late cordon carries our mark; no plan, no slot');
  t.notOk(existsSync(join(a.config.stateDir, 'drain-reboot.json')), 'no plan');
  // The node's checks are bad: the orphan is left as it is (the ladder's retry will adopt it).
  await a.controller.afterSweep([result('kubelet', 'problem', 'KubeletDown')]);
  t.equal(c.fake.node(SELF).spec.unschedulable, true, 'not uncordoned while the checks are bad');
  // The checks are ok (say, the kubelet recovered by itself): ours by the mark, so uncordoned.
  await a.controller.afterSweep(healthy());
  await until(() => !c.fake.node(SELF).spec.unschedulable, 5000);
  t.notOk(c.fake.node(SELF).metadata.annotations?.[CORDONED_BY], 'the mark is gone too');
  const timeline = cordonTimeline(c.fake.requests).filter((x) => x.node === SELF);
  t.same(timeline.map((x) => x.cordoned), [true, false], 'by the request log: the late cordon, then our uncordon');
  t.ok([...c.fake.leases.values()].every((l) => !l.spec.holderIdentity), 'no slot held');
});

t.test("a Node carrying this agent's mark and no plan is uncordoned on start once the checks are ok", async (t) => {
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: SELF, unschedulable: true }));
  c.fake.updateNode(SELF, (n) => (n.metadata.annotations = { [CORDONED_BY]: `agent/${SELF}`, [CORDON_TOKEN]: 'lost-with-the-state' }));
  c.fake.addNode(makeNode({ name: 'worker-2', unschedulable: true }));
  c.fake.updateNode('worker-2', (n) => (n.metadata.annotations = { [CORDONED_BY]: 'agent/worker-2', [CORDON_TOKEN]: 'x' }));
  const a = agentlet(c, SELF, {}, { orphanCheckMs: 0 });
  t.teardown(() => a.controller.stop());
  await a.controller.onStartup();
  await a.controller.afterSweep(healthy());
  await until(() => !c.fake.node(SELF).spec.unschedulable, 5000);
  t.notOk(c.fake.node(SELF).metadata.annotations?.[CORDONED_BY], 'mark removed');
  t.equal(c.fake.node('worker-2').spec.unschedulable, true, "another node's agent mark is not ours: untouched");
  t.ok(c.fake.events.some((e) => e.reason === 'NodemedicUncordon' && /no drain-reboot plan/.test(e.message)), 'an event says why');
});

t.test('runtime restarts honour the storm guard when the agent has Kubernetes access', async (t) => {
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: SELF }));
  for (let i = 2; i <= 10; i++) c.fake.addNode(makeNode({ name: `worker-${i}`, ready: i > 4 }));
  const a = agentlet(c, SELF, { maxUnhealthyNodes: '10%' });
  t.teardown(() => a.controller.stop());
  const gate = await a.controller.runtimeRestartAllowed();
  t.notOk(gate.ok, '3 of 10 NotReady: no runtime restart');
  t.match(gate.detail, /storm guard: 3 of the 9 other nodes/);
  // Through the ladder: the restart step is refused (retried later), nothing is restarted, nothing spent.
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-gate-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = resolveConfig({
    nodeName: SELF,
    stateDir: dir,
    remediation: { mode: 'enforce', grace: '0s', settle: '1s', steps: ['restart-runtime', 'drain-reboot'], allowRuntimeRestartWithoutLiveRestore: true, retryBackoff: { initial: '1h', max: '2h' } },
  });
  // systemd, as the recording host answers it: the unit is there and has been up for an hour.
  a.host.answer = (argv) =>
    argv.includes('show') ? { exitCode: 0, stdout: 'Id=containerd.service\nLoadState=loaded\nActiveState=active\nSubState=running\n' } : { exitCode: 0 };
  const rem = createRemediator({ config, host: a.host, logger: pino({ level: 'silent' }), recordAction: () => {}, drainRebooter: a.controller });
  await rem.start();
  t.teardown(() => rem.stop());
  const old = new Date(Date.now() - 60_000).toISOString();
  const sick = [
    { ...result('containerd', 'problem', 'ContainerdHung'), observedAt: old },
    { ...result('docker', 'unknown', 'NotInstalled'), observedAt: old },
    { ...result('kubelet', 'ok'), observedAt: old },
  ];
  await rem.afterSweep(sick);
  await until(() => (rem.status().recentActions as { result: string }[])[0]?.result === 'skipped', 10_000);
  const s = rem.status() as { recentActions: { action: string; detail: string }[]; episode: { phase: string; step: string }; budgets: { restartsPerHour: { used: Record<string, number> } } };
  t.match(s.recentActions[0], { action: 'restart_containerd', detail: /not restarting containerd: storm guard/ });
  t.match(s.episode, { phase: 'retrying', step: 'restart-runtime' }, 'the step waits to be retried; the ladder does not move on to the reboot');
  t.same(s.budgets.restartsPerHour.used, {}, 'the refused restart spent nothing');
  t.notOk(a.host.commands.some((x) => x.argv.includes('restart')), 'systemctl restart never ran');
});
