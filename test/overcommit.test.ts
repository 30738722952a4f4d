/**
 * The `overcommit` check against the fake API server, through the real client-node, a real kubeconfig
 * and the real list-then-watch caches: pods added, finished and deleted while the check watches, with
 * requests and limits (written as the Kubernetes documentation writes quantities) summing to known
 * ratios below, at and above the thresholds. "Above" is strict: at the threshold is ok. Then the
 * figures in the evidence of `load`, `node-ready` and `pleg` problems, in the metric, and the API
 * cost: reading the pods and the Node that `stuck-pods` and `node-ready` already watch adds no request.
 * Every wait is on the caches catching up (`caughtUp`: a bookmark carries the server's version), none a sleep.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import t from 'tap';
import { AgentMetrics } from '../agent/metrics.js';
import { loadCheck } from '../checks/load.js';
import { nodeReadyCheck } from '../checks/node-ready.js';
import { overcommitCheck, type OvercommitOptions } from '../checks/overcommit.js';
import { PlegMonitor, plegCheck } from '../checks/pleg.js';
import { stuckPodsCheck } from '../checks/stuck-pods.js';
import type { Check, CheckDeps, CheckResult, Finding } from '../checks/types.js';
import { ManualClock } from '../platform/clock.js';
import { RealHost } from '../platform/host.js';
import { lazyKubeAccess } from '../platform/kube-client.js';
import { makeNode } from './fake-apiserver/fixtures.js';
import { nodeWithReady, startFakeCluster } from './fake-apiserver/pod-states.js';
import type { FakeApiServer, K8sObject } from './fake-apiserver/server.js';
import { caughtUp, watchesLost } from './helpers/cluster-view.js';

const NODE = 'worker-7';
const MI = 2 ** 20;
const GI = 2 ** 30;
const signal = new AbortController().signal;

type Res = { requests?: Record<string, string>; limits?: Record<string, string> };

/** A pod bound to `node` (default this one), one container per entry of `containers`. */
function pod(name: string, containers: Res[], o: { init?: (Res & { restartPolicy?: string })[]; phase?: string; node?: string } = {}): K8sObject {
  const c = (r: Res, i: number, prefix: string): K8sObject => ({ name: `${prefix}${i}`, image: 'registry.k8s.io/pause:3.9', resources: { ...r } });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default' },
    spec: {
      nodeName: o.node ?? NODE,
      containers: containers.map((r, i) => c(r, i, 'app')),
      ...(o.init ? { initContainers: o.init.map(({ restartPolicy, ...r }, i) => ({ ...c(r, i, 'init'), ...(restartPolicy ? { restartPolicy } : {}) })) } : {}),
    },
    status: { phase: o.phase ?? 'Running' },
  };
}

type Ev = Record<string, any>;
const ev = (f: Finding): Ev => f.evidence as Ev;

async function setup(t: Tap.Test, allocatable = { cpu: '2', memory: '1Gi' }) {
  const { fake, kubeconfig } = await startFakeCluster(t);
  fake.addNode(makeNode({ name: NODE, allocatable }));
  fake.addNode(makeNode({ name: 'worker-8' }));
  // Another node's pod: never counted here (the watch's field selector keeps it out).
  fake.addPod(pod('elsewhere', [{ requests: { cpu: '4', memory: '16Gi' } }], { node: 'worker-8' }));
  const kube = lazyKubeAccess(kubeconfig, { requestTimeoutMs: 5000 });
  const deps: CheckDeps = { host: new RealHost(), logger: pino({ level: 'silent' }), nodeName: NODE, kube };
  const started = async (c: Check): Promise<Check> => {
    t.teardown(() => c.stop?.());
    await c.start?.();
    return c;
  };
  const make = (opts: Partial<OvercommitOptions> = {}): Promise<Check> => started(overcommitCheck.create({ ...overcommitCheck.defaults, ...opts }, deps));
  const check = await make();
  /** Runs `c` once the caches have seen everything the test changed. */
  const run = async (c: Check = check): Promise<Finding> => {
    await caughtUp(fake);
    return c.run(signal);
  };
  return { fake, kube, deps, check, make, started, run };
}

