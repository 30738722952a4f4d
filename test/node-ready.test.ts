/**
 * The `node-ready` check against the fake API server (real client-node, real kubeconfig), time from a
 * ManualClock; and the ladder's decision fed with its results: an unreachable control plane never
 * starts an episode, a node really NotReady does. The check follows the Node by watch: after changing
 * it, a test waits until the check's cache has caught up (`caughtUp`) before running the check.
 */
import { pino } from 'pino';
import t from 'tap';
import { ManualClock } from '../platform/clock.js';
import { resolveConfig } from '../agent/config.js';
import { RealHost } from '../platform/host.js';
import { nodeReadyCheck, type NodeReadyOptions } from '../checks/node-ready.js';
import { stuckPodsCheck } from '../checks/stuck-pods.js';
import type { CheckResult, Finding } from '../checks/types.js';
import { decide, emptyState } from '../remediations/decide.js';
import { ladderPolicy } from '../remediations/index.js';
import { lazyKubeAccess } from '../platform/kube-client.js';
import { nodeWithReady, startFakeCluster, terminatingPod } from './fake-apiserver/pod-states.js';
import { until } from './fake-apiserver/harness.js';
import type { FakeApiServer } from './fake-apiserver/server.js';
import { caughtUp, watchesLost } from './helpers/cluster-view.js';

const NODE = 'worker-7';
const T0 = Date.parse('2026-11-27T10:00:00Z');
const MIN = 60_000;

async function setup(t: Tap.Test) {
  const { fake, kubeconfig } = await startFakeCluster(t);
  const clock = new ManualClock(T0);
  const host = new RealHost({ clock });
  const kube = lazyKubeAccess(kubeconfig, { requestTimeoutMs: 5000 });
  const deps = { host, logger: pino({ level: 'silent' }), nodeName: NODE, kube };
  const check = (opts: Partial<NodeReadyOptions> = {}) => nodeReadyCheck.create({ ...nodeReadyCheck.defaults, ...opts }, deps);
  const fresh = check();
  // One instance across runs, as the agent keeps it (it remembers when it first saw NotReady).
  const run = (): Promise<Finding> => fresh.run(new AbortController().signal);
  return { fake, clock, deps, check, run, kubeconfig };
}

async function setNode(fake: FakeApiServer, node: ReturnType<typeof nodeWithReady>): Promise<void> {
  if (fake.nodes.has(node.metadata.name)) fake.updateNode(node.metadata.name, (n) => (n.status = node.status));
  else fake.addNode(node);
  await caughtUp(fake);
}

t.test('Ready True: ok, with the pressure conditions in the evidence', async (t) => {
  const { fake, run } = await setup(t);
  await setNode(fake, nodeWithReady(NODE, { now: T0, status: 'True', sinceAgoMs: 3 * 3600_000 }));
  const f = await run();
  t.match(f, { status: 'ok', reason: 'NodeReady', message: 'node worker-7 is Ready' });
  t.match(f.evidence, {
    node: NODE,
    ready: { status: 'True', reason: 'KubeletReady' },
    conditions: {
      MemoryPressure: { status: 'False', reason: 'KubeletHasSufficientMemory' },
      DiskPressure: { status: 'False', reason: 'KubeletHasNoDiskPressure' },
      PIDPressure: { status: 'False', reason: 'KubeletHasSufficientPID' },
      NetworkUnavailable: { status: 'False', reason: 'RouteCreated' },
    },
  });
  await setNode(fake, nodeWithReady(NODE, { now: T0, status: 'True', sinceAgoMs: 3 * 3600_000, pressure: { DiskPressure: true } }));
  t.match(await run(), { status: 'ok', message: 'node worker-7 is Ready; also DiskPressure', evidence: { conditions: { DiskPressure: { status: 'True', reason: 'KubeletHasDiskPressure' } } } });
});

