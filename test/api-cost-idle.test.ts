/**
 * Issue 13, the idle fleet: real `nodemedic run` processes (the built CLI, default 15 s schedule,
 * default 5m condition heartbeat, every check that calls the API on: node-ready, stuck-pods,
 * kubelet-connection) against one fake API server for ten minutes, every check ok, each node's
 * kubelet renewing its Lease every 10 s. From the API server's request log, per agent: at most 3 Node
 * status writes and at most 10 requests that are not watches. Then one Node turns NotReady and every
 * agent's cache must still be live: the change shows on that agent's /status within a sweep, with no
 * new list (it came by the watch). The only long test of the suite: several agents share the ten minutes.
 */
import t from 'tap';
import { startFakeCluster } from './fake-apiserver/pod-states.js';
import { nodeWithReady } from './fake-apiserver/pod-states.js';
import { API_CHECKS, costPerAgent, populateNode, startFleetAgent, type FleetAgent } from './helpers/api-cost.js';

const AGENTS = 4;
// NODEMEDIC_API_COST_WINDOW_MS shortens the window for a smoke run of the test itself; the suite runs 10 minutes.
const WINDOW_MS = Number(process.env.NODEMEDIC_API_COST_WINDOW_MS) || 10 * 60_000;
// The runner's per-file limit (.taprc) is shorter than this test: it is the suite's one long test.
t.setTimeout(WINDOW_MS + 10 * 60_000);

interface Status {
  results: { check: string; status: string; reason: string }[];
  clusterView: { resource: string; mode: string; state: string }[];
}

t.test('idle fleet: ten minutes, at most 3 Node status writes and 10 non-watch requests per agent', { timeout: WINDOW_MS + 9 * 60_000 }, async (t) => {
  const { fake, kubeconfig } = await startFakeCluster(t);
  const nodes = Array.from({ length: AGENTS }, (_, i) => `idle-${i}`);
  const kubelets = nodes.map((n) => populateNode(fake, n, 10));
  t.teardown(() => kubelets.forEach((k) => k.stop()));
  const agents: FleetAgent[] = [];
  t.teardown(() => Promise.all(agents.map((a) => a.stop())));
  const started = new Map<string, number>();
  // One at a time: several agents loading client-node at once on a loaded 2-core machine time out.
  for (const n of nodes) {
    started.set(n, Date.now());
    agents.push(await startFleetAgent(n, kubeconfig));
  }
  const status = async (a: FleetAgent): Promise<Status> => (await (await fetch(`${a.url}/status`)).json()) as Status;

  // Ten minutes from the last start: every agent has run at least that long.
  const end = Date.now() + WINDOW_MS;
  let checked = 0;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, Math.min(60_000, end - Date.now())));
    // Every check stays ok throughout (a sample a minute), or the figures would not be an idle fleet's.
    for (const a of agents) {
      const st = await status(a);
      for (const r of st.results) if (r.status !== 'ok') t.fail(`${a.node}: ${r.check} is ${r.status}/${r.reason}`);
      const ran = st.results.map((r) => r.check).sort();
      if (ran.join() !== [...API_CHECKS].sort().join()) t.fail(`${a.node}: the checks that ran are ${ran.join(', ')}`);
      checked++;
    }
  }
  t.ok(checked >= AGENTS * Math.floor(WINDOW_MS / 60_000 - 1), `every check ok in ${checked} samples`);

  const { agents: costs, unattributed } = costPerAgent(fake.requests, nodes);
  t.same(unattributed.map((r) => `${r.method} ${r.path}`), [], 'every request is attributed to an agent');
  for (const c of costs) {
    // Each agent's own ten minutes from its start.
    const own = costPerAgent(fake.requests, [c.node], started.get(c.node)!, started.get(c.node)! + WINDOW_MS).agents[0]!;
    t.comment(`${c.node}: ${JSON.stringify(own.by)}`);
    t.ok(own.statusWrites >= 1 && own.statusWrites <= 3, `${c.node}: ${own.statusWrites} Node status writes in 10 minutes (at most 3: the first, then heartbeats)`);
    t.ok(own.nonWatch <= 10, `${c.node}: ${own.nonWatch} non-watch requests in 10 minutes (at most 10)`);
    t.ok(own.watches >= 4, `${c.node}: it watches (${own.watches} watch requests)`);
    t.equal(own.by['get leases'] ?? 0, 0, `${c.node}: kubelet-connection never read its Lease directly (the watch brought every renewal)`);
  }
  for (const a of agents) {
    const st = await status(a);
    t.same(st.clusterView.map((v) => `${v.resource} ${v.mode} ${v.state}`).sort(), ['leases watch watching', 'nodes watch watching', 'pods watch watching', 'pods watch watching'], `${a.node}: /status says it watches`);
  }

  // The control: after ten idle minutes the caches are live. A Node turns NotReady (the node lifecycle
  // controller's Unknown); its agent reports it within a sweep (15 s, plus slack for a loaded machine).
  const victim = agents[0]!;
  const lists = fake.requests.filter((r) => r.method === 'GET' && !r.query.get('watch') && r.path === '/api/v1/nodes').length;
  const now = Date.now();
  fake.updateNode(victim.node, (n) => (n.status = nodeWithReady(victim.node, { now, status: 'Unknown', sinceAgoMs: 0 }).status));
  const t0 = Date.now();
  let seen: Status['results'][number] | undefined;
  while (Date.now() - t0 < 45_000) {
    seen = (await status(victim)).results.find((r) => r.check === 'node-ready' && r.reason === 'NotReadyWithinGrace');
    if (seen) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  t.ok(seen, `${victim.node} saw its Node NotReady after ${Date.now() - t0} ms`);
  t.equal(fake.requests.filter((r) => r.method === 'GET' && !r.query.get('watch') && r.path === '/api/v1/nodes').length, lists, 'through the watch: no new list');
});
