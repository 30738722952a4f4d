/**
 * After the reboot: the new boot id (from an injected reader) leads to recovery, uncordon of our own
 * cordon only, Lease release; an administrator's cordon is never undone; no recovery in time leaves
 * the node cordoned with a condition and no second reboot. Node conditions follow the checks.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { systemClock } from '../platform/clock.js';
import { CORDON_TOKEN, CORDONED_BY } from '../remediations/kubernetes/cordon.js';
import { DrainRebootController } from '../remediations/kubernetes/rebooter.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { agentlet, result, sleep, startCluster, until, type Agentlet, type Cluster } from './fake-apiserver/harness.js';

const SELF = 'worker-1';
const healthy = () => [result('kubelet', 'ok'), result('pleg', 'ok'), result('docker', 'unknown', 'NotInstalled'), result('containerd', 'ok')];

async function rebooted(t: Tap.Test, opts: { adminCordon?: boolean; remediation?: Record<string, unknown> } = {}): Promise<{ c: Cluster; before: Agentlet; after: Agentlet }> {
  const c = await startCluster(t, { msPerGraceSecond: 10 });
  c.fake.addNode(makeNode({ name: SELF, unschedulable: !!opts.adminCordon }));
  c.fake.addNode(makeNode({ name: 'worker-2' }));
  c.fake.addPod(makePod({ name: 'web-0', node: SELF }));
  const before = agentlet(c, SELF, opts.remediation);
  const r = await before.controller.run({ episodeId: 'ep-1', reason: 'kubelet down', dryRun: false });
  t.equal(r.result, 'success', r.detail);
  await before.controller.stop();
  // The machine reboots: a new agent process with the same config and state dir, and a new boot id.
  const after = agentlet(c, SELF, opts.remediation);
  after.bootId.value = 'boot-after-reboot';
  t.teardown(() => after.controller.stop());
  return { c, before, after };
}

t.test('a new boot id: recovery, then uncordon and Lease release once checks are ok and the Node is Ready', async (t) => {
  const { c, after } = await rebooted(t);
  const lease = () => c.fake.leases.get('kube-system/nodemedic-reboot-0')!;
  // While the machine was down nobody renewed; the kubelet reports NotReady until it is back.
  c.fake.updateNode(SELF, (n) => (n.status.conditions[0].status = 'False'));
  await after.controller.onStartup();
  t.match(after.controller.status(), { plan: { phase: 'recovering', recovery: { bootId: 'boot-after-reboot' } } });
  t.equal(c.fake.events.at(-1)!.reason, 'NodemedicRebooted');
  t.equal(lease().spec.holderIdentity, SELF, 'the lease is still ours (renewed after the boot)');

  await after.controller.afterSweep(healthy());
  t.equal(c.fake.node(SELF).spec.unschedulable, true, 'checks ok but the Node is not Ready: still cordoned');
  t.equal(after.controller.status().plan && (after.controller.status().plan as { phase: string }).phase, 'recovering');

  c.fake.updateNode(SELF, (n) => (n.status.conditions[0].status = 'True'));
  // The agent's recovery timer notices without waiting for another sweep.
  await until(() => !c.fake.node(SELF).spec.unschedulable, 5000);
  await until(() => after.ends.length === 1, 2000);
  const node = c.fake.node(SELF);
  t.notOk(node.metadata.annotations?.[CORDONED_BY], 'our mark is gone');
  t.notOk(lease().spec.holderIdentity, 'lease released');
  t.notOk(existsSync(join(after.config.stateDir, 'drain-reboot.json')), 'plan removed');
  t.same(after.ends, [{ episodeId: 'ep-1', outcome: 'recovered', detail: `${SELF} recovered after the reboot (uncordoned ${SELF}, released the reboot lease)` }]);
  t.same(c.fake.events.slice(-3).map((e) => e.reason), ['NodemedicRebooted', 'NodemedicUncordon', 'NodemedicRecovered']);
  t.same(after.actions, [{ action: 'uncordon', result: 'success' }]);
  const cond = (type: string) => (c.fake.node(SELF).status.conditions as any[]).find((x) => x.type === type);
  await until(() => cond('RebootRequired')?.reason === 'Recovered', 2000);
  t.equal(cond('RebootRequired').status, 'False');
});

t.test('results from before the boot do not count as recovered', async (t) => {
  const { c, after } = await rebooted(t);
  await after.controller.onStartup();
  const stale = healthy().map((r) => ({ ...r, observedAt: new Date(Date.now() - 3600_000).toISOString() }));
  await after.controller.afterSweep(stale);
  await sleep(300);
  t.equal(c.fake.node(SELF).spec.unschedulable, true);
  await after.controller.afterSweep(healthy());
  await until(() => !c.fake.node(SELF).spec.unschedulable, 3000);
  t.pass('fresh ok results uncordon');
});

t.test('the same boot id after a restart: the reboot did not happen, roll back', async (t) => {
  const { c, after } = await rebooted(t);
  after.bootId.value = `boot-${SELF}-1`;
  await after.controller.onStartup();
  t.notOk(c.fake.node(SELF).spec.unschedulable, 'uncordoned');
  t.notOk(c.fake.leases.get('kube-system/nodemedic-reboot-0')!.spec.holderIdentity, 'lease released');
  t.equal(c.fake.events.at(-1)!.reason, 'NodemedicRollback');
  t.match(c.fake.events.at(-1)!.message, /the reboot did not happen/);
  t.equal(after.ends[0]?.outcome, 'rolled-back');
});

t.test("an administrator's cordon is never undone", async (t) => {
  t.test('cordoned before the drain-reboot: stays cordoned after recovery', async (t) => {
    const { c, after } = await rebooted(t, { adminCordon: true });
    t.notOk(c.fake.node(SELF).metadata.annotations?.[CORDONED_BY], 'we did not put our mark on an admin cordon');
    t.notOk(c.fake.events.some((e) => e.reason === 'NodemedicCordon'), 'and did not claim to cordon');
    await after.controller.onStartup();
    await after.controller.afterSweep(healthy());
    await until(() => after.ends.length === 1, 3000);
    t.equal(after.ends[0]!.outcome, 'recovered');
    t.match(after.ends[0]!.detail, /left worker-1 cordoned: it was cordoned by an administrator/);
    t.equal(c.fake.node(SELF).spec.unschedulable, true, 'still cordoned');
    t.notOk(c.fake.leases.get('kube-system/nodemedic-reboot-0')!.spec.holderIdentity, 'the lease is released all the same');
    t.notOk(c.fake.requests.some((r) => r.method === 'PATCH' && r.path === `/api/v1/nodes/${SELF}`), 'the node object was never patched');
  });
  t.test('cordoned before a drain that fails: the rollback leaves the cordon', async (t) => {
    const c = await startCluster(t);
    c.fake.addNode(makeNode({ name: SELF, unschedulable: true }));
    c.fake.addNode(makeNode({ name: 'worker-2' }));
    c.fake.addPod(makePod({ name: 'db', node: SELF, labels: { app: 'db' } }));
    c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];
    const a = agentlet(c, SELF, { drain: { timeout: '1s' } });
    t.teardown(() => a.controller.stop());
    const r = await a.controller.run({ episodeId: 'e', reason: 'x', dryRun: false });
    t.equal(r.result, 'failure');
    t.match(r.detail, /left worker-1 cordoned: it was cordoned by an administrator/);
    t.equal(c.fake.node(SELF).spec.unschedulable, true);
  });
  t.test('the administrator took over our cordon (removed our mark) during the reboot: stays cordoned', async (t) => {
    const { c, after } = await rebooted(t);
    c.fake.updateNode(SELF, (n) => {
      delete n.metadata.annotations[CORDON_TOKEN];
      delete n.metadata.annotations[CORDONED_BY];
    });
    await after.controller.onStartup();
    await after.controller.afterSweep(healthy());
    await until(() => after.ends.length === 1, 3000);
    t.match(after.ends[0]!.detail, /left worker-1 cordoned: its cordon mark is no longer ours/);
    t.equal(c.fake.node(SELF).spec.unschedulable, true);
  });
  t.test('a cordon by someone else racing ours: the conflict makes us look again and not claim it', async (t) => {
    const c = await startCluster(t);
    c.fake.addNode(makeNode({ name: SELF }));
    c.fake.addNode(makeNode({ name: 'worker-2' }));
    const a = agentlet(c, SELF);
    t.teardown(() => a.controller.stop());
    // Right before our cordon patch lands, an administrator cordons (a 409 for our stale resourceVersion).
    let raced = false;
    c.fake.inject = (method, path) => {
      if (!raced && method === 'PATCH' && path === `/api/v1/nodes/${SELF}`) {
        raced = true;
        c.fake.updateNode(SELF, (n) => (n.spec.unschedulable = true));
        return 409;
      }
      return undefined;
    };
    const r = await a.controller.run({ episodeId: 'e', reason: 'x', dryRun: false });
    t.equal(r.result, 'success', r.detail);
    t.notOk(c.fake.node(SELF).metadata.annotations?.[CORDONED_BY], 'the admin cordon carries no nodemedic mark');
    const plan = a.controller.status().plan as { cordon: { ours: boolean } };
    t.equal(plan.cordon.ours, false, 'the plan knows the cordon is not ours');
  });
});

t.test('not healthy within recovery.timeout: stays cordoned, a condition and an event say why, no second reboot', async (t) => {
  const { c, after } = await rebooted(t, { remediation: { recovery: { timeout: '1s' } } });
  await after.controller.onStartup();
  const sick = [result('kubelet', 'problem', 'KubeletDown'), result('pleg', 'ok'), result('containerd', 'ok')];
  await after.controller.afterSweep(sick);
  await until(() => after.ends.length === 1, 5000);
  await after.controller.afterSweep(sick);
  t.equal(after.ends[0]!.outcome, 'recovery-failed');
  t.equal(c.fake.node(SELF).spec.unschedulable, true, 'stays cordoned');
  t.equal(c.fake.node(SELF).metadata.annotations[CORDONED_BY], `agent/${SELF}`, 'with its owner mark');
  const ev = c.fake.events.find((e) => e.reason === 'NodemedicRecoveryFailed')!;
  t.equal(ev.type, 'Warning');
  t.match(ev.message, /not healthy for 1s of judged time after the reboot \(kubelet: KubeletDown\); it stays cordoned and no second reboot/);
  const conds = c.fake.node(SELF).status.conditions as any[];
  t.match(conds.find((x) => x.type === 'RebootRequired'), { status: 'True', reason: 'RecoveryFailed', message: /kubelet: KubeletDown/ });
  t.match(conds.find((x) => x.type === 'KubeletUnhealthy'), { status: 'True', reason: 'KubeletDown' });
  t.notOk(c.fake.leases.get('kube-system/nodemedic-reboot-0')!.spec.holderIdentity, 'the lease is released: the fleet is not blocked');
  const again = await after.controller.requestDrainReboot({ episodeId: 'ep-2', reason: 'still broken', dryRun: false });
  t.equal(again.result, 'skipped');
  t.match(again.detail, /did not recover.*no second reboot/);
  t.equal(after.host.reboots, 0);
});

t.test('node conditions: NPD names, merged on type, transition time kept while the status holds', async (t) => {
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: SELF }));
  const a = agentlet(c, SELF);
  t.teardown(() => a.controller.stop());
  const cond = (type: string) => (c.fake.node(SELF).status.conditions as any[]).find((x) => x.type === type);
  await a.controller.afterSweep(healthy());
  t.same((c.fake.node(SELF).status.conditions as any[]).map((x) => x.type), ['Ready', 'KubeletUnhealthy', 'ContainerRuntimeUnhealthy', 'PLEGUnhealthy', 'RebootRequired']);
  t.match(cond('KubeletUnhealthy'), { status: 'False', reason: 'KubeletIsHealthy' });
  t.match(cond('ContainerRuntimeUnhealthy'), { status: 'False', reason: 'ContainerRuntimeIsHealthy' }, 'one runtime ok, the other not installed');
  t.match(cond('RebootRequired'), { status: 'False', reason: 'NoRebootRequired' });
  const patches = () => c.fake.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith('/status')).length;
  const n = patches();
  await a.controller.afterSweep(healthy());
  t.equal(patches(), n, 'nothing changed: no patch before the heartbeat is due');
  const firstTransition = cond('PLEGUnhealthy').lastTransitionTime;
  await sleep(1100);
  await a.controller.afterSweep([result('kubelet', 'ok'), result('pleg', 'problem', 'PLEGUnhealthy'), result('containerd', 'problem', 'ContainerdHung')]);
  t.match(cond('PLEGUnhealthy'), { status: 'True', reason: 'PLEGUnhealthy', message: /pleg is problem/ });
  t.match(cond('ContainerRuntimeUnhealthy'), { status: 'True', reason: 'ContainerdHung' });
  t.not(cond('PLEGUnhealthy').lastTransitionTime, firstTransition, 'a status change moves the transition time');
  const kubeletTransition = cond('KubeletUnhealthy').lastTransitionTime;
  await sleep(1100);
  await a.controller.afterSweep([result('kubelet', 'unknown', 'CheckTimeout'), result('pleg', 'problem', 'PLEGUnhealthy')]);
  t.match(cond('KubeletUnhealthy'), { status: 'Unknown', reason: 'CheckTimeout' });
  t.not(cond('KubeletUnhealthy').lastTransitionTime, kubeletTransition);
  t.equal(cond('Ready').status, 'True', "the kubelet's Ready condition is untouched");
  t.ok(c.fake.requests.filter((r) => r.path.endsWith('/status')).every((r) => r.contentType === 'application/strategic-merge-patch+json' || r.method === 'GET'));
  // A refused drain-reboot shows in RebootRequired.
  c.fake.addNode(makeNode({ name: 'worker-2', ready: false }));
  const r = await a.controller.run({ episodeId: 'e', reason: 'PLEG', dryRun: false });
  t.equal(r.refusedBy?.guard, 'storm');
  await a.controller.afterSweep([result('kubelet', 'ok'), result('pleg', 'problem', 'PLEGUnhealthy')]);
  t.match(cond('RebootRequired'), { status: 'True', reason: 'RebootRefused', message: /storm guard/ });
  await a.controller.afterSweep([result('kubelet', 'ok'), result('pleg', 'ok')]);
  t.match(cond('RebootRequired'), { status: 'False', reason: 'NoRebootRequired' }, 'cleared when the problem is gone');
});

t.test('without Kubernetes access: a request only, or a reboot without drain when configured', async (t) => {
  const c = await startCluster(t);
  const mk = (rebootWithoutDrain: boolean) => {
    const a = agentlet(c, 'lonely', { rebootWithoutDrain });
    // The same controller, without Kubernetes access.
    const ctl = new DrainRebootController({
      config: a.config,
      host: a.host,
      logger: pino({ level: 'silent' }),
      clock: systemClock,
      recordAction: (action, res) => void a.actions.push({ action, result: res }),
      kube: undefined,
      readBootId: async () => a.bootId.value,
      tuning: { recoveryPollMs: 100 },
      onEpisodeEnd: (e) => void a.ends.push(e),
    });
    return { ...a, controller: ctl };
  };
  const off = mk(false);
  const r1 = await off.controller.requestDrainReboot({ episodeId: 'e1', reason: 'x', dryRun: false });
  t.equal(r1.result, 'skipped');
  t.match(r1.detail, /reboot requested, not performed: there is no Kubernetes access.*remediation.rebootWithoutDrain: true/);
  t.equal(off.host.reboots, 0);
  const on = mk(true);
  const r2 = await on.controller.requestDrainReboot({ episodeId: 'e2', reason: 'x', dryRun: false });
  t.equal(r2.result, 'success', r2.detail);
  t.equal(on.host.reboots, 1);
  await on.controller.stop();
  const back = mk(true);
  back.bootId.value = 'new-boot';
  t.teardown(() => back.controller.stop());
  await back.controller.onStartup();
  await back.controller.afterSweep(healthy());
  await until(() => back.ends.length === 1, 3000);
  t.equal(back.ends[0]!.outcome, 'recovered');
  t.equal(c.fake.requests.length, 0, 'and never a word to the API server');
});
