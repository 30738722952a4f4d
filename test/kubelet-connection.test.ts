/**
 * KubeletDisconnected (issue 16): against the fake API server through the real client-node, with a
 * real HTTP healthz. Time from a ManualClock, so "not renewed for 40 s" needs no waiting; the lease is
 * renewed (or not) as a kubelet would (test/fake-apiserver/node-lease.ts).
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

const NODE = 'worker-3';

t.test('the verdict', async (t) => {
  const h200 = { kind: 'response', status: 200, body: 'ok', latencyMs: 1 } as const;
  const h500 = { kind: 'response', status: 500, body: 'x', latencyMs: 1 } as const;
  t.equal(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 0, readyStatus: 'True', healthz: undefined }, 40_000).reason, 'KubeletConnected');
  t.equal(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 39_999, readyStatus: 'True', healthz: h200 }, 40_000).status, 'ok', 'below staleAfter');
  t.equal(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 40_000, readyStatus: 'True', healthz: h200 }, 40_000).reason, 'KubeletDisconnected', 'at staleAfter');
  t.equal(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 0, readyStatus: 'Unknown', healthz: h200 }, 40_000).reason, 'KubeletDisconnected', 'Ready Unknown');
  t.match(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 50_000, readyStatus: 'True', healthz: h500 }, 40_000), { status: 'unknown', reason: 'KubeletNotHealthy' });
  t.match(judgeConnection({ node: 'n', renewTime: 'x', unchangedForMs: 50_000, readyStatus: 'True', healthz: { kind: 'timeout', latencyMs: 1 } }, 40_000), { status: 'unknown' });
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

t.test('against the fake API server', async (t) => {
  const { fake, kubeconfig } = await startFakeCluster(t);
  fake.addNode(nodeWithReady(NODE, { now: Date.now(), status: 'True', sinceAgoMs: 3_600_000 }));
  const hz = await healthz(t);
  const clock = new ManualClock(Date.now());
  const kube = lazyKubeAccess(kubeconfig, { requestTimeoutMs: 3000 });
  const check = kubeletConnectionCheck.create(
    { ...kubeletConnectionCheck.defaults, healthzUrl: hz.url, timeout: '2s' },
    { host: new RealHost({ clock }), logger: pino({ level: 'silent' }), nodeName: NODE, kube },
  );
  const run = (): Promise<Finding> => check.run(new AbortController().signal);

  t.match(await run(), { status: 'unknown', reason: 'NoNodeLease' }, 'no lease yet');
  const lease = new NodeLeaseRenewer(fake, NODE);
  lease.renew();
  t.match(await run(), { status: 'ok', reason: 'KubeletConnected' }, 'first sight');
  clock.advance(30_000);
  lease.renew();
  t.match(await run(), { status: 'ok', reason: 'KubeletConnected' }, 'renewed');
  clock.advance(39_000);
  t.match(await run(), { status: 'ok' }, 'not renewed for 39 s: within staleAfter');
  clock.advance(2000);
  const gone = await run();
  t.match(gone, { status: 'problem', reason: 'KubeletDisconnected', evidence: { healthz: { status: 200 }, leaseUnchangedFor: '41s' } }, gone.message);

  hz.set(500);
  t.match(await run(), { status: 'unknown', reason: 'KubeletNotHealthy' }, 'healthz failing: the kubelet check owns it');
  hz.set(200);

  fake.fault = 'unavailable';
  const down = await run();
  t.match(down, { status: 'unknown', reason: 'ApiUnavailable', evidence: { httpStatus: 503 } }, 'the API answering 503: unknown, never a problem');
  fake.fault = 'none';

  lease.renew();
  t.match(await run(), { status: 'ok' }, 'renewed again: ok at once');
  fake.updateNode(NODE, (n) => (n.status = nodeWithReady(NODE, { now: Date.now(), status: 'Unknown', sinceAgoMs: 60_000 }).status));
  t.match(await run(), { status: 'problem', reason: 'KubeletDisconnected', message: /Ready is Unknown \(NodeStatusUnknown\)/ }, 'Ready Unknown');
});