t.test('Ready False (the kubelet says why) is a problem only after notReadyFor', async (t) => {
  const { fake, clock, run, check } = await setup(t);
  await setNode(fake, nodeWithReady(NODE, { now: T0, status: 'False', sinceAgoMs: 0, pressure: { PIDPressure: true } }));
  clock.set(T0 + 59_000);
  t.match(await run(), { status: 'ok', reason: 'NotReadyWithinGrace', message: /Ready is False for 59s \(KubeletNotReady: PLEG is not healthy: .*\); also PIDPressure; a problem once it lasts 1m/ });
  clock.set(T0 + MIN);
  const f = await run();
  t.match(f, {
    status: 'problem',
    reason: 'NodeNotReady',
    message: /^node worker-7: Ready is False for 1m \(KubeletNotReady: PLEG is not healthy: pleg was last seen active 3m25.3s ago; threshold is 3m0s\); also PIDPressure; runbook: restart kubelet/,
    evidence: { ready: { status: 'False', reason: 'KubeletNotReady' }, notReadySince: new Date(T0).toISOString(), conditions: { PIDPressure: { status: 'True' } } },
  });
  t.match(await check({ notReadyFor: '5m' }).run(new AbortController().signal), { status: 'ok', reason: 'NotReadyWithinGrace' }, 'notReadyFor is configurable');

  // Ready again: ok at once.
  await setNode(fake, nodeWithReady(NODE, { now: T0 + MIN, status: 'True', sinceAgoMs: 0 }));
  t.match(await run(), { status: 'ok', reason: 'NodeReady' });
});

t.test('Ready Unknown (the kubelet stopped posting status) likewise; an old transition is a problem at once', async (t) => {
  const { fake, run } = await setup(t);
  await setNode(fake, nodeWithReady(NODE, { now: T0, status: 'Unknown', sinceAgoMs: 10 * MIN }));
  const f = await run();
  t.match(f, { status: 'problem', reason: 'NodeNotReady', message: /Ready is Unknown for 10m \(NodeStatusUnknown: Kubelet stopped posting node status\.\)/ });
  t.match(f.evidence, { conditions: { MemoryPressure: { status: 'Unknown', reason: 'NodeStatusUnknown' } } });
});

t.test('a Ready condition without lastTransitionTime counts from when this agent first saw it', async (t) => {
  const { fake, clock, run } = await setup(t);
  const node = nodeWithReady(NODE, { now: T0, status: 'False', sinceAgoMs: 0 });
  delete node.status.conditions.find((c: { type: string }) => c.type === 'Ready').lastTransitionTime;
  await setNode(fake, node);
  t.match(await run(), { status: 'ok', reason: 'NotReadyWithinGrace' });
  clock.advance(MIN);
  t.match(await run(), { status: 'problem', reason: 'NodeNotReady' });
});

t.test('no such node, no Ready condition: unknown', async (t) => {
  const { fake, run } = await setup(t);
  t.match(await run(), { status: 'unknown', reason: 'NodeNotFound', message: /no Node named worker-7/ });
  const node = nodeWithReady(NODE, { now: T0, status: 'True', sinceAgoMs: 0 });
  node.status.conditions = [];
  await setNode(fake, node);
  t.match(await run(), { status: 'unknown', reason: 'NoReadyCondition' });
});

t.test('a control-plane outage is unknown, never problem: 503, no answer (own timeout), refused', async (t) => {
  const { fake, run, check } = await setup(t);
  await setNode(fake, nodeWithReady(NODE, { now: T0, status: 'Unknown', sinceAgoMs: 10 * MIN }));
  t.match(await run(), { status: 'problem' }, 'with the API up, the node is NotReady');
  // An API server that goes down drops its connections, watches included; reconnecting gets 503.
  fake.fault = 'unavailable';
  t.equal(fake.watches.closeAll(), 1, "the check's watch was open");
  await watchesLost(fake);
  t.match(await run(), { status: 'unknown', reason: 'ApiUnavailable', message: /get node worker-7: .*503.*says nothing about this node/ });
  fake.fault = 'hang';
  const t0 = performance.now();
  const f = await check({ timeout: '1s' }).run(new AbortController().signal);
  const ms = performance.now() - t0;
  t.match(f, { status: 'unknown', reason: 'ApiTimeout' });
  t.ok(ms >= 900 && ms < 4000, `the check gave up on its own after ${Math.round(ms)} ms`);
  fake.fault = 'none';
  fake.inject = () => 403;
  // The request the stuck server held ends at the client's own timeout; then a run asks again.
  t.match(await until(async () => { const f = await run(); return f.reason !== 'ApiTimeout' && f; }, 15_000), { status: 'unknown', reason: 'ApiAccessDenied', message: /RBAC/ });
  fake.inject = undefined;
  await fake.stop();
  t.match(await run(), { status: 'unknown', reason: 'ApiUnreachable' });
});

