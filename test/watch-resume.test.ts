/**
 * Issue 13: the cluster view's watches broken by the server, through the real check, client-node and
 * the fake API server. A watch the server closes resumes from the last resourceVersion seen (no list)
 * and a change made while it was down still arrives; a resourceVersion too old for the server's
 * history (410 Gone, as an ERROR event on an open watch or on the resuming request) makes it relist,
 * and the change is there; a server that refuses to serve watches (RBAC without `watch`) gets polled
 * instead, jittered, and /status says so. Each step asserts on the fake's request log, not on the
 * agent's word.
 */
import { pino } from 'pino';
import t from 'tap';
import { nodeReadyCheck } from '../checks/node-ready.js';
import type { Finding } from '../checks/types.js';
import { systemClock } from '../platform/clock.js';
import { RealHost } from '../platform/host.js';
import { lazyKubeAccess } from '../platform/kube-client.js';
import { clusterViewStatus } from '../platform/kube-watch.js';
import { until } from './fake-apiserver/harness.js';
import { nodeWithReady, startFakeCluster } from './fake-apiserver/pod-states.js';
import type { FakeApiServer } from './fake-apiserver/server.js';
import { caughtUp, watchesLost } from './helpers/cluster-view.js';

const NODE = 'worker-3';

async function setup(t: Tap.Test) {
  const { fake, kubeconfig } = await startFakeCluster(t);
  fake.addNode(nodeWithReady(NODE, { now: Date.now(), status: 'True', sinceAgoMs: 3600_000 }));
  const kube = lazyKubeAccess(kubeconfig, { requestTimeoutMs: 5000 });
  const check = nodeReadyCheck.create({ ...nodeReadyCheck.defaults, timeout: '10s' }, { host: new RealHost({ clock: systemClock }), logger: pino({ level: 'silent' }), nodeName: NODE, kube });
  t.teardown(() => check.stop?.());
  const run = (): Promise<Finding> => check.run(new AbortController().signal);
  const lists = (): number => fake.requests.filter((r) => r.path === '/api/v1/nodes' && !r.query.get('watch')).length;
  const watches = () => fake.requests.filter((r) => r.path === '/api/v1/nodes' && r.query.get('watch') === 'true');
  return { fake, check, run, lists, watches };
}

function setReady(fake: FakeApiServer, status: 'True' | 'False' | 'Unknown'): void {
  fake.updateNode(NODE, (n) => (n.status = nodeWithReady(NODE, { now: Date.now(), status, sinceAgoMs: 0 }).status));
}

t.test('a watch the server closes resumes from the last resourceVersion; a change made meanwhile arrives; no list', async (t) => {
  const { fake, run, lists, watches } = await setup(t);
  t.match(await run(), { status: 'ok', reason: 'NodeReady' });
  t.equal(lists(), 1, 'one list');
  const seenRv = fake.node(NODE).metadata.resourceVersion as string;
  // The server goes away (watches closed) and the Node changes before the agent is back.
  t.equal(fake.watches.closeAll(), 1);
  setReady(fake, 'False');
  const changedRv = fake.node(NODE).metadata.resourceVersion as string;
  await caughtUp(fake);
  t.match(await run(), { status: 'ok', reason: 'NotReadyWithinGrace' }, 'the change made while the watch was down is seen');
  t.equal(lists(), 1, 'still one list: the watch resumed');
  const resumed = watches().at(-1)!;
  t.ok(Number(resumed.query.get('resourceVersion')) >= Number(seenRv) && Number(resumed.query.get('resourceVersion')) < Number(changedRv), `the new watch resumed from ${resumed.query.get('resourceVersion')} (seen ${seenRv}, change at ${changedRv})`);
  t.equal(resumed.query.get('fieldSelector'), `metadata.name=${NODE}`);
  t.equal(resumed.query.get('allowWatchBookmarks'), 'true');
  t.ok(Number(resumed.query.get('timeoutSeconds')) >= 300 && Number(resumed.query.get('timeoutSeconds')) < 600, 'timeoutSeconds 5-10 minutes, as client-go picks');
});

t.test('410 Gone on an open watch (ERROR event) and on the resuming request: relist, the change is there', async (t) => {
  const { fake, run, lists } = await setup(t);
  t.match(await run(), { status: 'ok', reason: 'NodeReady' });
  // The history is compacted and the open watch told so.
  setReady(fake, 'False');
  fake.watches.expire('nodes', true);
  await until(() => lists() === 2, 10_000);
  await caughtUp(fake);
  t.match(await run(), { status: 'ok', reason: 'NotReadyWithinGrace' }, 'after the relist the change is seen');
  const gone = fake.requests.filter((r) => r.query.get('watch') === 'true');
  t.ok(gone.length >= 2, 'and a new watch from the new list');

  // A change, then compaction, while no watch is open: the resuming request itself gets the 410.
  fake.watches.closeAll();
  await watchesLost(fake);
  setReady(fake, 'Unknown');
  fake.watches.expire('nodes', false);
  await until(() => lists() === 3, 10_000);
  await caughtUp(fake);
  t.match(await run(), { status: 'ok', reason: 'NotReadyWithinGrace', message: /Ready is Unknown/ });
});

t.test('watch forbidden (RBAC without watch): jittered polling, said on /status, results still right', async (t) => {
  const { fake, run, lists } = await setup(t);
  fake.watches.forbidden = true;
  t.match(await run(), { status: 'ok', reason: 'NodeReady' });
  const view = clusterViewStatus().find((s) => s.server === fake.url)!;
  t.match(view, { mode: 'poll', state: 'polling', fallback: /watch refused \(HTTP 403 Forbidden\); polling every 15s, jittered/ });
  const before = lists();
  setReady(fake, 'False');
  const f = await until(async () => { const x = await run(); return x.reason === 'NotReadyWithinGrace' && x; }, 30_000, 200);
  t.ok(f, 'the change is seen by a poll');
  t.ok(lists() > before, 'through a list');
  t.equal(fake.requests.filter((r) => r.query.get('watch') === 'true' && r.status === 200).length, 0, 'no watch was served');
});

t.test('a check stopped before its warm-up connected leaves no cache behind (no watch runs on for good)', async (t) => {
  const { fake, kubeconfig } = await startFakeCluster(t);
  fake.addNode(nodeWithReady(NODE, { now: Date.now(), status: 'True', sinceAgoMs: 3600_000 }));
  const kube = lazyKubeAccess(kubeconfig, { requestTimeoutMs: 5000 });
  const check = nodeReadyCheck.create({ ...nodeReadyCheck.defaults, timeout: '10s' }, { host: new RealHost({ clock: systemClock }), logger: pino({ level: 'silent' }), nodeName: NODE, kube });
  // start() warms the cache up once client-node is loaded and the kubeconfig read; stop() comes first.
  const starting = check.start?.();
  await check.stop?.();
  await starting;
  // The warm-up has now run its course: with the fix it found the cache released and acquired nothing.
  await kube.get().catch(() => undefined);
  await new Promise((r) => setImmediate(r));
  t.same(clusterViewStatus().filter((s) => s.server === fake.url), [], 'no cache of the stopped check is live');
  t.equal(fake.requests.filter((r) => r.query.get('watch')).length, 0, 'and the server saw no watch');
});
