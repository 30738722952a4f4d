/**
 * The fake API server behaves like the real one where nodemedic depends on it, seen through the real
 * @kubernetes/client-node and a real kubeconfig file (and, for the raw content types, plain fetch).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { connectKubernetes, KubeApiError } from '../platform/kube-client.js';
import { MicroTime } from '../remediations/kubernetes/lease.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { FakeApiServer } from './fake-apiserver/server.js';

async function setup(t: Tap.Test, opts: ConstructorParameters<typeof FakeApiServer>[0] = {}) {
  const fake = new FakeApiServer(opts);
  await fake.start();
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-k8s-'));
  t.teardown(async () => {
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const kubeconfig = fake.writeKubeconfig(dir);
  const access = await connectKubernetes(kubeconfig, { requestTimeoutMs: 2000, pageSize: 7 });
  if (!access) throw new Error('no access');
  return { fake, api: access.api, kubeconfig, dir };
}

async function raw(fake: FakeApiServer, method: string, path: string, contentType: string, body: unknown) {
  const res = await fetch(`${fake.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${fake.token}`, 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function rejection(p: Promise<unknown>): Promise<KubeApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KubeApiError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

t.test('kubeconfig: plain http without insecure-skip-tls-verify is refused up front, a missing file names the key', async (t) => {
  const { dir } = await setup(t);
  const { writeFileSync } = await import('node:fs');
  const bad = join(dir, 'bad');
  writeFileSync(bad, 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n');
  await t.rejects(connectKubernetes(bad), /insecure-skip-tls-verify/);
  await t.rejects(connectKubernetes(join(dir, 'nope')), /kubernetes\.kubeconfig: cannot read/);
  t.equal(await connectKubernetes('', { env: {} }), undefined, 'no kubeconfig, not in a pod: no access');
});

t.test('nodes: strategic merge through client-node; merge and JSON patch by content type; 415 otherwise', async (t) => {
  const { fake, api } = await setup(t);
  fake.addNode(makeNode({ name: 'n1' }));
  const rv0 = fake.node('n1').metadata.resourceVersion;
  const n = await api.patchNode('n1', { spec: { unschedulable: true }, metadata: { annotations: { a: 'b' } } });
  t.equal(n.spec?.unschedulable, true);
  t.equal(fake.requests.at(-1)!.contentType, 'application/strategic-merge-patch+json', 'client-node sent a strategic merge patch');
  t.not(fake.node('n1').metadata.resourceVersion, rv0, 'resourceVersion moved');

  // Go omitempty: unschedulable false and empty annotations vanish.
  await api.patchNode('n1', { spec: { unschedulable: false }, metadata: { annotations: { a: null } } });
  t.notOk('unschedulable' in fake.node('n1').spec);
  t.notOk('annotations' in fake.node('n1').metadata);

  const stale = await rejection(api.patchNode('n1', { metadata: { resourceVersion: rv0 }, spec: { unschedulable: true } }));
  t.equal(stale.status, 409, 'a stale resourceVersion in a patch is a conflict');
  t.equal(fake.node('n1').spec.unschedulable, undefined, 'and changes nothing');

  let r = await raw(fake, 'PATCH', '/api/v1/nodes/n1', 'application/merge-patch+json', { metadata: { labels: { x: 'y' } } });
  t.equal(r.status, 200);
  t.equal(fake.node('n1').metadata.labels.x, 'y');
  r = await raw(fake, 'PATCH', '/api/v1/nodes/n1', 'application/json-patch+json', [{ op: 'add', path: '/metadata/labels/z', value: '1' }, { op: 'test', path: '/metadata/labels/x', value: 'y' }]);
  t.equal(r.status, 200);
  t.equal(fake.node('n1').metadata.labels.z, '1');
  r = await raw(fake, 'PATCH', '/api/v1/nodes/n1', 'application/json-patch+json', { spec: { unschedulable: true } });
  t.equal(r.status, 400, 'an object sent as a JSON patch is a 400, as with client-node without the Content-Type');
  r = await raw(fake, 'PATCH', '/api/v1/nodes/n1', 'application/json-patch+json', [{ op: 'test', path: '/metadata/labels/x', value: 'nope' }]);
  t.equal(r.status, 422, 'a failed test op');
  r = await raw(fake, 'PATCH', '/api/v1/nodes/n1', 'application/json', { spec: {} });
  t.equal(r.status, 415);
  t.equal(r.body.kind, 'Status');
  r = await raw(fake, 'PATCH', '/api/v1/nodes/n1', 'application/strategic-merge-patch+json', { spec: { unschedulable: 'yes' } });
  t.equal(r.status, 400, 'a wrongly typed field is refused');
  r = await raw(fake, 'PATCH', '/api/v1/nodes/n1', 'application/strategic-merge-patch+json', { status: { conditions: [{ type: 'X', status: 'True' }] } });
  t.equal(r.status, 200);
  t.notOk(fake.node('n1').status.conditions.some((c: any) => c.type === 'X'), 'status changes through the main resource are ignored');
  const res = await fetch(`${fake.url}/api/v1/nodes/n1`);
  t.equal(res.status, 401, 'no token, no access');
  await res.body?.cancel();
});

t.test('nodes/status: conditions merge on type, others kept, transition validated', async (t) => {
  const { fake, api } = await setup(t);
  fake.addNode(makeNode({ name: 'n1' }));
  const ts = '2026-11-27T10:00:00Z';
  await api.patchNodeStatus('n1', { status: { conditions: [{ type: 'KubeletUnhealthy', status: 'False', reason: 'KubeletIsHealthy', message: 'ok', lastHeartbeatTime: ts, lastTransitionTime: ts }] } });
  await api.patchNodeStatus('n1', { status: { conditions: [{ type: 'KubeletUnhealthy', status: 'True', reason: 'KubeletDown', message: 'down', lastHeartbeatTime: ts, lastTransitionTime: ts }, { type: 'PLEGUnhealthy', status: 'False', reason: 'PLEGIsHealthy', message: 'ok' }] } });
  const conds = fake.node('n1').status.conditions as any[];
  t.same(conds.map((c) => c.type), ['Ready', 'KubeletUnhealthy', 'PLEGUnhealthy'], 'merged on type, the kubelet Ready kept');
  t.equal(conds.find((c) => c.type === 'KubeletUnhealthy').status, 'True');
  const bad = await rejection(api.patchNodeStatus('n1', { status: { conditions: [{ type: 'PLEGUnhealthy', status: 'Maybe' }] } }));
  t.equal(bad.status, 422);
  const noKey = await rejection(api.patchNodeStatus('n1', { status: { conditions: [{ status: 'True' }] } }));
  t.equal(noKey.status, 422, 'a list element without its merge key');
  await api.patchNodeStatus('n1', { spec: { unschedulable: true }, status: { conditions: [{ type: 'PLEGUnhealthy', $patch: 'delete' }] } });
  t.notOk(fake.node('n1').spec.unschedulable, 'spec changes through status are ignored');
  t.notOk((fake.node('n1').status.conditions as any[]).some((c) => c.type === 'PLEGUnhealthy'), '$patch: delete removes a list element');
});

t.test('pods: fieldSelector on spec.nodeName and status.phase, paged with limit/continue', async (t) => {
  const { fake, api } = await setup(t);
  for (let i = 0; i < 23; i++) fake.addPod(makePod({ name: `a-${String(i).padStart(2, '0')}`, node: 'n1', namespace: i % 2 ? 'ns1' : 'ns2' }));
  for (let i = 0; i < 5; i++) fake.addPod(makePod({ name: `b-${i}`, node: 'n2', phase: i ? 'Running' : 'Succeeded' }));
  const pods = await api.listPods('spec.nodeName=n1');
  t.equal(pods.length, 23);
  t.equal(new Set(pods.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`)).size, 23, 'no duplicates across pages');
  const lists = fake.requests.filter((r) => r.path === '/api/v1/pods');
  t.equal(lists.length, 4, '23 pods in pages of 7');
  t.ok(lists.slice(1).every((r) => r.query.get('continue')), 'later pages carry the continue token');
  t.equal((await api.listPods('spec.nodeName=n2,status.phase!=Succeeded')).length, 4);
  const bad = await rejection(api.listPods('spec.bogus=1'));
  t.equal(bad.status, 400);
  const gone = await fetch(`${fake.url}/api/v1/pods?limit=2&continue=${Buffer.from(JSON.stringify({ id: 'x', offset: 2 })).toString('base64url')}`, { headers: { authorization: `Bearer ${fake.token}` } });
  t.equal(gone.status, 410, 'an unknown continue token is expired');
  await gone.body?.cancel();
});

t.test('eviction: 201 and gone after grace; 429 under a PDB; 500 with two PDBs; 404; terminal pods bypass the PDB', async (t) => {
  const { fake, api } = await setup(t, { msPerGraceSecond: 100 });
  fake.addPod(makePod({ name: 'web-1', node: 'n1', labels: { app: 'web' }, terminationGracePeriodSeconds: 2 }));
  fake.addPod(makePod({ name: 'db-1', node: 'n1', labels: { app: 'db' } }));
  fake.addPod(makePod({ name: 'db-done', node: 'n1', labels: { app: 'db' }, phase: 'Succeeded' }));
  fake.addPod(makePod({ name: 'both', node: 'n1', labels: { app: 'web', tier: 'x' } }));
  fake.pdbs = [
    { namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true },
    { namespace: 'default', name: 'web', matchLabels: { app: 'web' } },
    { namespace: 'default', name: 'tier', matchLabels: { tier: 'x' } },
  ];
  await api.evictPod('default', 'web-1');
  t.equal(fake.requests.at(-1)!.status, 201);
  t.ok(fake.pods.get('default/web-1')!.metadata.deletionTimestamp, 'terminating');
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(fake.pods.has('default/web-1'), 'gone after its grace period');
  const e429 = await rejection(api.evictPod('default', 'db-1'));
  t.equal(e429.status, 429);
  t.match(e429.detail, /disruption budget/);
  t.ok(fake.pods.has('default/db-1'), 'still there');
  await api.evictPod('default', 'db-done');
  t.notOk(fake.pods.has('default/db-done'), 'a finished pod is evicted regardless of its PDB');
  const e500 = await rejection(api.evictPod('default', 'both'));
  t.equal(e500.status, 500);
  t.match(e500.detail, /more than one PodDisruptionBudget/);
  const e404 = await rejection(api.evictPod('default', 'nope'));
  t.equal(e404.status, 404);
  fake.pdbs[0]!.never = false;
  fake.pdbs[0]!.blockedUntil = Date.now() + 200;
  t.equal((await rejection(api.evictPod('default', 'db-1'))).status, 429, 'blocked until its time');
  await new Promise((r) => setTimeout(r, 250));
  await api.evictPod('default', 'db-1');
  t.notOk(fake.pods.has('default/db-1'), 'then allowed');
});

t.test('leases: create 409 when taken, update 409 when stale, MicroTime enforced', async (t) => {
  const { fake, api } = await setup(t);
  const spec = { holderIdentity: 'a', leaseDurationSeconds: 5, acquireTime: new MicroTime(Date.now()), renewTime: new MicroTime(Date.now()) };
  const l = await api.createLease('kube-system', { metadata: { name: 'l' }, spec });
  t.match(fake.requests.at(-1)!.body, { spec: { renewTime: /\.\d{6}Z$/ } }, 'six fractional digits on the wire');
  t.equal((await rejection(api.createLease('kube-system', { metadata: { name: 'l' }, spec }))).status, 409);
  const l2 = await api.replaceLease('kube-system', 'l', { ...l, spec: { ...spec, holderIdentity: 'b' } });
  t.equal(l2.spec?.holderIdentity, 'b');
  t.equal((await rejection(api.replaceLease('kube-system', 'l', { ...l, spec: { ...spec, holderIdentity: 'c' } }))).status, 409, 'stale resourceVersion');
  const r = await raw(fake, 'POST', '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases', 'application/json', { metadata: { name: 'm' }, spec: { holderIdentity: 'x', renewTime: new Date().toISOString() } });
  t.equal(r.status, 400, 'a millisecond time is not a MicroTime');
  t.equal((await rejection(api.readLease('kube-system', 'zz'))).status, 404);
});

t.test('events: a Node event lives in default; eventTime must be a MicroTime', async (t) => {
  const { fake, api } = await setup(t);
  const base = { metadata: { name: 'n1.1' }, involvedObject: { kind: 'Node', name: 'n1' }, reason: 'Test', message: 'm', firstTimestamp: new Date(), lastTimestamp: new Date() };
  await api.createEvent('default', base);
  t.equal(fake.events.length, 1);
  t.equal((await rejection(api.createEvent('kube-system', { ...base, metadata: { name: 'n1.2' } }))).status, 422);
  const r = await raw(fake, 'POST', '/api/v1/namespaces/default/events', 'application/json', { ...base, metadata: { name: 'n1.3' }, eventTime: '2026-11-27T10:00:00.123Z' });
  t.equal(r.status, 400);
});

t.test('outages: 503 and a hung server both end in a KubeApiError within the request timeout', async (t) => {
  const { fake, api } = await setup(t);
  fake.addNode(makeNode({ name: 'n1' }));
  fake.fault = 'unavailable';
  t.equal((await rejection(api.getNode('n1'))).status, 503);
  fake.fault = 'hang';
  const t0 = Date.now();
  const e = await rejection(api.getNode('n1'));
  t.equal(e.status, 0);
  t.equal(e.reason, 'Timeout');
  t.ok(Date.now() - t0 < 4000, 'bounded by the 2 s request timeout');
  fake.fault = 'none';
  t.equal((await api.getNode('n1')).metadata?.name, 'n1', 'recovers');
});
