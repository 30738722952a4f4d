/**
 * KubeletDisconnected end to end (issue 16, Must show): the real agent (`nodemedic run`, enforce mode)
 * against a real systemd namespace running a fake kubelet whose healthz answers 200, and the fake API
 * server holding this Node and its Lease. The Lease stops being renewed (a kubelet cut off from the
 * API): the agent restarts kubelet once, after which the "kubelet" renews again and the episode ends
 * recovered. With the API answering 503 the check is unknown and nothing is done.
 */
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { Scenario, scenarioAvailable, sleep } from './helpers/scenario.js';
import { nodeWithReady, startFakeCluster } from './fake-apiserver/pod-states.js';
import { NodeLeaseRenewer } from './fake-apiserver/node-lease.js';
import { waitFor } from './harness/systemd-ns.js';

async function setup(t: Tap, name: string) {
  const s = await Scenario.start(t, {
    name,
    remediation: { triggers: ['kubelet-connection'], grace: '1s', settle: '3s' },
  });
  const { fake, kubeconfig } = await startFakeCluster(t);
  const node = `scenario-${name}`;
  fake.addNode(nodeWithReady(node, { now: Date.now(), status: 'True', sinceAgoMs: 3_600_000 }));
  const lease = new NodeLeaseRenewer(fake, node, 200);
  lease.start();
  t.teardown(() => lease.stop());
  // The scenario's config, plus Kubernetes access and the check under test.
  const cfg = parse(await readFile(s.configPath, 'utf8')) as Record<string, any>;
  cfg.kubernetes = { kubeconfig };
  cfg.checks['kubelet-connection'] = { enabled: true, healthzUrl: s.kubelet.healthzUrl, staleAfter: '2s', timeout: '2s' };
  cfg.checks['node-ready'] = { enabled: false };
  cfg.checks['stuck-pods'] = { enabled: false };
  cfg.checks.kernel = { enabled: false };
  cfg.checks.resources = { enabled: false };
  await writeFile(s.configPath, stringify(cfg));
  return { s, fake, lease };
}

type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

t.test('a lease that stops renewing while healthz is 200: one restart-kubelet cures it', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const { s, lease } = await setup(t, 'kdisc');
  const agent = await s.startAgent();
  await agent.waitStatus((st) => st.results.find((r) => r.check === 'kubelet-connection' && r.status === 'ok'), 'kubelet-connection ok');
  const startsBefore = (await s.kubelet.starts()).length;

  lease.stop(); // kubelet cut off from the API server; its healthz still answers 200
  // A restarted kubelet reconnects: renew again once kubelet.service has started anew.
  const reconnect = waitFor(async () => ((await s.kubelet.starts()).length > startsBefore ? true : undefined), { timeoutMs: 60_000, what: 'kubelet restarted' }).then(() => lease.start());

  const found = await agent.waitStatus((st) => st.results.find((r) => r.check === 'kubelet-connection' && r.status === 'problem'), 'KubeletDisconnected', 30_000);
  t.equal(found.reason, 'KubeletDisconnected');
  await reconnect;
  const ended = await agent.waitStatus((st) => (st.episode?.state === 'recovered' ? st : undefined), 'episode recovered', 60_000);
  t.equal(ended.episode!.trigger, 'kubelet-connection');
  t.same(ended.recentActions.map((a) => `${a.action} ${a.result}`), ['restart_kubelet success'], 'exactly one action: restart kubelet');
  t.match(ended.recentActions[0]!.detail, /evidence: .*restart-kubelet\.tar\.gz/, 'with its evidence bundle');
  t.equal(await s.restarts('kubelet'), 1, "systemd's journal: one restart of kubelet");
});

t.test('the API answering 503: unknown, no action', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const { s, fake, lease } = await setup(t, 'kdisc503');
  const agent = await s.startAgent();
  await agent.waitStatus((st) => st.results.find((r) => r.check === 'kubelet-connection' && r.status === 'ok'), 'kubelet-connection ok');
  fake.fault = 'unavailable';
  lease.stop();
  const st = await agent.waitStatus((x) => x.results.find((r) => r.check === 'kubelet-connection' && r.reason === 'ApiUnavailable'), 'ApiUnavailable', 30_000);
  t.equal(st.status, 'unknown');
  // Well past grace (1 s) and staleAfter (2 s): still nothing done.
  await sleep(5000);
  const after = await agent.status();
  t.equal(after.results.find((r) => r.check === 'kubelet-connection')?.status, 'unknown');
  t.same(after.recentActions, [], 'no action');
  t.equal(after.episode, null, 'no episode');
  t.equal(await s.restarts('kubelet'), 0);
});
