/**
 * `node-ready`'s problem carries the `network` check's latest finding (`evidence.network`,
 * checks/network-view.ts): the Node NotReady on the fake API server (real client-node, real
 * kubeconfig), the network check probing a fake API server's health endpoint on loopback. Without a
 * network result (the check disabled, or stopped by a reload) nothing is added; node-ready never
 * probes on its own.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { networkCheck, type NetworkOptions } from '../checks/network.js';
import { networkSummary, publishNetwork, withdrawNetwork, withNetworkEvidence } from '../checks/network-view.js';
import { nodeReadyCheck } from '../checks/node-ready.js';
import type { Check, CheckDeps, Finding } from '../checks/types.js';
import { ManualClock } from '../platform/clock.js';
import { RealHost } from '../platform/host.js';
import { lazyKubeAccess } from '../platform/kube-client.js';
import { nodeWithReady, startFakeCluster } from './fake-apiserver/pod-states.js';
import { caughtUp } from './helpers/cluster-view.js';
import { makeCertificate, startHealthServer } from './harness/fake-apiserver-health.js';

const NODE = 'worker-7';
const T0 = Date.parse('2026-11-27T10:00:00Z');
const MIN = 60_000;
const signal = new AbortController().signal;

type Ev = Record<string, any>;
const ev = (f: Finding): Ev => (f.evidence ?? {}) as Ev;

async function setup(t: Tap.Test) {
  const { fake, kubeconfig } = await startFakeCluster(t);
  const clock = new ManualClock(T0);
  const kube = lazyKubeAccess(kubeconfig, { requestTimeoutMs: 5000 });
  const deps: CheckDeps = { host: new RealHost({ clock }), logger: pino({ level: 'silent' }), nodeName: NODE, kube };
  const started = async (c: Check): Promise<Check> => {
    t.teardown(() => c.stop?.());
    await c.start?.();
    return c;
  };
  const nodeReady = await started(nodeReadyCheck.create(nodeReadyCheck.defaults, deps));
  const network = (over: Partial<NetworkOptions>): Promise<Check> => started(networkCheck.create({ ...networkCheck.defaults, timeout: '2s', ...over }, deps));
  /** Sets this node's Ready condition and runs node-ready once its watch has seen the change. */
  const ready = async (status: 'True' | 'False' | 'Unknown'): Promise<Finding> => {
    const node = nodeWithReady(NODE, { now: T0, status, sinceAgoMs: 10 * MIN });
    if (fake.nodes.has(NODE)) fake.updateNode(NODE, (n) => (n.status = node.status));
    else fake.addNode(node);
    await caughtUp(fake);
    return nodeReady.run(signal);
  };
  return { fake, clock, deps, network, ready };
}

async function healthServer(t: Tap.Test) {
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-nr-network-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { cert, key } = await makeCertificate(dir, ['IP:127.0.0.1']);
  return startHealthServer(t, { host: '127.0.0.1', cert, key });
}

t.test("a NotReady node's problem carries the network check's last result", async (t) => {
  const { clock, network, ready } = await setup(t);
  const server = await healthServer(t);
  const url = `https://127.0.0.1:${server.port}`;
  const net = await network({ apiServer: url });

  t.notOk('network' in ev(await ready('False')), 'the network check has not run yet: nothing to add, and node-ready does not probe');
  t.equal(server.requests.length, 0, 'no probe was made for node-ready');

  t.match(await net.run(signal), { status: 'ok', reason: 'NetworkReachable' });
  const nr = await ready('False');
  t.match(nr, { status: 'problem', reason: 'NodeNotReady' });
  t.same(ev(nr).network, {
    status: 'ok',
    reason: 'NetworkReachable',
    message: ev(nr).network.message,
    observedAt: new Date(T0).toISOString(),
    apiServer: url,
    recent: { probes: 1, reachable: 1, results: ['ok'] },
  });
  t.match(ev(nr).network.message, `API server ${url} reachable in`);

  // The API server gone: the network check's next result, with its failed step and the window, is what node-ready shows.
  await server.stop();
  clock.advance(MIN);
  t.match(await net.run(signal), { status: 'unknown', reason: 'ApiUnreachable' });
  const after = await ready('Unknown');
  t.match(after, { status: 'problem', reason: 'NodeNotReady' });
  t.match(ev(after).network, {
    status: 'unknown',
    reason: 'ApiUnreachable',
    failedStep: 'tcp',
    observedAt: new Date(T0 + MIN).toISOString(),
    recent: { probes: 2, reachable: 1, results: ['ok', 'tcp'] },
    message: /API reachable in 1 of the last 2 probes/,
  });
  t.equal(server.requests.length, 1, "node-ready's runs made no probe of their own");

  t.notOk('network' in ev(await ready('True')), 'a Ready node: no problem, nothing added');

  // A reload that disables the network check stops it: its result is withdrawn, nothing stale remains.
  await net.stop?.();
  t.equal(networkSummary(NODE), undefined);
  t.notOk('network' in ev(await ready('False')), 'the network check stopped: nothing added');
});

t.test('the network check disabled: a NotReady problem has no network evidence', async (t) => {
  const { ready } = await setup(t);
  const nr = await ready('False');
  t.match(nr, { status: 'problem', reason: 'NodeNotReady' });
  t.notOk('network' in ev(nr));
});

t.test('the view: a problem of the network check, by node name, withdrawn only by its owner', async (t) => {
  const owner = {};
  const successor = {};
  const problem: Finding = {
    status: 'problem',
    reason: 'NetworkUnavailable',
    message: 'this node cannot reach the API server https://203.0.113.1:6443: route: no route to 203.0.113.1 and no default route',
    evidence: {
      apiServer: 'https://203.0.113.1:6443',
      source: 'checks.network.apiServer',
      steps: [],
      nodeFaults: [{ step: 'route', detail: 'no route to 203.0.113.1 and no default route' }],
      recent: { probes: 3, reachable: 2, results: ['ok', 'ok', 'route'] },
      failedStep: 'route',
    },
  };
  const notReady: Finding = { status: 'problem', reason: 'NodeNotReady', message: 'node worker-9: Ready is Unknown', evidence: { node: 'worker-9' } };
  publishNetwork('worker-9', owner, problem, T0);
  t.teardown(() => withdrawNetwork('worker-9', successor));
  t.same(ev(withNetworkEvidence(notReady, 'worker-9')).network, {
    status: 'problem',
    reason: 'NetworkUnavailable',
    message: problem.message,
    observedAt: new Date(T0).toISOString(),
    apiServer: 'https://203.0.113.1:6443',
    failedStep: 'route',
    nodeFaults: [{ step: 'route', detail: 'no route to 203.0.113.1 and no default route' }],
    recent: { probes: 3, reachable: 2, results: ['ok', 'ok', 'route'] },
  });
  t.equal(ev(withNetworkEvidence(notReady, 'worker-9')).node, 'worker-9', "node-ready's own evidence kept");
  t.equal(withNetworkEvidence(notReady, 'worker-10'), notReady, "another node's result is not this node's");
  const ok: Finding = { status: 'ok', reason: 'NodeReady', message: 'node worker-9 is Ready' };
  t.equal(withNetworkEvidence(ok, 'worker-9'), ok, 'only a problem carries it');

  // A reload: the new instance publishes, then the old one stops; the new result stays.
  publishNetwork('worker-9', successor, { ...problem, reason: 'NetworkReachable', status: 'ok' }, T0 + MIN);
  withdrawNetwork('worker-9', owner);
  t.match(networkSummary('worker-9'), { status: 'ok', observedAt: new Date(T0 + MIN).toISOString() });
});
