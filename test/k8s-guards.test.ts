/**
 * Guards before cordoning: the pure verdicts, then each refusing a real drain-reboot against the fake
 * API server with a clear event and nothing changed. An API error counts as "not safe".
 */
import t from 'tap';
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { CORDON_TOKEN, CORDONED_BY } from '../remediations/kubernetes/cordon.js';
import { capacityGuard, stormGuard, unhealthyLimit, windowGuard } from '../remediations/kubernetes/guards.js';
import { classifyPod, podRequests } from '../remediations/kubernetes/pods.js';
import { parseQuantity } from '../platform/quantity.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { agentlet, startCluster } from './fake-apiserver/harness.js';

const node = (f: Parameters<typeof makeNode>[0]): V1Node => makeNode(f) as V1Node;
const pod = (f: Parameters<typeof makePod>[0]): V1Pod => makePod(f) as V1Pod;
const SELF = 'worker-1';

t.test('quantities', async (t) => {
  const cases: [string, number][] = [['100m', 0.1], ['2', 2], ['1.5', 1.5], ['128Mi', 128 * 2 ** 20], ['1Gi', 2 ** 30], ['1G', 1e9], ['500k', 5e5], ['1e3', 1000], ['12E', 12e18], ['250u', 250e-6]];
  for (const [q, v] of cases) t.ok(Math.abs(parseQuantity(q) - v) < 1e-9 * Math.max(1, v), `${q} = ${v}`);
  for (const bad of ['', 'abc', '1Mb', '--1', '1 Gi']) t.throws(() => parseQuantity(bad), { message: new RegExp(`not a Kubernetes quantity: ${JSON.stringify(bad).replace(/[[\]\\.*+?^$(){}|]/g, '\\$&')}`) });
});

t.test('pod requests: containers summed, the largest init container wins if larger, overhead added', async (t) => {
  const p = pod({ name: 'a', node: SELF, requests: { cpu: '250m', memory: '256Mi' } });
  p.spec!.containers.push({ name: 'side', resources: { requests: { cpu: '250m', memory: '256Mi' } } });
  p.spec!.initContainers = [{ name: 'init', resources: { requests: { cpu: '2', memory: '64Mi' } } }];
  p.spec!.overhead = { cpu: '100m' };
  const r = podRequests(p);
  t.ok(Math.abs(r.cpu - 2.1) < 1e-9, `cpu ${r.cpu}`);
  t.equal(r.memory, 512 * 2 ** 20);
});

t.test('classification follows kubectl drain filters, first filter wins', async (t) => {
  const off = { deleteEmptyDirData: false, force: false };
  const on = { deleteEmptyDirData: true, force: true };
  t.same(classifyPod(pod({ name: 'a', node: SELF, kind: 'DaemonSet', emptyDir: true }), off), { action: 'keep', why: 'daemonset' }, 'a DaemonSet pod with emptyDir stays, no error');
  t.same(classifyPod(pod({ name: 'a', node: SELF, kind: 'DaemonSet', phase: 'Failed' }), off), { action: 'delete', why: 'finished' });
  t.same(classifyPod(pod({ name: 'a', node: SELF, kind: 'mirror' }), on), { action: 'keep', why: 'mirror' });
  t.same(classifyPod(pod({ name: 'a', node: SELF, kind: 'unmanaged', phase: 'Succeeded', emptyDir: true }), off), { action: 'delete', why: 'finished' });
  t.same(classifyPod(pod({ name: 'a', node: SELF, emptyDir: true }), off), { action: 'block', why: 'emptydir' });
  t.same(classifyPod(pod({ name: 'a', node: SELF, kind: 'unmanaged' }), off), { action: 'block', why: 'unmanaged' });
  t.same(classifyPod(pod({ name: 'a', node: SELF, kind: 'unmanaged', emptyDir: true }), on), { action: 'evict', note: 'emptyDir data will be lost; no controller will recreate it' });
  t.same(classifyPod(pod({ name: 'a', node: SELF, kind: 'StatefulSet' }), off), { action: 'evict' });
});

