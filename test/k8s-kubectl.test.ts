/**
 * The reference client against the fake: if real `kubectl drain` cordons, leaves DaemonSet and mirror
 * pods, retries 429s every 5 s and waits for pods to go, the fake is faithful for the paths kubectl
 * uses (and nodemedic's drain follows the same ones).
 */
import { execFile } from 'node:child_process';
import t from 'tap';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { startCluster } from './fake-apiserver/harness.js';
import { requireComponent } from './helpers/require.js';

function kubectl(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('kubectl', args, { timeout: timeoutMs, encoding: 'utf8', env: { ...process.env, KUBECONFIG: '' } }, (e, out, err) => {
      resolve({ code: e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : null) : 0, out, err });
    });
  });
}

t.test('kubectl drain --ignore-daemonsets against the fake', async (t) => {
  if (!(await requireComponent(t, 'kubectl', ['kubectl'], false))) return;
  // client-go sends no bearer token over plain HTTP, so this fake serves anonymous requests.
  const c = await startCluster(t, { msPerGraceSecond: 20, anonymous: true });
  c.fake.addNode(makeNode({ name: 'w1' }));
  c.fake.addNode(makeNode({ name: 'w2' }));
  c.fake.addPod(makePod({ name: 'ds-a', namespace: 'kube-system', node: 'w1', kind: 'DaemonSet' }));
  c.fake.addPod(makePod({ name: 'etcd-w1', namespace: 'kube-system', node: 'w1', kind: 'mirror' }));
  for (let i = 0; i < 4; i++) c.fake.addPod(makePod({ name: `web-${i}`, node: 'w1', terminationGracePeriodSeconds: 2 }));
  c.fake.addPod(makePod({ name: 'db-0', node: 'w1', labels: { app: 'db' } }));
  c.fake.addPod(makePod({ name: 'done', node: 'w1', kind: 'Job', phase: 'Succeeded' }));
  c.fake.addPod(makePod({ name: 'elsewhere', node: 'w2' }));
  const allowAt = Date.now() + 3000;
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, blockedUntil: allowAt }];
  const r = await kubectl(['--kubeconfig', c.kubeconfig, 'drain', 'w1', '--ignore-daemonsets', '--timeout=60s']);
  t.equal(r.code, 0, `kubectl drain succeeded\n${r.out}\n${r.err}`);
  t.match(r.out, /node\/w1 cordoned/);
  t.match(r.err + r.out, /Warning: ignoring DaemonSet-managed Pods: kube-system\/ds-a/);
  t.match(r.err + r.out, /will retry after 5s\): Cannot evict pod as it would violate the pod's disruption budget/);
  t.match(r.out, /node\/w1 drained/);
  t.equal(c.fake.node('w1').spec.unschedulable, true, 'cordoned through a PATCH the fake understood');
  t.same(c.fake.podsOn('w1').map((p) => p.metadata.name).sort(), ['ds-a', 'etcd-w1'], 'DaemonSet and mirror pods left');
  t.ok(c.fake.pods.has('default/elsewhere'));
  const dbTries = c.fake.requests.filter((x) => x.path === '/api/v1/namespaces/default/pods/db-0/eviction');
  t.ok(dbTries.length >= 2 && dbTries.slice(0, -1).every((x) => x.status === 429) && dbTries.at(-1)!.status === 201, `429s then 201 (${dbTries.map((x) => x.status).join(',')})`);
  for (let i = 1; i < dbTries.length; i++) {
    const gap = dbTries[i]!.at - dbTries[i - 1]!.at;
    t.ok(gap >= 4900 && gap < 7000, `kubectl retried after ${gap}ms`);
  }
  const patch = c.fake.requests.find((x) => x.method === 'PATCH');
  t.equal(patch?.contentType, 'application/strategic-merge-patch+json', 'kubectl cordons with a strategic merge patch');

  const u = await kubectl(['--kubeconfig', c.kubeconfig, 'uncordon', 'w1']);
  t.equal(u.code, 0, u.err);
  t.notOk(c.fake.node('w1').spec.unschedulable, 'kubectl uncordon worked too');
});
