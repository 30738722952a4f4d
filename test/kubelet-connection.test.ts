/**
 * KubeletDisconnected (issue 16): against the fake API server through the real client-node, with a
 * real HTTP healthz. Time from a ManualClock, so "not renewed for 40 s" needs no waiting; the lease is
 * renewed (or not) as a kubelet would (test/fake-apiserver/node-lease.ts).
 *
 * Issue 13: the Lease and the Node come from watch caches, so a healthy node costs no request per run;
 * a lease that looks stale is read directly before it is a problem (a silent watch is caught and
 * re-opened; an API that does not answer is unknown even while an old watch still streams). Each
 * claim about requests is read from the fake's request log.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import t from 'tap';
import { ManualClock } from '../platform/clock.js';
import { RealHost } from '../platform/host.js';
import { lazyKubeAccess } from '../platform/kube-client.js';
import { judgeConnection, kubeletConnectionCheck } from '../checks/kubelet-connection.js';
import type { Finding } from '../checks/types.js';
import { nodeWithReady, startFakeCluster } from './fake-apiserver/pod-states.js';
import { NodeLeaseRenewer } from './fake-apiserver/node-lease.js';
import type { FakeApiServer } from './fake-apiserver/server.js';
import { until } from './fake-apiserver/harness.js';
import { caughtUp, watchesLost } from './helpers/cluster-view.js';

const NODE = 'worker-3';

t.test('the verdict', async (t) => {
  const h200 = { kind: 'response', status: 200, body: 'ok', latencyMs: 1 } as const;
  const h500 = { kind: 'response', status: 500, body: 'x', latencyMs: 1 } as const;
  t.equal(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 0, readyStatus: 'True', healthz: undefined, seenBy: 'watch' }, 40_000).reason, 'KubeletConnected');
  t.equal(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 39_999, readyStatus: 'True', healthz: h200, seenBy: 'read' }, 40_000).status, 'ok', 'below staleAfter');
  t.equal(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 40_000, readyStatus: 'True', healthz: h200, seenBy: 'read' }, 40_000).reason, 'KubeletDisconnected', 'at staleAfter');
  t.equal(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 0, readyStatus: 'Unknown', healthz: h200, seenBy: 'read' }, 40_000).reason, 'KubeletDisconnected', 'Ready Unknown');
  t.match(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 50_000, readyStatus: 'True', healthz: h500, seenBy: 'read' }, 40_000), { status: 'unknown', reason: 'KubeletNotHealthy' });
  t.match(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 50_000, readyStatus: 'True', healthz: { kind: 'timeout', latencyMs: 1 }, seenBy: 'read' }, 40_000), { status: 'unknown' });
});

async function healthz(t: Tap.Test): Promise<{ url: string; set(code: number): void }> {
  let code = 200;
  const srv = http.createServer((_req, res) => {
    res.writeHead(code);
    res.end(code === 200 ? 'ok' : '[-]syncloop failed');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/healthz`, set: (c) => (code = c) };
}

async function setup(t: Tap.Test) {
  const { fake, kubeconfig } = await startFakeCluster(t);
  fake.addNode(nodeWithReady(NODE, { now: Date.now(), status: 'True', sinceAgoMs: 3_600_000 }));
  const hz = await healthz(t);
  const clock = new ManualClock(Date.now());
  const kube = lazyKubeAccess(kubeconfig, { requestTimeoutMs: 3000 });
  const check = kubeletConnectionCheck.create(
    { ...kubeletConnectionCheck.defaults, healthzUrl: hz.url, timeout: '2s' },
    { host: new RealHost({ clock }), logger: pino({ level: 'silent' }), nodeName: NODE, kube },
  );
  t.teardown(() => check.stop?.());
  const run = (): Promise<Finding> => check.run(new AbortController().signal);
  const lease = new NodeLeaseRenewer(fake, NODE);
  return { fake, hz, clock, run, lease };
}

/** The direct reads (GET lease, GET node) among the requests since `from`. */
const gets = (fake: FakeApiServer, from = 0): string[] =>
  fake.requests.slice(from).filter((r) => r.method === 'GET' && !r.query.get('watch') && (r.path.endsWith(`/leases/${NODE}`) || r.path.endsWith(`/nodes/${NODE}`))).map((r) => r.path);
const leaseWatches = (fake: FakeApiServer): number => fake.requests.filter((r) => r.path.endsWith('/leases') && r.query.get('watch')).length;

