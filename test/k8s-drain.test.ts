/**
 * The drain-reboot against the fake API server, through the real client-node and a kubeconfig file:
 * which pods go and how, PDB 429s retried, timeout and rollback, and nothing done when refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CORDON_TOKEN, CORDONED_BY } from '../remediations/kubernetes/cordon.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { agentlet, startCluster, until, type Cluster } from './fake-apiserver/harness.js';
import type { K8sObject } from './fake-apiserver/server.js';

const SELF = 'worker-1';

/** StatefulSet pods come back with the same name and a new UID on another node, as the controller does. */
function recreateStatefulSet(gone: K8sObject): K8sObject | undefined {
  if (gone.metadata.ownerReferences?.[0]?.kind !== 'StatefulSet') return undefined;
  const again = structuredClone(gone);
  delete again.metadata.uid;
  delete again.metadata.deletionTimestamp;
  delete again.metadata.deletionGracePeriodSeconds;
  again.spec.nodeName = 'worker-2';
  return again;
}

interface Populated {
  keep: string[];
  finished: string[];
  evict: string[];
  pdb: string[];
  statefulset: string[];
}

/** 110 pods on worker-1: every kind kubectl drain tells apart. */
function populate110(c: Cluster): Populated {
  const { fake } = c;
  for (const n of ['worker-1', 'worker-2', 'worker-3']) fake.addNode(makeNode({ name: n, allocatable: { cpu: '32', memory: '128Gi', pods: '250' } }));
  const p: Populated = { keep: [], finished: [], evict: [], pdb: [], statefulset: [] };
  const add = (list: string[], f: Parameters<typeof makePod>[0]): void => {
    fake.addPod(makePod({ requests: { cpu: '100m', memory: '128Mi' }, ...f }));
    list.push(`${f.namespace ?? 'default'}/${f.name}`);
  };
  for (const ds of ['kube-proxy', 'node-exporter', 'fluent-bit', 'calico-node', 'csi-node', 'npd']) add(p.keep, { name: `${ds}-x7k2p`, namespace: 'kube-system', node: SELF, kind: 'DaemonSet' });
  for (const m of ['etcd', 'haproxy']) add(p.keep, { name: `${m}-${SELF}`, namespace: 'kube-system', node: SELF, kind: 'mirror' });
  add(p.finished, { name: 'backup-28511', node: SELF, kind: 'Job', phase: 'Succeeded' });
  add(p.finished, { name: 'backup-28512', node: SELF, kind: 'Job', phase: 'Failed' });
  add(p.finished, { name: 'oneoff-done', node: SELF, kind: 'unmanaged', phase: 'Succeeded', emptyDir: true });
  add(p.finished, { name: 'ds-finished-x', node: SELF, kind: 'DaemonSet', phase: 'Failed' });
  for (let i = 0; i < 5; i++) add(p.evict, { name: `cache-${i}`, node: SELF, emptyDir: true, terminationGracePeriodSeconds: 2 });
  for (let i = 0; i < 3; i++) add(p.evict, { name: `debug-${i}`, node: SELF, kind: 'unmanaged' });
  for (let i = 0; i < 10; i++) add(p.pdb, { name: `db-${i}`, namespace: 'data', node: SELF, labels: { app: 'db' }, terminationGracePeriodSeconds: 1 });
  for (let i = 0; i < 2; i++) add(p.statefulset, { name: `kafka-${i}`, namespace: 'data', node: SELF, kind: 'StatefulSet', terminationGracePeriodSeconds: 1 });
  for (let i = 0; p.keep.length + p.finished.length + p.evict.length + p.pdb.length + p.statefulset.length < 110; i++) {
    add(p.evict, { name: `web-${String(i).padStart(3, '0')}`, namespace: i % 3 ? 'shop' : 'default', node: SELF, terminationGracePeriodSeconds: i % 4 });
  }
  // Load on the other nodes, for the capacity guard.
  for (let i = 0; i < 20; i++) fake.addPod(makePod({ name: `other-${i}`, node: i % 2 ? 'worker-2' : 'worker-3', requests: { cpu: '500m', memory: '1Gi' } }));
  return p;
}

function evictions(c: Cluster): { pod: string; status: number; at: number }[] {
  return c.fake.requests
    .filter((r) => r.method === 'POST' && r.path.endsWith('/eviction'))
    .map((r) => {
      const seg = r.path.split('/');
      return { pod: `${seg[4]}/${seg[6]}`, status: r.status, at: r.at };
    });
}