t.test('storm guard: counts other nodes NotReady or cordoned by nodemedic against a count or a percentage', async (t) => {
  const nodes = (bad: number, cordoned: number, total: number): V1Node[] =>
    Array.from({ length: total }, (_, i) =>
      node({
        name: i === 0 ? SELF : `n${i}`,
        ready: !(i >= 1 && i <= bad),
        ...(i > bad && i <= bad + cordoned ? { unschedulable: true, annotations: { [CORDONED_BY]: `agent/n${i}`, [CORDON_TOKEN]: 'x' } } : {}),
      }),
    );
  // Issue 11: at 10%, a cluster of 10–19 nodes may have one node out — this one — not two.
  t.equal(unhealthyLimit('10%', 10), 0);
  t.equal(unhealthyLimit('10%', 19), 0);
  t.equal(unhealthyLimit('10%', 20), 1);
  t.equal(unhealthyLimit('10%', 9), 0, 'a small cluster may still have this one node out');
  t.equal(unhealthyLimit(3, 100), 3, 'a count is of the other nodes');
  for (const total of [10, 15, 19]) t.notOk(stormGuard(nodes(1, 0, total), SELF, '10%').ok, `1 other NotReady of ${total} at 10%: this one would make 2 out`);
  t.ok(stormGuard(nodes(0, 0, 10), SELF, '10%').ok, 'none other out: this one may go');
  t.ok(stormGuard(nodes(1, 0, 20), SELF, '10%').ok, '1 other of 20 at 10%: 2 out is 10%');
  const v = stormGuard(nodes(1, 1, 20), SELF, '10%');
  t.notOk(v.ok, 'one NotReady plus one nodemedic-cordoned is too many');
  t.match(v.detail, /storm guard: 2 of the 19 other nodes are NotReady, cordoned by nodemedic or holding a reboot slot \(NotReady: n1; cordoned by nodemedic: n2; holding a slot: none\); remediation.maxUnhealthyNodes is "10%", i.e. at most 2 of 20 nodes out, this one included/);
  // A node holding a reboot slot is out whatever its Node says (it may be Ready and not yet cordoned).
  const held = stormGuard(nodes(0, 0, 20), SELF, 0, ['n5', SELF]);
  t.notOk(held.ok, 'a slot holder counts as out');
  t.match(held.detail, /holding a slot: n5\)/);
  t.ok(stormGuard(nodes(1, 0, 20), SELF, 1, ['n1']).ok, 'a NotReady slot holder is counted once');
  const self = nodes(0, 0, 3);
  self[0] = node({ name: SELF, ready: false });
  t.ok(stormGuard(self, SELF, 0).ok, 'this node being NotReady is why we are here; it does not count');
  const admin = [node({ name: SELF }), node({ name: 'n1', unschedulable: true }), node({ name: 'n2', unschedulable: true, annotations: { [CORDONED_BY]: 'operator/alice' } })];
  t.ok(stormGuard(admin, SELF, 0).ok, "an administrator's cordon, with or without nodemedic cordon, is not a storm");
});

t.test('capacity guard: first-fit of the requests into other Ready schedulable nodes', async (t) => {
  const nodes = [node({ name: SELF }), node({ name: 'n1', allocatable: { cpu: '4', memory: '8Gi' } }), node({ name: 'n2', allocatable: { cpu: '4', memory: '8Gi' } }), node({ name: 'n3', unschedulable: true, allocatable: { cpu: '64', memory: '256Gi' } }), node({ name: 'n4', ready: false, allocatable: { cpu: '64', memory: '256Gi' } })];
  const used = [pod({ name: 'u1', node: 'n1', requests: { cpu: '3', memory: '4Gi' } }), pod({ name: 'u2', node: 'n2', requests: { cpu: '1', memory: '6Gi' } })];
  // Free: n1 1 cpu/4Gi, n2 3 cpu/2Gi; n3 and n4 do not count.
  t.ok(capacityGuard(nodes, used, SELF, [pod({ name: 'a', node: SELF, requests: { cpu: '1', memory: '3Gi' } }), pod({ name: 'b', node: SELF, requests: { cpu: '2', memory: '2Gi' } })]).ok);
  const v = capacityGuard(nodes, used, SELF, [pod({ name: 'big', node: SELF, requests: { cpu: '2', memory: '5Gi' } })]);
  t.notOk(v.ok, '5Gi fits no single node although 6Gi are free in total');
  t.match(v.detail, /pod default\/big \(cpu 2, memory 5Gi\) fits on no other node; free on 2 other Ready schedulable nodes: cpu 4, memory 6Gi/);
  const tainted = [node({ name: SELF }), { ...node({ name: 'cp' }), spec: { taints: [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }] } } as V1Node];
  t.notOk(capacityGuard(tainted, [], SELF, [pod({ name: 'a', node: SELF })]).ok, 'a NoSchedule node takes nothing');
  t.ok(capacityGuard([node({ name: SELF })], [], SELF, []).ok, 'nothing to evict always fits');
});

t.test('reboot window in UTC, across midnight', async (t) => {
  const at = (hhmm: string): number => Date.parse(`2026-11-27T${hhmm}:00Z`);
  t.ok(windowGuard('', at('12:00')).ok);
  t.ok(windowGuard('01:00-05:00', at('01:00')).ok);
  t.notOk(windowGuard('01:00-05:00', at('05:00')).ok, 'the end is exclusive');
  t.ok(windowGuard('22:00-04:00', at('23:59')).ok);
  t.ok(windowGuard('22:00-04:00', at('03:00')).ok);
  const v = windowGuard('22:00-04:00', at('12:30'));
  t.notOk(v.ok);
  t.equal(v.detail, 'reboot window: 12:30 UTC is outside remediation.rebootWindow 22:00-04:00 (UTC)');
});