t.test('against the fake API server', async (t) => {
  const { fake, hz, clock, run, lease } = await setup(t);

  t.match(await run(), { status: 'unknown', reason: 'NoNodeLease' }, 'no lease yet');
  lease.renew();
  await caughtUp(fake);
  t.match(await run(), { status: 'ok', reason: 'KubeletConnected', evidence: { seenBy: 'watch' } }, 'first sight, through the watch');
  clock.advance(30_000);
  lease.renew();
  await caughtUp(fake);
  t.match(await run(), { status: 'ok', reason: 'KubeletConnected' }, 'renewed');
  clock.advance(39_000);
  t.match(await run(), { status: 'ok' }, 'not renewed for 39 s: within staleAfter');
  clock.advance(2000);
  const before = fake.requests.length;
  const gone = await run();
  t.match(gone, { status: 'problem', reason: 'KubeletDisconnected', evidence: { healthz: { status: 200 }, leaseUnchangedFor: '41s', seenBy: 'read' } }, gone.message);
  t.same(gets(fake, before).sort(), [`/api/v1/nodes/${NODE}`, `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${NODE}`], 'confirmed by reading both directly');

  hz.set(500);
  t.match(await run(), { status: 'unknown', reason: 'KubeletNotHealthy' }, 'healthz failing: the kubelet check owns it');
  hz.set(200);

  // An API in a brownout: new requests get 503 while the open watches still stream (a bookmark just
  // came in). The stale lease is then the control plane's trouble: unknown, never a problem.
  fake.fault = 'unavailable';
  fake.watches.bookmarkNow();
  const down = await run();
  t.match(down, { status: 'unknown', reason: 'ApiUnavailable', evidence: { httpStatus: 503 } }, 'the API answering 503: unknown, never a problem');
  fake.fault = 'none';

  lease.renew();
  await caughtUp(fake);
  t.match(await run(), { status: 'ok', evidence: { seenBy: 'watch' } }, 'renewed again: ok at once');
  fake.updateNode(NODE, (n) => (n.status = nodeWithReady(NODE, { now: Date.now(), status: 'Unknown', sinceAgoMs: 60_000 }).status));
  await caughtUp(fake);
  t.match(await run(), { status: 'problem', reason: 'KubeletDisconnected', message: /Ready is Unknown \(NodeStatusUnknown\)/ }, 'Ready Unknown');
});

t.test('idle: with the lease renewing, a run reads the caches and sends nothing', async (t) => {
  const { fake, clock, run, lease } = await setup(t);
  lease.renew();
  t.match(await run(), { status: 'ok' });
  const lists = fake.requests.filter((r) => !r.query.get('watch')).length;
  const before = fake.requests.length;
  for (let i = 0; i < 20; i++) {
    clock.advance(10_000);
    lease.renew();
    await caughtUp(fake);
    t.match(await run(), { status: 'ok', reason: 'KubeletConnected', evidence: { seenBy: 'watch' } });
  }
  t.same(fake.requests.slice(before).map((r) => `${r.method} ${r.path}`), [], '20 runs over 200 s: no request at all');
  t.equal(lists, 2, 'after one list of the lease and one of the node');
  t.same(fake.requests.filter((r) => r.query.get('watch')).map((r) => `${r.path}?${r.query.get('fieldSelector')}`).sort(), [
    `/api/v1/nodes?metadata.name=${NODE}`,
    `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?metadata.name=${NODE}`,
  ], 'two watches: the Lease in kube-node-lease and the Node, each by name');
});

t.test('a cache that cannot be made current is unknown, whatever the lease last said', async (t) => {
  const { fake, clock, run, lease } = await setup(t);
  lease.renew();
  t.match(await run(), { status: 'ok' });
  // The API server goes down: its connections (the watches) drop, and reconnecting gets 503.
  fake.fault = 'unavailable';
  t.equal(fake.watches.closeAll(), 2);
  await watchesLost(fake);
  clock.advance(60_000);
  t.match(await run(), { status: 'unknown', reason: 'ApiUnavailable', message: /read lease kube-node-lease\/worker-3 and node worker-3: .*503/ }, 'not a stale lease: the cache says why it cannot be read');
  fake.fault = 'none';
  // Back: the caches resume; the lease kubelet renewed meanwhile is there.
  lease.renew();
  t.match(await until(async () => { const f = await run(); return f.status === 'ok' && f; }, 15_000), { reason: 'KubeletConnected' });
});

t.test('a watch gone silent (open, nothing arriving): a direct read finds the renewals, ok, and the watch is re-opened', async (t) => {
  const { fake, clock, run, lease } = await setup(t);
  lease.renew();
  t.match(await run(), { status: 'ok' });
  const watchesBefore = leaseWatches(fake);
  t.equal(fake.watches.silence('leases'), 1, 'the lease watch goes half-open');
  for (let i = 0; i < 3; i++) {
    clock.advance(10_000);
    lease.renew();
    t.match(await run(), { status: 'ok', evidence: { seenBy: 'watch' } }, 'within staleAfter the cache is believed');
  }
  clock.advance(11_000);
  lease.renew();
  // 41 s without a renewal in the cache, while kubelet renewed every 10 s.
  const before = fake.requests.length;
  const f = await run();
  t.match(f, { status: 'ok', reason: 'KubeletConnected', evidence: { seenBy: 'read', watchBehind: true } }, f.message);
  t.equal(gets(fake, before).length, 2, 'the stale-looking lease was read directly');
  await until(() => leaseWatches(fake) > watchesBefore, 5000);
  t.pass('the lease watch was re-opened');
  await caughtUp(fake);
  const after = fake.requests.length;
  clock.advance(10_000);
  lease.renew();
  await caughtUp(fake);
  t.match(await run(), { status: 'ok', evidence: { seenBy: 'watch' } }, 'the new watch delivers the renewals again');
  t.same(gets(fake, after), [], 'no more direct reads');
  // And kubelet really stopping is still seen: from the new watch, confirmed directly.
  lease.stop();
  clock.advance(41_000);
  t.match(await run(), { status: 'problem', reason: 'KubeletDisconnected', evidence: { seenBy: 'read' } });
});
