/**
 * The `stuck-pods` check against the fake API server, through the real client-node and a real
 * kubeconfig, with time driven by a ManualClock: each stuck category only after its threshold, every
 * cause that is not the node's fault excluded (and listed), the evidence capped, and a control plane
 * that fails or does not answer giving `unknown`. The check follows the pods by watch: `run` first
 * waits until the check's caches have caught up with what the test changed (`caughtUp`).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import t from 'tap';
import { ManualClock } from '../platform/clock.js';
import { RealHost } from '../platform/host.js';
import { classifyPod, type PodVerdict } from '../checks/pod-stuck.js';
import { stuckPodsCheck, type StuckPodsOptions } from '../checks/stuck-pods.js';
import type { Finding } from '../checks/types.js';
import { lazyKubeAccess } from '../platform/kube-client.js';
import { makeNode } from './fake-apiserver/fixtures.js';
import { until } from './fake-apiserver/harness.js';
import {
  configErrorPod,
  crashLoopPod,
  creatingPod,
  FAILED_ATTACH,
  FAILED_MOUNT,
  FAILED_SANDBOX,
  imageErrorPod,
  initializingPod,
  podEvent,
  probeFailingPod,
  runningPod,
  startFakeCluster,
  terminatingPod,
  unacknowledgedPod,
  unschedulablePod,
} from './fake-apiserver/pod-states.js';
import type { FakeApiServer, K8sObject } from './fake-apiserver/server.js';
import { caughtUp, watchesLost } from './helpers/cluster-view.js';

const NODE = 'worker-7';
const T0 = Date.parse('2026-11-27T10:00:00Z');
const MIN = 60_000;

type Env = { fake: FakeApiServer; kubeconfig: string; clock: ManualClock; run: (opts?: Partial<StuckPodsOptions>, sync?: boolean) => Promise<Finding> };

async function setup(t: Tap.Test, fakeOpts: ConstructorParameters<typeof FakeApiServer>[0] = {}): Promise<Env> {
  const { fake, kubeconfig } = await startFakeCluster(t, fakeOpts);
  fake.addNode(makeNode({ name: NODE }));
  fake.addNode(makeNode({ name: 'worker-8' }));
  const clock = new ManualClock(T0);
  const host = new RealHost({ clock });
  const kube = lazyKubeAccess(kubeconfig, { requestTimeoutMs: 5000 });
  const run = async (opts: Partial<StuckPodsOptions> = {}, sync = true): Promise<Finding> => {
    if (sync) await caughtUp(fake);
    const check = stuckPodsCheck.create({ ...stuckPodsCheck.defaults, ...opts }, { host, logger: pino({ level: 'silent' }), nodeName: NODE, kube });
    return check.run(new AbortController().signal);
  };
  return { fake, kubeconfig, clock, run };
}

const base = (name: string, scheduledAgoMs: number, now = T0) => ({ name, node: NODE, now, scheduledAgoMs });

type Ev = Record<string, any>;
const ev = (f: Finding): Ev => f.evidence as Ev;
const names = (list: { pod: string }[]): string[] => list.map((x) => x.pod).sort();

t.test('classifier: each pod state gets the verdict the kubelet state means', async (t) => {
  const now = T0;
  const cases: [string, K8sObject, Partial<PodVerdict>][] = [
    ['running and ready', runningPod(base('a', 10 * MIN)), { kind: 'healthy' }],
    ['terminating', terminatingPod({ ...base('b', 10 * MIN), deletedAgoMs: MIN, grace: 30 }), { kind: 'terminating', dueMs: T0 - MIN + 30_000, requestedMs: T0 - MIN }],
    ['kubelet deleted it, finalizers left', terminatingPod({ ...base('c', 10 * MIN), deletedAgoMs: 9 * MIN, finalizers: ['example.com/backup'], kubeletDeleted: true }), { kind: 'excluded', reason: 'Finalizers' }],
    ['finalizers but the kubelet has not deleted it', terminatingPod({ ...base('c2', 10 * MIN), deletedAgoMs: 9 * MIN, finalizers: ['example.com/backup'] }), { kind: 'terminating' }],
    ['ContainerCreating', creatingPod(base('d', 10 * MIN)), { kind: 'starting', sinceMs: T0 - 10 * MIN }],
    ['PodInitializing, no sandbox', creatingPod({ ...base('e', 10 * MIN), initContainer: true }), { kind: 'starting' }],
    ['never acknowledged by the kubelet', unacknowledgedPod(base('f', 10 * MIN)), { kind: 'starting', sinceMs: T0 - 10 * MIN }],
    ['init container running', initializingPod(base('g', 10 * MIN)), { kind: 'healthy' }],
    ['ErrImagePull', imageErrorPod({ ...base('h', 10 * MIN), reason: 'ErrImagePull' }), { kind: 'excluded', reason: 'ImagePullError' }],
    ['ImagePullBackOff', imageErrorPod({ ...base('i', 10 * MIN), reason: 'ImagePullBackOff' }), { kind: 'excluded', reason: 'ImagePullError' }],
    ['InvalidImageName', imageErrorPod({ ...base('j', 10 * MIN), reason: 'InvalidImageName' }), { kind: 'excluded', reason: 'ImagePullError' }],
    ['ErrImageNeverPull', imageErrorPod({ ...base('k', 10 * MIN), reason: 'ErrImageNeverPull' }), { kind: 'excluded', reason: 'ImagePullError' }],
    ['CrashLoopBackOff', crashLoopPod(base('l', 10 * MIN)), { kind: 'excluded', reason: 'CrashLoopBackOff' }],
    ['liveness kills', crashLoopPod({ ...base('m', 10 * MIN), liveness: true }), { kind: 'excluded', reason: 'CrashLoopBackOff' }],
    ['readiness probe fails', probeFailingPod({ ...base('n', 10 * MIN), probe: 'readiness' }), { kind: 'excluded', reason: 'ProbeFailing' }],
    ['startup probe fails', probeFailingPod({ ...base('o', 10 * MIN), probe: 'startup' }), { kind: 'excluded', reason: 'ProbeFailing' }],
    ['unschedulable, nominated here', unschedulablePod(base('p', 10 * MIN)), { kind: 'excluded', reason: 'Unschedulable' }],
    ['missing ConfigMap', configErrorPod(base('q', 10 * MIN)), { kind: 'excluded', reason: 'ContainerConfigError' }],
  ];
  for (const [what, pod, want] of cases) t.match(classifyPod(pod as V1Pod), want, what);
  t.match(classifyPod(probeFailingPod({ ...base('r', 10 * MIN), probe: 'startup' }) as V1Pod), { detail: /startup probe fails/ }, 'names the probe');
  t.equal(now, T0);
});

t.test('stuck terminating: only once deletionTimestamp (request + grace) is stuckTerminatingAfter old', async (t) => {
  const { fake, clock, run } = await setup(t);
  fake.addPod(runningPod(base('web-1', 30 * MIN)));
  fake.addPod(terminatingPod({ ...base('web-2', 30 * MIN), deletedAgoMs: 0, grace: 30 }));
  // Another node's stuck pod is not this node's business.
  const other = terminatingPod({ ...base('other', 90 * MIN), deletedAgoMs: 60 * MIN });
  other.spec.nodeName = 'worker-8';
  fake.addPod(other);

  let f = await run();
  t.match(f, { status: 'ok', reason: 'NoStuckPods' }, 'just deleted: fine');
  t.same(ev(f).belowThreshold, { terminating: 1, starting: 0 });
  t.equal(ev(f).pods, 2, 'only the pods of this node were listed');
  await run();
  await run();
  const lists = fake.requests.filter((r) => r.path === '/api/v1/pods' && !r.query.get('watch'));
  t.same(
    lists.map((r) => [r.query.get('fieldSelector'), r.query.get('resourceVersion')]).sort(),
    [
      ['spec.nodeName=worker-7', '0'],
      ['status.nominatedNodeName=worker-7', '0'],
    ],
    "two lists in three runs, both from the API server's cache (resourceVersion=0), never a quorum read of every pod",
  );
  const watches = fake.requests.filter((r) => r.path === '/api/v1/pods' && r.query.get('watch') === 'true');
  t.same(
    watches.map((r) => r.query.get('fieldSelector')).sort(),
    ['spec.nodeName=worker-7', 'status.nominatedNodeName=worker-7'],
    "then one watch each, with the list's field selector",
  );
  t.ok(watches.every((r) => Number(r.query.get('resourceVersion')) > 0), 'each watch starts from the resourceVersion its list returned');

  clock.set(T0 + 30_000 + 5 * MIN - 1000);
  f = await run();
  t.match(f, { status: 'ok', reason: 'NoStuckPods' }, 'one second before grace + 5m: not yet');

  clock.set(T0 + 30_000 + 5 * MIN);
  f = await run();
  t.match(f, { status: 'problem', reason: 'PodsStuckTerminating', message: /1 pod stuck on node worker-7: 1 terminating past grace \+ 5m \(oldest default\/web-2, 5m overdue\)/ });
  t.match(ev(f).stuck, [{ pod: 'default/web-2', category: 'terminating', phase: 'Running (terminating)', for: '5m30s', overdueBy: '5m', containers: ['app: running'] }]);
  t.same(ev(f).stuckCount, { terminating: 1, starting: 0 });

  clock.set(T0 + 30_000 + MIN);
  t.match(await run({ stuckTerminatingAfter: '1m' }), { status: 'problem', reason: 'PodsStuckTerminating' }, 'the threshold is configurable');
  t.match(await run({ stuckTerminatingAfter: '2m' }), { status: 'ok' });
});

t.test('a pod deleted through the API (the fake sets deletionTimestamp as the real server does) is stuck after grace + threshold', async (t) => {
  // 60 s of fake time per grace second: the fake "kubelet" does not remove it during the test.
  const { fake, kubeconfig, clock, run } = await setup(t, { msPerGraceSecond: 60_000 });
  const now = Date.now();
  clock.set(now);
  fake.addPod(runningPod(base('api-deleted', 30 * MIN, now)));
  const access = await lazyKubeAccess(kubeconfig).get();
  await access!.api.deletePod('default', 'api-deleted');
  const pod = fake.pods.get('default/api-deleted')!;
  t.equal(pod.metadata.deletionGracePeriodSeconds, 30);
  const due = Date.parse(pod.metadata.deletionTimestamp);
  t.ok(Math.abs(due - (now + 30_000)) < 3000, 'deletionTimestamp = request time + grace period');
  t.match(await run(), { status: 'ok' });
  clock.set(due + 5 * MIN);
  t.match(await run(), { status: 'problem', reason: 'PodsStuckTerminating' });
});

t.test('stuck starting: ContainerCreating, PodInitializing without a sandbox, or never acknowledged, after stuckStartingAfter', async (t) => {
  const { fake, clock, run } = await setup(t);
  const creating = fake.addPod(creatingPod(base('cart-1', 0)));
  fake.addPod(creatingPod({ ...base('cart-2', 0), initContainer: true }));
  fake.addPod(unacknowledgedPod(base('cart-3', 0)));
  fake.addPod(initializingPod(base('cart-4', 0)));
  fake.events.push(podEvent(creating, { reason: 'FailedCreatePodSandBox', message: FAILED_SANDBOX, now: T0 + 9 * MIN, agoMs: 0 }));

  clock.set(T0 + 10 * MIN - 1000);
  let f = await run();
  t.match(f, { status: 'ok', reason: 'NoStuckPods' });
  t.same(ev(f).belowThreshold, { terminating: 0, starting: 3 }, 'the running init container is not waiting');

  clock.set(T0 + 10 * MIN);
  f = await run();
  t.match(f, { status: 'problem', reason: 'PodsStuckStarting', message: /3 pods stuck on node worker-7: 3 not started for over 10m/ });
  t.same(names(ev(f).stuck), ['default/cart-1', 'default/cart-2', 'default/cart-3']);
  const one = ev(f).stuck.find((s: Ev) => s.pod === 'default/cart-1');
  t.match(one, { category: 'starting', phase: 'Pending', for: '10m', containers: ['app: waiting ContainerCreating'], lastEvent: /^FailedCreatePodSandBox: Failed to create pod sandbox/ });
  t.match(ev(f).stuck.find((s: Ev) => s.pod === 'default/cart-3'), { containers: [/no container status/] });

  fake.addPod(terminatingPod({ ...base('web-9', 60 * MIN), deletedAgoMs: 20 * MIN }));
  f = await run();
  t.match(f, { status: 'problem', reason: 'PodsStuck', message: /4 pods stuck.*1 terminating.*3 not started/ });

  t.match(await run({ stuckStartingAfter: '11m', stuckTerminatingAfter: '1h' }), { status: 'ok' }, 'thresholds are configurable');
});

t.test('every cause that is not the node fault is excluded, listed with its reason, and never counts', async (t) => {
  const { fake, clock, run } = await setup(t);
  const old = 60 * MIN;
  const add = (p: K8sObject): K8sObject => fake.addPod(p);
  add(imageErrorPod({ ...base('img-pull', old), reason: 'ErrImagePull' }));
  add(imageErrorPod({ ...base('img-backoff', old), reason: 'ImagePullBackOff' }));
  add(imageErrorPod({ ...base('img-name', old), reason: 'InvalidImageName' }));
  add(crashLoopPod(base('crash', old)));
  add(crashLoopPod({ ...base('liveness', old), liveness: true }));
  add(probeFailingPod({ ...base('readiness', old), probe: 'readiness' }));
  add(probeFailingPod({ ...base('startup', old), probe: 'startup' }));
  add(unschedulablePod(base('unschedulable', old)));
  add(configErrorPod(base('config', old)));
  add(terminatingPod({ ...base('finalized', old), deletedAgoMs: 30 * MIN, finalizers: ['example.com/backup'], kubeletDeleted: true }));
  const attach = add(creatingPod({ ...base('attach', old), pvc: 'data-attach' }));
  const mount = add(creatingPod({ ...base('mount', old), pvc: 'data-mount' }));
  fake.events.push(podEvent(attach, { reason: 'FailedAttachVolume', message: FAILED_ATTACH, now: T0, agoMs: 30_000, component: 'attachdetach-controller' }));
  fake.events.push(podEvent(mount, { reason: 'FailedMount', message: FAILED_MOUNT, now: T0, agoMs: 90_000 }));
  add(runningPod(base('healthy', old)));
  add(initializingPod(base('initializing', old)));

  let f = await run();
  t.match(f, { status: 'ok', reason: 'NoStuckPods', message: /no stuck pods on node worker-7 \(14 pods\).*12 not counted/ });
  t.same(ev(f).stuck, []);
  t.equal(ev(f).excludedCount, 12);
  const reasons = Object.fromEntries((ev(f).excluded as Ev[]).map((e) => [e.pod.replace('default/', ''), e.reason]));
  t.same(reasons, {
    'img-pull': 'ImagePullError',
    'img-backoff': 'ImagePullError',
    'img-name': 'ImagePullError',
    crash: 'CrashLoopBackOff',
    liveness: 'CrashLoopBackOff',
    readiness: 'ProbeFailing',
    startup: 'ProbeFailing',
    unschedulable: 'Unschedulable',
    config: 'ContainerConfigError',
    finalized: 'Finalizers',
    attach: 'VolumeWait',
    mount: 'VolumeWait',
  });
  const detail = (n: string): string => (ev(f).excluded as Ev[]).find((e) => e.pod === `default/${n}`)!.detail;
  t.match(detail('img-backoff'), /container app: ImagePullBackOff \(Back-off pulling image/);
  t.match(detail('unschedulable'), /not scheduled: Unschedulable \(0\/3 nodes are available/);
  t.match(detail('attach'), /^FailedAttachVolume: AttachVolume.Attach failed/);
  t.match(detail('mount'), /^FailedMount: Unable to attach or mount volumes/);
  t.match(detail('finalized'), /example\.com\/backup/);

  // The same run with one pod that is stuck for the node's own reasons: only it counts.
  add(creatingPod(base('sandbox', old)));
  f = await run();
  t.match(f, { status: 'problem', reason: 'PodsStuckStarting', message: /1 pod stuck.*12 not counted \(3 ImagePullError, 2 CrashLoopBackOff, 2 ProbeFailing, 2 VolumeWait, 1 ContainerConfigError, 1 Finalizers, 1 Unschedulable\)/ });
  t.same(names(ev(f).stuck), ['default/sandbox']);

  // A volume event from long ago is a wait that ended: it excuses nothing now.
  clock.set(T0 + 30 * MIN);
  f = await run();
  t.same(names(ev(f).stuck), ['default/attach', 'default/mount', 'default/sandbox'], 'volume events 30m old no longer excuse the pods');
});

t.test('when the events cannot be read, a long start is not counted: unknown, unless another pod is stuck', async (t) => {
  const { fake, run } = await setup(t);
  fake.addPod(creatingPod(base('cart-1', 60 * MIN)));
  fake.inject = (method, path) => (method === 'GET' && path.endsWith('/events') ? 403 : undefined);
  let f = await run();
  t.match(f, { status: 'unknown', reason: 'CannotRuleOutCauses', message: /volume wait cannot be ruled out \(events unreadable: .*403/ });
  t.match(ev(f).undetermined, [{ pod: 'default/cart-1' }]);
  fake.addPod(terminatingPod({ ...base('web-1', 60 * MIN), deletedAgoMs: 30 * MIN }));
  f = await run();
  t.match(f, { status: 'problem', reason: 'PodsStuckTerminating' });
});

t.test('the evidence is capped at 20 pods per list; the counts stay exact', async (t) => {
  const { fake, run } = await setup(t);
  for (let i = 0; i < 30; i++) fake.addPod(terminatingPod({ ...base(`web-${String(i).padStart(2, '0')}`, 90 * MIN), deletedAgoMs: (60 - i) * MIN }));
  for (let i = 0; i < 25; i++) fake.addPod(imageErrorPod({ ...base(`img-${i}`, 60 * MIN), reason: 'ImagePullBackOff' }));
  const f = await run();
  t.match(f, { status: 'problem', message: /30 pods stuck.*oldest default\/web-00, 59m30s overdue/ });
  t.equal(ev(f).stuck.length, 20);
  t.same(ev(f).stuckCount, { terminating: 30, starting: 0 });
  t.equal(ev(f).excluded.length, 20);
  t.equal(ev(f).excludedCount, 25);
  t.equal(ev(f).truncated, true);
  t.equal(ev(f).stuck[0].pod, 'default/web-00', 'oldest first');
  t.ok(JSON.stringify(f.evidence).length < 40_000, `evidence stays small (${JSON.stringify(f.evidence).length} bytes)`);
});

t.test('a control-plane outage is unknown, never problem: 503, no answer (own timeout), connection refused', async (t) => {
  const { fake, run } = await setup(t);
  fake.addPod(terminatingPod({ ...base('web-1', 60 * MIN), deletedAgoMs: 30 * MIN }));
  t.match(await run(), { status: 'problem' }, 'with the API up, the pod is stuck');

  // An API server that goes down drops its connections, watches included; reconnecting gets 503.
  fake.fault = 'unavailable';
  t.equal(fake.watches.closeAll(), 2, "the check's two watches were open");
  await watchesLost(fake);
  t.match(await run({}, false), { status: 'unknown', reason: 'ApiUnavailable', message: /503.*says nothing about this node/ });

  fake.fault = 'hang';
  const t0 = performance.now();
  const f = await run({ timeout: '1s' }, false);
  const ms = performance.now() - t0;
  t.match(f, { status: 'unknown', reason: 'ApiTimeout', message: /no answer from the Kubernetes API .* within 1s/ });
  t.ok(ms >= 900 && ms < 4000, `the check gave up on its own after ${Math.round(ms)} ms`);

  fake.fault = 'none';
  await fake.stop();
  // The request the stuck server held ends with the server; then a run asks again and is refused.
  t.match(await until(async () => { const r = await run({}, false); return r.reason !== 'ApiTimeout' && r; }, 15_000), { status: 'unknown', reason: 'ApiUnreachable' });
});

t.test('without Kubernetes access: unknown NoKubernetesAccess; a bad kubeconfig names the key', async (t) => {
  const host = new RealHost({ clock: new ManualClock(T0) });
  const deps = { host, logger: pino({ level: 'silent' }), nodeName: NODE };
  const signal = new AbortController().signal;
  t.match(await stuckPodsCheck.create(stuckPodsCheck.defaults, deps).run(signal), { status: 'unknown', reason: 'NoKubernetesAccess' });
  const none = { get: async () => undefined };
  t.match(await stuckPodsCheck.create(stuckPodsCheck.defaults, { ...deps, kube: none }).run(signal), { status: 'unknown', reason: 'NoKubernetesAccess' });
  const bad = lazyKubeAccess('/nonexistent/kubeconfig');
  t.match(await stuckPodsCheck.create(stuckPodsCheck.defaults, { ...deps, kube: bad }).run(signal), {
    status: 'unknown',
    reason: 'KubernetesConfigError',
    message: /kubernetes\.kubeconfig: cannot read \/nonexistent\/kubeconfig/,
  });
});

t.test('config: defaults beside the checks, durations validated with the key path named', async (t) => {
  const { resolveConfig } = await import('../agent/config.js');
  const c = resolveConfig({});
  t.same(c.checks['stuck-pods'], { enabled: true, stuckTerminatingAfter: '5m', stuckStartingAfter: '10m', timeout: '10s' });
  t.same(c.checks['node-ready'], { enabled: true, notReadyFor: '1m', timeout: '10s' });
  t.ok(c.remediation.triggers.includes('stuck-pods'), 'stuck-pods triggers the ladder by default');
  t.notOk(c.remediation.triggers.includes('node-ready'), 'node-ready is opt-in');
  let problems = '';
  try {
    resolveConfig({ checks: { 'stuck-pods': { stuckTerminatingAfter: '5', stuckStartingAfter: 10 }, 'node-ready': { notReadyFor: '-1m', grace: '1m' } } });
  } catch (e) {
    problems = ((e as { problems?: string[] }).problems ?? [(e as Error).message]).join('\n');
  }
  t.match(problems, /checks\.stuck-pods\.stuckTerminatingAfter: must be a duration with a unit, like 5s \(500ms, 10s, 5m, 2h\), got "5"/);
  t.match(problems, /checks\.stuck-pods\.stuckStartingAfter: must be a duration with a unit, like 5s .*got 10/);
  t.match(problems, /checks\.node-ready\.notReadyFor: must be a duration with a unit.*got "-1m"/);
  t.match(problems, /checks\.node-ready\.grace: unknown key/);
  t.doesNotThrow(() => resolveConfig({ remediation: { triggers: ['node-ready', 'stuck-pods'] } }), 'both may be listed as triggers');
});