async function refusedCleanly(t: Tap.Test, c: Awaited<ReturnType<typeof startCluster>>, a: ReturnType<typeof agentlet>, pattern: RegExp): Promise<void> {
  const r = await a.controller.run({ episodeId: 'ep', reason: 'kubelet unhealthy', dryRun: false });
  t.equal(r.result, 'skipped');
  t.match(r.detail, pattern);
  t.equal(a.host.commands.length, 0, 'no reboot');
  t.notOk(c.fake.node(SELF).spec.unschedulable, 'not cordoned');
  t.notOk([...c.fake.leases.values()].some((l) => l.spec?.holderIdentity), 'no slot held (taken, then given back on refusal)');
  t.notOk(c.fake.requests.some((x) => x.method === 'POST' && x.path.endsWith('/eviction')), 'nothing evicted');
  const ev = c.fake.events.filter((e) => e.reason === 'NodemedicGuardRefused');
  t.equal(ev.length, 1, 'one refusal event');
  t.equal(ev[0]?.type, 'Warning');
  t.match(ev[0]?.message, pattern, 'the event says which guard and why');
  t.same(a.actions, [{ action: 'drain', result: 'skipped' }]);
  t.match(a.controller.status(), { rebootRequired: { required: true, reason: 'RebootRefused' } });
}

t.test('storm guard refuses a real request with a clear event', async (t) => {
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: SELF }));
  for (let i = 2; i <= 10; i++) c.fake.addNode(makeNode({ name: `worker-${i}`, ready: i > 3 }));
  c.fake.addPod(makePod({ name: 'web', node: SELF }));
  const a = agentlet(c, SELF, { maxUnhealthyNodes: '10%' });
  t.teardown(() => a.controller.stop());
  await refusedCleanly(t, c, a, /storm guard: 2 of the 9 other nodes are NotReady.*worker-2, worker-3/);
});

t.test('capacity guard refuses a real request with a clear event', async (t) => {
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: SELF }));
  c.fake.addNode(makeNode({ name: 'worker-2', allocatable: { cpu: '2', memory: '4Gi' } }));
  c.fake.addPod(makePod({ name: 'busy', node: 'worker-2', requests: { cpu: '1500m', memory: '3Gi' } }));
  c.fake.addPod(makePod({ name: 'finished-big', node: 'worker-2', phase: 'Succeeded', requests: { cpu: '2', memory: '4Gi' } }));
  c.fake.addPod(makePod({ name: 'web', node: SELF, requests: { cpu: '1', memory: '512Mi' } }));
  const a = agentlet(c, SELF);
  t.teardown(() => a.controller.stop());
  await refusedCleanly(t, c, a, /capacity guard: the 1 pods to evict request cpu 1, memory 512Mi; pod default\/web \(cpu 1, memory 512Mi\) fits on no other node; free on 1 other Ready schedulable nodes: cpu 500m, memory 1Gi/);
});

t.test('reboot window refuses outside its hours', async (t) => {
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: SELF }));
  const h = new Date().getUTCHours();
  const w = `${String((h + 2) % 24).padStart(2, '0')}:00-${String((h + 3) % 24).padStart(2, '0')}:00`;
  const a = agentlet(c, SELF, { rebootWindow: w });
  t.teardown(() => a.controller.stop());
  await refusedCleanly(t, c, a, /outside remediation.rebootWindow/);
});

t.test('API outage: 503 and a hung server both refuse (fail closed), bounded in time', async (t) => {
  for (const fault of ['unavailable', 'hang'] as const) {
    const c = await startCluster(t);
    c.fake.addNode(makeNode({ name: SELF }));
    c.fake.addNode(makeNode({ name: 'worker-2' }));
    const a = agentlet(c, SELF);
    t.teardown(() => a.controller.stop());
    c.fake.fault = fault;
    const t0 = Date.now();
    const r = await a.controller.run({ episodeId: 'ep', reason: 'x', dryRun: false });
    t.equal(r.result, 'skipped', fault);
    t.equal(r.refusedBy?.guard, 'api');
    t.match(r.detail, fault === 'hang' ? /cannot take the reboot lease.*Timeout/ : /cannot take the reboot lease.*503/);
    t.ok(Date.now() - t0 < 12_000, `${fault}: refused within the request timeouts (${Date.now() - t0}ms)`);
    c.fake.fault = 'none';
    t.equal(a.host.commands.length, 0);
    t.notOk(c.fake.node(SELF).spec.unschedulable);
  }
});