t.test('requests: below, at (a full node is ok) and above the allocatable, following pods as they come and go', async (t) => {
  const { fake, run } = await setup(t);
  fake.addPod(pod('web-1', [{ requests: { cpu: '250m', memory: '123Mi' } }]));
  fake.addPod(pod('web-2', [{ requests: { cpu: '750m', memory: '128974848' } }]));
  let r = await run();
  t.match(r, { status: 'ok', reason: 'OvercommitNormal' });
  t.match(ev(r), { node: NODE, pods: 2, cpu: { allocatable: '2', requests: '1', requestsRatio: 0.5, limitsRatio: 0, podsWithoutLimit: 2 } });
  // 123Mi and 128974848 are the same 123 MiB: 246Mi of 1Gi.
  t.equal(ev(r).memory.requestsRatio, Math.round(((246 * MI) / GI) * 10_000) / 10_000);

  // An init container of 1 core outweighs its app container's 500m: the pod reserves 1 core. 2 of 2 cores: at the threshold.
  fake.addPod(pod('job-1', [{ requests: { cpu: '500m', memory: '129e6' } }], { init: [{ requests: { cpu: '1' } }] }));
  r = await run();
  t.match(r, { status: 'ok', reason: 'OvercommitNormal' }, 'requests at exactly the allocatable: a full node, not a problem');
  t.equal(ev(r).cpu.requestsRatio, 1);
  t.match(r.message, /cpu requests 1x/);

  // A static pod the scheduler never saw: 2100m of 2000m.
  fake.addPod(pod('etcd-worker-7', [{ requests: { cpu: '100m' } }]));
  r = await run();
  t.match(r, { status: 'problem', reason: 'RequestsOvercommitted' });
  t.equal(ev(r).cpu.requestsRatio, 1.05);
  t.match(r.message, /cpu requests are 1\.05x the allocatable \(limit 1x\).*static pods/);
  t.same(ev(r).maxRequestsRatio, { cpu: 1, memory: 1 });

  // The job finishes (MODIFIED to Succeeded, same uid): it holds nothing any more.
  fake.addPod({ ...fake.pods.get('default/job-1')!, status: { phase: 'Succeeded' } });
  r = await run();
  t.match(r, { status: 'ok', reason: 'OvercommitNormal' });
  t.match(ev(r), { pods: 3, terminatedPods: 1, cpu: { requests: '1100m', requestsRatio: 0.55 } });

  // Deleted (DELETED event): gone from the sums.
  fake.pods.delete('default/etcd-worker-7');
  r = await run();
  t.match(ev(r), { pods: 2, cpu: { requestsRatio: 0.5 } });
});

t.test('memory limits: below, at and above maxLimitsRatio (1.5), pods without a limit counted, the threshold configurable', async (t) => {
  const { fake, run, make } = await setup(t);
  const lim = (memory: string, cpu = '500m'): Res => ({ requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu, memory } });
  fake.addPod(pod('a', [lim('123Mi')]));
  fake.addPod(pod('b', [lim('128974848')]));
  let r = await run();
  t.match(r, { status: 'ok', reason: 'OvercommitNormal' });
  t.match(ev(r).memory, { limits: '246Mi', podsWithoutLimit: 0 });

  // 246Mi + 1290Mi = 1536Mi = 1.5 x 1Gi: at the threshold.
  fake.addPod(pod('c', [lim('1290Mi')]));
  r = await run();
  t.match(r, { status: 'ok', reason: 'OvercommitNormal' }, 'limits at exactly maxLimitsRatio: ok');
  t.equal(ev(r).memory.limitsRatio, 1.5);

  // A pod with a 129e6 limit and a sidecar without any limit: above, and the true figure is higher still.
  fake.addPod(pod('d', [lim('129e6')], { init: [{ requests: { cpu: '50m', memory: '32Mi' }, restartPolicy: 'Always' }] }));
  r = await run();
  t.match(r, { status: 'problem', reason: 'LimitsOvercommitted' });
  t.equal(ev(r).memory.limitsRatio, Math.round(((1536 * MI + 129e6) / GI) * 10_000) / 10_000);
  t.match(ev(r), { memory: { podsWithoutLimit: 1 }, cpu: { podsWithoutLimit: 1 } });
  t.match(r.message, /memory limits are 1\.62\d*x the allocatable \(limit 1\.5x; 1 pod has no memory limit, so the true figure is higher\).*runs out of memory/);
  // The sidecar's requests add to the pod's (150m, 96Mi): 4 pods of 100m plus 50m.
  t.equal(ev(r).cpu.requests, '450m');

  const lenient = await make({ maxLimitsRatio: { cpu: 3, memory: 2 } });
  r = await run(lenient);
  t.match(r, { status: 'ok', reason: 'OvercommitNormal' }, 'the same node under maxLimitsRatio.memory 2');
});