t.test('a 110-pod drain: the right pods evicted, deleted and left, PDB 429s retried, then the reboot', async (t) => {
  const c = await startCluster(t, { msPerGraceSecond: 50, recreate: recreateStatefulSet });
  const p = populate110(c);
  t.equal(c.fake.podsOn(SELF).length, 110);
  // The PDB refuses until every one of its pods has been refused once (waited on, not timed).
  let allowAt = Number.MAX_SAFE_INTEGER;
  c.fake.pdbs = [{ namespace: 'data', name: 'db', matchLabels: { app: 'db' }, blockedUntil: allowAt }];
  const a = agentlet(c, SELF, { drain: { deleteEmptyDirData: true, force: true, timeout: '60s' } });
  t.teardown(() => a.controller.stop());
  const unblock = until(() => p.pdb.every((pod) => evictions(c).some((e) => e.pod === pod && e.status === 429)), 60_000, 20).then(() => {
    allowAt = Date.now();
    c.fake.pdbs = [{ namespace: 'data', name: 'db', matchLabels: { app: 'db' }, blockedUntil: allowAt }];
  });

  const r = await a.controller.run({ episodeId: 'ep-110', reason: 'PLEGUnhealthy for 5m, restarts did not help', dryRun: false });
  await unblock;
  t.equal(r.result, 'success', r.detail);
  t.comment(r.drain?.summary);

  const left = c.fake.podsOn(SELF).map((x) => `${x.metadata.namespace}/${x.metadata.name}`).sort();
  t.same(left, [...p.keep].sort(), 'only the DaemonSet and mirror pods are left');
  const ev = evictions(c);
  const evictedOk = new Set(ev.filter((e) => e.status === 201).map((e) => e.pod));
  t.same([...evictedOk].sort(), [...p.evict, ...p.pdb, ...p.statefulset].sort(), 'every other running pod went through the Eviction API');
  t.notOk(ev.some((e) => p.keep.includes(e.pod) || p.finished.includes(e.pod)), 'no eviction for DaemonSet, mirror or finished pods');
  const deletes = c.fake.requests.filter((x) => x.method === 'DELETE').map((x) => `${x.path.split('/')[4]}/${x.path.split('/')[6]}`);
  t.same(deletes.sort(), [...p.finished].sort(), 'finished pods were deleted');
  t.ok(c.fake.pods.has('data/kafka-0') && c.fake.pods.get('data/kafka-0')!.spec.nodeName === 'worker-2', 'StatefulSet pods came back elsewhere with a new UID, and the drain saw them as gone');

  // The PDB: refused with 429 until it allowed, each pod retried at the configured interval, never earlier.
  for (const pod of p.pdb) {
    const tries = ev.filter((e) => e.pod === pod);
    t.ok(tries.length >= 2, `${pod}: refused at least once (${tries.length} tries)`);
    t.ok(tries.slice(0, -1).every((x) => x.status === 429), `${pod}: 429 before it was allowed`);
    t.equal(tries.at(-1)!.status, 201, `${pod}: then evicted`);
    t.ok(tries.at(-1)!.at >= allowAt, `${pod}: evicted only once the PDB allowed it`);
    for (let i = 1; i < tries.length; i++) t.ok(tries[i]!.at - tries[i - 1]!.at >= 180, `${pod}: retry ${i} waited the retry interval`);
  }
  t.equal(r.drain?.refusedByPdb, ev.filter((e) => e.status === 429).length, 'the outcome counts the refusals');

  t.same(a.host.commands.map((x) => x.argv), [['systemctl', 'reboot']], 'one reboot, through the host');
  const node = c.fake.node(SELF);
  t.equal(node.spec.unschedulable, true, 'cordoned');
  t.equal(node.metadata.annotations[CORDONED_BY], `agent/${SELF}`, 'with our mark');
  const plan = JSON.parse(readFileSync(join(a.config.stateDir, 'drain-reboot.json'), 'utf8'));
  t.match(plan, { phase: 'rebooting', bootId: `boot-${SELF}-1`, episodeId: 'ep-110', lease: { namespace: 'kube-system', name: 'nodemedic-reboot-0' }, cordon: { ours: true } });
  t.equal(node.metadata.annotations[CORDON_TOKEN], plan.cordon.token, 'the plan knows the cordon token');
  t.equal(c.fake.leases.get('kube-system/nodemedic-reboot-0')?.spec.holderIdentity, SELF, 'the lease is ours');
  t.same(
    c.fake.events.map((e) => e.reason),
    ['NodemedicCordon', 'NodemedicDrainStarted', 'NodemedicDrainSucceeded', 'NodemedicReboot'],
    'an event for every action, in order',
  );
  t.ok(c.fake.events.every((e) => e.involvedObject.kind === 'Node' && e.involvedObject.name === SELF && e.metadata.namespace === 'default'));
  t.same(a.actions, [
    { action: 'cordon', result: 'success' },
    { action: 'drain', result: 'success' },
    { action: 'reboot', result: 'success' },
  ]);
  const again = await a.controller.run({ episodeId: 'ep-111', reason: 'again', dryRun: false });
  t.equal(again.result, 'skipped', 'a second request while the plan is in flight does nothing');
  t.equal(a.host.reboots, 1);
});