t.test('the scheduler aborting a run ends it at once as unknown', async (t) => {
  const { fake, check } = await setup(t);
  await setNode(fake, nodeWithReady(NODE, { now: T0, status: 'True', sinceAgoMs: 0 }));
  fake.fault = 'hang';
  const ac = new AbortController();
  const p = check({ timeout: '30s' }).run(ac.signal);
  setTimeout(() => ac.abort(), 300);
  const t0 = performance.now();
  t.match(await p, { status: 'unknown', reason: 'ApiTimeout' });
  t.ok(performance.now() - t0 < 3000, "returned soon after the abort");
});

t.test('without Kubernetes access: unknown NoKubernetesAccess', async (t) => {
  const deps = { host: new RealHost({ clock: new ManualClock(T0) }), logger: pino({ level: 'silent' }), nodeName: NODE };
  t.match(await nodeReadyCheck.create(nodeReadyCheck.defaults, deps).run(new AbortController().signal), { status: 'unknown', reason: 'NoKubernetesAccess' });
  const kube = lazyKubeAccess('', { env: {} });
  t.match(await nodeReadyCheck.create(nodeReadyCheck.defaults, { ...deps, kube }).run(new AbortController().signal), { status: 'unknown', reason: 'NoKubernetesAccess' });
});

/**
 * The ladder's own decision function, fed with these checks' real results over an hour of a broken
 * control plane (503, then no answer): no episode, no action. Then the same node, the API back, really
 * NotReady with stuck pods: an episode starts after grace. The control proves the test can fail.
 */
t.test('the ladder: an outage of an hour never starts an episode; the same faults with the API up do', async (t) => {
  const { fake, clock, deps } = await setup(t);
  await setNode(fake, nodeWithReady(NODE, { now: T0, status: 'Unknown', sinceAgoMs: 10 * MIN }));
  fake.addPod(terminatingPod({ name: 'web-1', node: NODE, now: T0, scheduledAgoMs: 60 * MIN, deletedAgoMs: 30 * MIN }));
  const config = resolveConfig({ nodeName: NODE, stateDir: '/nonexistent', remediation: { mode: 'enforce', grace: '1m', settle: '2m', triggers: ['node-ready', 'stuck-pods'] } });
  const policy = ladderPolicy(config, null);
  const checks = [nodeReadyCheck.create({ ...nodeReadyCheck.defaults, timeout: '500ms' }, deps), stuckPodsCheck.create({ ...stuckPodsCheck.defaults, timeout: '500ms' }, deps)];
  const sweep = async (): Promise<CheckResult[]> =>
    Promise.all(
      checks.map(async (c) => {
        const f = await c.run(new AbortController().signal);
        return { check: c.id, ...f, evidence: f.evidence ?? {}, observedAt: new Date(clock.now()).toISOString(), durationSeconds: 0 };
      }),
    );
  let state = emptyState();
  const seen = new Set<string>();
  for (let minute = 0; minute <= 60; minute += 5) {
    clock.set(T0 + minute * MIN);
    fake.fault = minute < 30 ? 'unavailable' : 'hang';
    const results = await sweep();
    for (const r of results) seen.add(`${r.check}=${r.status}/${r.reason}`);
    const d = decide(state, { results }, clock.now(), policy);
    state = d.state;
    t.not(d.next.kind, 'act', `minute ${minute}: no action`);
  }
  t.same([...seen].sort(), ['node-ready=unknown/ApiTimeout', 'node-ready=unknown/ApiUnavailable', 'stuck-pods=unknown/ApiTimeout', 'stuck-pods=unknown/ApiUnavailable']);
  t.equal(state.episode, null, 'no episode');
  t.same(state.problemSince, {}, 'no grace period even started');
  t.same(state.actions, []);

  fake.fault = 'none';
  // The request the stuck server held ends at the client's own timeout (5 s here); then a run asks again.
  let results = await until(async () => { const r = await sweep(); return r.every((x) => x.status !== 'unknown') && r; }, 15_000);
  t.same(results.map((r) => `${r.check}=${r.status}`), ['node-ready=problem', 'stuck-pods=problem'], 'the API back: both see the faults');
  let d = decide(state, { results }, clock.now(), policy);
  t.equal(d.state.episode, null, 'in grace');
  clock.advance(MIN);
  results = await sweep();
  d = decide(d.state, { results, units: { kubelet: { loadState: 'loaded', activeState: 'active', lastStartMs: T0 - 24 * 3600_000 } } }, clock.now(), policy);
  t.match(d.next, { kind: 'act', action: { step: 'restart-kubelet', action: 'restart_kubelet' } }, 'after grace, the first step');
  t.match(d.state.episode, { state: 'active', trigger: 'node-ready', triggers: ['node-ready', 'stuck-pods'] });
});