t.test('unknown when the figures cannot be had: no access, no such Node, no allocatable', async (t) => {
  const { fake, deps, make, run } = await setup(t);
  const none = overcommitCheck.create(overcommitCheck.defaults, { ...deps, kube: undefined });
  t.match(await none.run(signal), { status: 'unknown', reason: 'NoKubernetesAccess' });
  const other = overcommitCheck.create(overcommitCheck.defaults, { ...deps, nodeName: 'no-such-node' });
  t.teardown(() => other.stop?.());
  t.match(await other.run(signal), { status: 'unknown', reason: 'NodeNotFound' });
  fake.updateNode(NODE, (n) => {
    delete n.status.allocatable;
  });
  t.match(await run(await make()), { status: 'unknown', reason: 'NoAllocatable' });
});

t.test("the figures in a load problem's evidence, and only in a problem's", async (t) => {
  const { fake, deps, run, check } = await setup(t);
  fake.addPod(pod('a', [{ requests: { cpu: '1', memory: '512Mi' }, limits: { cpu: '2', memory: '1Gi' } }]));
  await run();
  const high = await loadCheck.create({ enabled: true, maxLoadPerCpu: 0.0001 }, deps).run(signal);
  t.match(high, { status: 'problem', reason: 'LoadHigh' });
  t.match(ev(high).overcommit, { node: NODE, pods: 1, cpu: { requestsRatio: 0.5, limitsRatio: 1 }, memory: { requestsRatio: 0.5, limitsRatio: 1 } });
  const normal = await loadCheck.create({ enabled: true, maxLoadPerCpu: 1e9 }, deps).run(signal);
  t.equal(normal.status, 'ok');
  t.notOk('overcommit' in ev(normal), 'an ok load carries no figures');
  const elsewhere = await loadCheck.create({ enabled: true, maxLoadPerCpu: 0.0001 }, { ...deps, nodeName: 'worker-8' }).run(signal);
  t.notOk('overcommit' in ev(elsewhere), 'no overcommit check for that node: nothing added');
  // The API failing: the problem says why there are no figures (the caches' retry is bounded by the wait).
  fake.fault = 'unavailable';
  fake.watches.closeAll();
  await watchesLost(fake);
  const failing = await loadCheck.create({ enabled: true, maxLoadPerCpu: 0.0001 }, deps).run(signal);
  t.match(ev(failing).overcommit, { unavailable: /could not be read/ });
  fake.fault = 'none';
  await check.stop?.();
  const after = await loadCheck.create({ enabled: true, maxLoadPerCpu: 0.0001 }, deps).run(signal);
  t.notOk('overcommit' in ev(after), 'once the overcommit check stops, its figures are no longer shared');
  const noAccess = overcommitCheck.create(overcommitCheck.defaults, { ...deps, kube: undefined });
  await noAccess.start?.();
  t.teardown(() => noAccess.stop?.());
  const unconnected = await loadCheck.create({ enabled: true, maxLoadPerCpu: 0.0001 }, deps).run(signal);
  t.notOk('overcommit' in ev(unconnected), 'no Kubernetes access: no figures and no note about them');
});