t.test('the default 429 retry interval is kubectl drain\'s 5 s', async (t) => {
  const c = await startCluster(t);
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  c.fake.addPod(makePod({ name: 'db-0', node: SELF, labels: { app: 'db' } }));
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, blockedUntil: Date.now() + 1000 }];
  const a = agentlet(c, SELF, {}, { evictionRetryMs: undefined });
  t.teardown(() => a.controller.stop());
  const r = await a.controller.run({ episodeId: 'e', reason: 'test', dryRun: false });
  t.equal(r.result, 'success', r.detail);
  const tries = evictions(c);
  t.same(tries.map((x) => x.status), [429, 201]);
  const gap = tries[1]!.at - tries[0]!.at;
  t.ok(gap >= 4900 && gap < 6500, `retried after ${gap}ms`);
});

t.test('a PDB that never allows: timeout, rollback (uncordon, lease released), no reboot', async (t) => {
  const c = await startCluster(t, { msPerGraceSecond: 10 });
  for (const n of [SELF, 'worker-2', 'worker-3']) c.fake.addNode(makeNode({ name: n }));
  for (let i = 0; i < 5; i++) c.fake.addPod(makePod({ name: `web-${i}`, node: SELF }));
  for (let i = 0; i < 3; i++) c.fake.addPod(makePod({ name: `db-${i}`, node: SELF, labels: { app: 'db' } }));
  c.fake.addPod(makePod({ name: 'kube-proxy-a', node: SELF, kind: 'DaemonSet' }));
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];
  const a = agentlet(c, SELF, { drain: { timeout: '2s' } });
  t.teardown(() => a.controller.stop());
  const t0 = Date.now();
  const r = await a.controller.run({ episodeId: 'ep-never', reason: 'kubelet down', dryRun: false });
  const took = Date.now() - t0;
  t.equal(r.result, 'failure');
  t.match(r.detail, /timed out after 2s/);
  t.match(r.detail, /rolled back, no reboot/);
  t.ok(took >= 2000 && took < 6000, `gave up at the drain timeout (${took}ms)`);
  t.equal(a.host.commands.length, 0, 'no reboot, no command at all');
  const node = c.fake.node(SELF);
  t.notOk(node.spec.unschedulable, 'uncordoned');
  t.notOk(node.metadata.annotations, 'and our mark is gone');
  const lease = c.fake.leases.get('kube-system/nodemedic-reboot-0')!;
  t.notOk(lease.spec.holderIdentity, 'the lease was released');
  t.same(c.fake.podsOn(SELF).map((x) => x.metadata.name).sort(), ['db-0', 'db-1', 'db-2', 'kube-proxy-a'], 'the PDB-protected pods were never evicted');
  t.same(c.fake.events.map((e) => e.reason), ['NodemedicCordon', 'NodemedicDrainStarted', 'NodemedicDrainFailed', 'NodemedicUncordon', 'NodemedicRollback']);
  t.equal(c.fake.events.find((e) => e.reason === 'NodemedicRollback')!.type, 'Warning');
  t.match(a.actions, [{ action: 'cordon', result: 'success' }, { action: 'drain', result: 'failure' }, { action: 'uncordon', result: 'success' }]);
  t.same(a.ends.map((e) => e.outcome), ['rolled-back']);
  t.equal(a.controller.status().plan, null, 'no plan left behind');
});

