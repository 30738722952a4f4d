/**
 * The fake API server's watches (test/fake-apiserver/watch.ts) against the API's documented
 * behaviour (api-concepts, "Efficient detection of changes", "Watch bookmarks", 410 Gone) at the HTTP
 * level, core resources and coordination.k8s.io leases alike, and against the reference client: real
 * `kubectl get nodes --watch` sees a change.
 */
import { spawn } from 'node:child_process';
import t from 'tap';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { startCluster, until } from './fake-apiserver/harness.js';
import { requireComponent } from './helpers/require.js';

/** Opens a watch and collects its events until `stop()` or the server ends it. */
async function watch(url: string, token: string, path: string) {
  const ac = new AbortController();
  const res = await fetch(url + path, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
  const events: { type: string; object: any }[] = [];
  let buf = '';
  const done = (async () => {
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += Buffer.from(chunk).toString('utf8');
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          events.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
      }
    } catch {
      // aborted
    }
  })();
  return { status: res.status, events, done, stop: () => ac.abort() };
}

t.test('list then watch from its resourceVersion: only later changes, filtered by the field selector', async (t) => {
  const c = await startCluster(t);
  const { fake } = c;
  fake.addNode(makeNode({ name: 'n1' }));
  fake.addNode(makeNode({ name: 'n2' }));
  const list = (await (await fetch(`${fake.url}/api/v1/nodes?fieldSelector=metadata.name%3Dn1`, { headers: { authorization: `Bearer ${fake.token}` } })).json()) as any;
  const rv = list.metadata.resourceVersion;
  const w = await watch(fake.url, fake.token, `/api/v1/nodes?watch=1&fieldSelector=metadata.name%3Dn1&resourceVersion=${rv}`);
  t.equal(w.status, 200);
  fake.updateNode('n2', (n) => (n.metadata.labels = { a: '1' }));
  fake.updateNode('n1', (n) => (n.metadata.labels = { a: '2' }));
  await until(() => w.events.length >= 1, 5000);
  t.same(w.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['MODIFIED n1'], "n2's change is not this watch's business");
  t.equal(w.events[0]!.object.metadata.resourceVersion, fake.node('n1').metadata.resourceVersion, 'the event carries the new resourceVersion');
  w.stop();

  // Without a resourceVersion: the current state as synthetic ADDED events first.
  const w2 = await watch(fake.url, fake.token, '/api/v1/pods?watch=true&fieldSelector=spec.nodeName%3Dn1');
  fake.addPod(makePod({ name: 'a', node: 'n1' }));
  fake.addPod(makePod({ name: 'b', node: 'n2' }));
  fake.pods.delete('default/a');
  await until(() => w2.events.length >= 2, 5000);
  t.same(w2.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED a', 'DELETED a']);
  t.ok(Number(w2.events[1]!.object.metadata.resourceVersion) > Number(w2.events[0]!.object.metadata.resourceVersion), 'a deletion has its own resourceVersion');
  w2.stop();
});

t.test('an object leaving the selector is DELETED for the watcher; entering it, ADDED', async (t) => {
  const { fake } = await startCluster(t);
  const pod = makePod({ name: 'pre', node: 'n9' });
  pod.status.nominatedNodeName = 'n1';
  fake.addPod(pod);
  const w = await watch(fake.url, fake.token, `/api/v1/pods?watch=true&fieldSelector=status.nominatedNodeName%3Dn1&resourceVersion=${fake.watches.latest}`);
  const moved = structuredClone(fake.pods.get('default/pre')!);
  moved.status.nominatedNodeName = 'n2';
  fake.pods.set('default/pre', moved);
  const back = structuredClone(moved);
  back.status.nominatedNodeName = 'n1';
  fake.pods.set('default/pre', back);
  await until(() => w.events.length >= 2, 5000);
  t.same(w.events.map((e) => e.type), ['DELETED', 'ADDED']);
  w.stop();
});

t.test('410 Gone as an ERROR event with an Expired Status; timeoutSeconds ends the stream; bookmarks; 403 when forbidden', async (t) => {
  const { fake } = await startCluster(t);
  fake.addNode(makeNode({ name: 'n1' }));
  const old = fake.watches.latest;
  fake.updateNode('n1', (n) => (n.metadata.labels = { x: 'y' }));
  fake.watches.expire();
  const w = await watch(fake.url, fake.token, `/api/v1/nodes?watch=true&resourceVersion=${old}`);
  await w.done;
  t.equal(w.status, 200, 'the watch request itself succeeds');
  t.match(w.events, [{ type: 'ERROR', object: { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410, message: /too old resource version/ } }]);

  const t0 = Date.now();
  const w2 = await watch(fake.url, fake.token, `/api/v1/nodes?watch=true&resourceVersion=${fake.watches.latest}&timeoutSeconds=1&allowWatchBookmarks=true`);
  fake.watches.bookmarkNow();
  await w2.done;
  t.ok(Date.now() - t0 >= 900 && Date.now() - t0 < 5000, `timeoutSeconds=1 ended it after ${Date.now() - t0} ms`);
  t.match(w2.events, [{ type: 'BOOKMARK', object: { kind: 'Node', metadata: { resourceVersion: String(fake.watches.latest) } } }]);

  fake.watches.forbidden = true;
  const w3 = await watch(fake.url, fake.token, '/api/v1/nodes?watch=true');
  t.equal(w3.status, 403);
  const bad = await fetch(`${fake.url}/api/v1/nodes?watch=true&fieldSelector=spec.foo%3Dx`, { headers: { authorization: `Bearer ${fake.token}` } });
  t.equal(bad.status, 400, 'an unsupported field label is 400, as for a list');
});

t.test('leases (coordination.k8s.io/v1) in a namespace: list then watch by name, renewals as events, 410, bookmarks, silence', async (t) => {
  const { fake } = await startCluster(t);
  const auth = { headers: { authorization: `Bearer ${fake.token}` } };
  const base = '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases';
  const kubelet = (node: string, ns = 'kube-node-lease') =>
    fake.writeLease({ metadata: { name: node, namespace: ns }, spec: { holderIdentity: node, leaseDurationSeconds: 40, renewTime: new Date().toISOString().replace('Z', '000Z') } });
  kubelet('n1');
  kubelet('n2');
  kubelet('n1', 'kube-system');
  const list = (await (await fetch(`${fake.url}${base}?fieldSelector=metadata.name%3Dn1&resourceVersion=0`, auth)).json()) as any;
  t.match(list, { kind: 'LeaseList', apiVersion: 'coordination.k8s.io/v1', metadata: { resourceVersion: String(fake.watches.latest) } });
  t.same(list.items.map((l: any) => `${l.metadata.namespace}/${l.metadata.name}`), ['kube-node-lease/n1'], 'the namespace and the field selector apply');
  const rv = list.metadata.resourceVersion;
  const w = await watch(fake.url, fake.token, `${base}?watch=1&fieldSelector=metadata.name%3Dn1&resourceVersion=${rv}&allowWatchBookmarks=true`);
  t.equal(w.status, 200);
  kubelet('n2');
  kubelet('n1', 'kube-system');
  const renewed = kubelet('n1');
  await until(() => w.events.length >= 1, 5000);
  t.same(w.events.map((e) => `${e.type} ${e.object.metadata.namespace}/${e.object.metadata.name}`), ['MODIFIED kube-node-lease/n1'], "another node's lease, or the same name in another namespace, is not this watch's business");
  t.equal(w.events[0]!.object.metadata.resourceVersion, renewed.metadata.resourceVersion, "a renewal carries the lease's new resourceVersion");
  t.equal(w.events[0]!.object.spec.renewTime, renewed.spec.renewTime);
  fake.watches.bookmarkNow();
  await until(() => w.events.length >= 2, 5000);
  t.match(w.events[1], { type: 'BOOKMARK', object: { kind: 'Lease', apiVersion: 'coordination.k8s.io/v1', metadata: { resourceVersion: String(fake.watches.latest) } } });

  // Silenced: still open, nothing more arrives (a half-open connection); a new watch is served.
  t.equal(fake.watches.silence('leases'), 1);
  kubelet('n1');
  fake.watches.bookmarkNow();
  await new Promise((r) => setTimeout(r, 200));
  t.equal(w.events.length, 2, 'a silenced watch gets neither events nor bookmarks');
  t.equal(fake.watches.openCount('leases'), 1, 'and stays open');
  const w2 = await watch(fake.url, fake.token, `${base}?watch=1&fieldSelector=metadata.name%3Dn1&resourceVersion=${rv}`);
  await until(() => w2.events.length >= 2, 5000);
  t.same(w2.events.map((e) => e.type), ['MODIFIED', 'MODIFIED'], 'a new watch from the old version replays both renewals since');
  w.stop();
  w2.stop();

  // Resuming from a version the history no longer holds: 200, then an ERROR event with 410 Expired.
  fake.watches.expire('leases');
  const gone = await watch(fake.url, fake.token, `${base}?watch=1&fieldSelector=metadata.name%3Dn1&resourceVersion=${rv}`);
  await gone.done;
  t.match(gone.events, [{ type: 'ERROR', object: { code: 410, reason: 'Expired' } }]);
  const bad = await fetch(`${fake.url}${base}?watch=1&fieldSelector=spec.holderIdentity%3Dn1`, auth);
  t.equal(bad.status, 400, 'a field label leases do not support is 400');
  fake.watches.forbidden = true;
  const denied = await fetch(`${fake.url}${base}?watch=1`, auth);
  t.equal(denied.status, 403);
  t.match(await denied.json(), { message: /cannot watch resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease"/ });
});

t.test('real kubectl get nodes --watch sees a change through the fake', async (t) => {
  if (!(await requireComponent(t, 'kubectl', ['kubectl'], false))) return;
  const c = await startCluster(t, { anonymous: true });
  c.fake.addNode(makeNode({ name: 'w1' }));
  const proc = spawn('kubectl', ['--kubeconfig', c.kubeconfig, 'get', 'nodes', '--watch', '-o', 'custom-columns=NAME:.metadata.name,UNSCHEDULABLE:.spec.unschedulable'], { env: { ...process.env, KUBECONFIG: '' } });
  let out = '';
  let err = '';
  proc.stdout.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
  t.teardown(() => void proc.kill('SIGKILL'));
  await until(() => /w1\s+<none>/.test(out), 30_000).catch(() => {
    throw new Error(`kubectl did not list:\n${out}\n${err}`);
  });
  await until(() => c.fake.watches.openCount('nodes') === 1, 30_000);
  c.fake.updateNode('w1', (n) => (n.spec.unschedulable = true));
  await until(() => /w1\s+true/.test(out), 30_000).catch(() => {
    throw new Error(`kubectl did not see the change:\n${out}\n${err}`);
  });
  const w = c.fake.requests.find((r) => r.query.get('watch') === 'true' || r.query.get('watch') === '1');
  t.ok(w, 'kubectl watched');
  t.ok(Number(w!.query.get('resourceVersion')) > 0, `from the list's resourceVersion (${w!.query.get('resourceVersion')})`);
  t.pass('kubectl printed the change');
});