t.test("the figures in node-ready's and pleg's problems", async (t) => {
  const { fake, deps, run, started } = await setup(t);
  fake.addPod(pod('a', [{ requests: { cpu: '500m', memory: '256Mi' } }]));
  fake.updateNode(NODE, (n) => {
    const notReady = nodeWithReady(NODE, { now: Date.now(), status: 'False', sinceAgoMs: 10 * 60_000, reason: 'KubeletNotReady', message: 'PLEG is not healthy: pleg was last seen active 3m0s ago' });
    n.status.conditions = notReady.status.conditions;
  });
  await run();
  const nodeReady = await started(nodeReadyCheck.create(nodeReadyCheck.defaults, deps));
  const nr = await run(nodeReady);
  t.match(nr, { status: 'problem', reason: 'NodeNotReady' });
  t.match(ev(nr).overcommit, { pods: 1, cpu: { requestsRatio: 0.25 }, memory: { requestsRatio: 0.25 } });

  // pleg, following a file: three "PLEG is not healthy" reports of one kubelet (the corpus) within the window.
  const corpus = fileURLToPath(new URL('./fixtures/corpus/kubelet/kubelet-pleg.tsv', import.meta.url));
  const lines = readFileSync(corpus, 'utf8')
    .split('\n')
    .filter((r) => r.startsWith('pleg-unhealthy\t') && r.includes(' k3s[1636]: '))
    .map((r) => r.slice(r.indexOf('\t') + 1));
  t.ok(lines.length >= 3, 'three k3s lines in the corpus');
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-overcommit-pleg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'kubelet.log');
  writeFileSync(file, '');
  const clock = new ManualClock();
  const pleg = new PlegMonitor({ ...plegCheck.defaults, source: 'file', file, unit: 'nodemedic-test-no-such-unit.service' }, { host: new RealHost({ clock }), nodeName: NODE });
  await started(pleg);
  for (const l of lines.slice(0, 3)) {
    appendFileSync(file, `${l}\n`);
    await pleg.readAvailable();
    clock.advance(60_000);
  }
  const pr = await pleg.run(signal);
  t.match(pr, { status: 'problem', reason: 'PLEGUnhealthy' });
  t.match(ev(pr).overcommit, { pods: 1, cpu: { requestsRatio: 0.25 } });
});

t.test('nodemedic_node_overcommit_ratio{resource,kind}: the figures of the last assessment, none while unknown', async (t) => {
  const { fake, run } = await setup(t);
  fake.addPod(pod('a', [{ requests: { cpu: '500m', memory: '256Mi' }, limits: { cpu: '3', memory: '1536Mi' } }]));
  const r = await run();
  const m = new AgentMetrics();
  const result = (f: Finding): CheckResult => ({ ...f, evidence: f.evidence ?? {}, check: 'overcommit', observedAt: new Date().toISOString(), durationSeconds: 0 });
  m.observe(result(r));
  const text = await m.registry.metrics();
  t.match(text, /# TYPE nodemedic_node_overcommit_ratio gauge/);
  for (const [resource, kind, v] of [['cpu', 'requests', 0.25], ['cpu', 'limits', 1.5], ['memory', 'requests', 0.25], ['memory', 'limits', 1.5]] as const) {
    t.match(text, `nodemedic_node_overcommit_ratio{resource="${resource}",kind="${kind}"} ${v}\n`, `${resource} ${kind}`);
  }
  m.observe(result({ status: 'unknown', reason: 'ApiTimeout', message: 'no answer' }));
  t.notMatch(await m.registry.metrics(), /nodemedic_node_overcommit_ratio\{/, 'an unknown result leaves no stale figures');
});

t.test('no request of its own: the pods and the Node come from the watches stuck-pods and node-ready keep', async (t) => {
  const { fake, deps, run, started } = await setup(t);
  fake.addPod(pod('a', [{ requests: { cpu: '500m' } }]));
  // setup() started an overcommit check; these two share its caches (and it theirs).
  const stuck = await started(stuckPodsCheck.create(stuckPodsCheck.defaults, deps));
  const ready = await started(nodeReadyCheck.create(nodeReadyCheck.defaults, deps));
  await run(stuck);
  await run(ready);
  const before = fake.requests.length;
  const lists = (from: number): string[] => fake.requests.slice(from).filter((q) => q.query.get('watch') !== 'true').map((q) => `${q.method} ${q.path}?${q.query}`);
  t.same(
    lists(0).map((l) => l.replace(/&.*$/, '')).sort(),
    [`GET /api/v1/nodes?fieldSelector=metadata.name%3D${NODE}`, `GET /api/v1/pods?fieldSelector=spec.nodeName%3D${NODE}`, `GET /api/v1/pods?fieldSelector=status.nominatedNodeName%3D${NODE}`],
    "one list per collection for the three checks: stuck-pods' two, node-ready's one, none of overcommit's own",
  );
  for (let i = 0; i < 3; i++) t.match(await run(), { status: 'ok' });
  t.same(lists(before), [], 'three runs later: no list, no get');
});