t.test('drain.forceRebootAfterTimeout: the same stuck PDB, and the node reboots anyway', async (t) => {
  const c = await startCluster(t);
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  c.fake.addPod(makePod({ name: 'db-0', node: SELF, labels: { app: 'db' } }));
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];
  const a = agentlet(c, SELF, { drain: { timeout: '1s', forceRebootAfterTimeout: true } });
  t.teardown(() => a.controller.stop());
  const r = await a.controller.run({ episodeId: 'e', reason: 'test', dryRun: false });
  t.equal(r.result, 'success', r.detail);
  t.equal(a.host.reboots, 1);
  t.equal(c.fake.node(SELF).spec.unschedulable, true, 'stays cordoned through the reboot');
});

t.test('two PDBs on one pod (500): the drain fails at once and rolls back', async (t) => {
  const c = await startCluster(t);
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  c.fake.addPod(makePod({ name: 'db-0', node: SELF, labels: { app: 'db', tier: 'x' } }));
  c.fake.pdbs = [
    { namespace: 'default', name: 'a', matchLabels: { app: 'db' } },
    { namespace: 'default', name: 'b', matchLabels: { tier: 'x' } },
  ];
  const a = agentlet(c, SELF, { drain: { timeout: '30s' } });
  t.teardown(() => a.controller.stop());
  const t0 = Date.now();
  const r = await a.controller.run({ episodeId: 'e', reason: 'test', dryRun: false });
  t.equal(r.result, 'failure');
  t.match(r.detail, /more than one PodDisruptionBudget/);
  t.ok(Date.now() - t0 < 5000, 'not retried until the timeout');
  t.equal(a.host.reboots, 0);
  t.notOk(c.fake.node(SELF).spec.unschedulable);
});

t.test('emptyDir and unmanaged pods without the drain options: refused before anything changes', async (t) => {
  const c = await startCluster(t);
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  c.fake.addPod(makePod({ name: 'cache-0', node: SELF, emptyDir: true }));
  c.fake.addPod(makePod({ name: 'debug', node: SELF, kind: 'unmanaged' }));
  c.fake.addPod(makePod({ name: 'web-0', node: SELF }));
  const a = agentlet(c, SELF);
  t.teardown(() => a.controller.stop());
  const r = await a.controller.run({ episodeId: 'e', reason: 'test', dryRun: false });
  t.equal(r.result, 'skipped');
  t.equal(r.refusedBy?.guard, 'drain-plan');
  t.match(r.detail, /emptyDir volumes \(.*remediation\.drain\.deleteEmptyDirData.*\): default\/cache-0;/);
  t.match(r.detail, /no controller \(.*remediation\.drain\.force.*\): default\/debug$/);
  // The guards run while holding the reboot slot: the only writes are the slot taken and given back, and the event.
  t.same(c.fake.requests.filter((x) => x.method !== 'GET' && !x.path.endsWith('/events')).map((x) => `${x.method} ${x.path.replace(/^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/[^/]+\/leases(\/.*)?$/, 'leases')}`), ['POST leases', 'PUT leases'], 'no write but the slot, taken and given back, and the event');
  t.notOk(c.fake.leases.get('kube-system/nodemedic-reboot-0')!.spec.holderIdentity, 'the slot is free again');
  t.equal(c.fake.events.length, 1);
  t.equal(c.fake.events[0]!.reason, 'NodemedicGuardRefused');
  t.equal(c.fake.podsOn(SELF).length, 3);
  t.same(a.actions, [{ action: 'drain', result: 'skipped' }]);
});

t.test('dry run: guards and the plan, no lease, no cordon, no eviction', async (t) => {
  const c = await startCluster(t);
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  c.fake.addPod(makePod({ name: 'web-0', node: SELF }));
  c.fake.addPod(makePod({ name: 'ds-0', node: SELF, kind: 'DaemonSet' }));
  const a = agentlet(c, SELF);
  t.teardown(() => a.controller.stop());
  const r = await a.controller.requestDrainReboot({ episodeId: 'e', reason: 'test', dryRun: true });
  t.equal(r.result, 'dry_run');
  t.match(r.detail, /evict 1 pods.*leave 1 DaemonSet\/mirror/);
  t.same(c.fake.requests.filter((x) => x.method !== 'GET').map((x) => x.path), ['/api/v1/namespaces/default/events']);
  t.equal(c.fake.events[0]!.reason, 'NodemedicDryRun');
  t.equal(a.host.commands.length, 0);
});
