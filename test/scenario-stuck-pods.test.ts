/**
 * Issue 8 end to end: the real agent (`nodemedic run`, enforce, grace 1s, settle 2s, the default
 * triggers) in a real systemd namespace whose `kubelet.service` is the fake kubelet, reading the
 * cluster from the fake API server through a real kubeconfig.
 * 1. The control plane answers 503, then not at all: the cluster-view checks are `unknown` and no
 *    episode starts, no unit is touched (systemd's journal says so), however long it lasts.
 * 2. The API answers: pods stuck terminating on this node -> `stuck-pods` problem -> episode ->
 *    `systemctl restart kubelet`; the restarted kubelet finishes the deletions (the test plays that
 *    part: it removes the pods from the fake when the fake kubelet's second start appears) ->
 *    `stuck-pods` ok -> the episode ends recovered after exactly one step.
 * And `nodemedic check` shows the cluster-view checks only where Kubernetes access is configured.
 */
import { writeFile } from 'node:fs/promises';
import t from 'tap';
import { stringify } from 'yaml';
import { runCli } from './helpers/cli.js';
import { Scenario, scenarioAvailable, sleep } from './helpers/scenario.js';
import { allChecksOff } from './helpers/lifecycle.js';
import { imageErrorPod, nodeWithReady, runningPod, startFakeCluster, terminatingPod } from './fake-apiserver/pod-states.js';

const MIN = 60_000;

t.test('stuck-terminating pods: an outage never starts an episode; a kubelet restart clears them, recovered after one step', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const { fake, kubeconfig } = await startFakeCluster(t);
  const s = await Scenario.start(t, {
    name: 'stuckpods',
    checks: { 'stuck-pods': { timeout: '1s' }, 'node-ready': { timeout: '1s' } },
    kubeconfig,
  });
  const node = 'scenario-stuckpods';

  const now = Date.now();
  fake.addNode(nodeWithReady(node, { now, status: 'True', sinceAgoMs: 3 * 3600_000 }));
  fake.addPod(runningPod({ name: 'web-1', node, now, scheduledAgoMs: 60 * MIN }));
  // An image that cannot be pulled is the application's problem: it stays, and must not block recovery.
  fake.addPod(imageErrorPod({ name: 'broken-image', node, now, scheduledAgoMs: 60 * MIN, reason: 'ImagePullBackOff' }));
  const stuck = ['web-2', 'web-3', 'batch-1'].map((name, i) => fake.addPod(terminatingPod({ name, node, now, scheduledAgoMs: 60 * MIN, deletedAgoMs: (20 + i) * MIN, grace: 30 })));

  // The kubelet's part: after a restart it finishes the pending deletions (final DELETE, pod gone).
  let cleared: number | undefined;
  const watcher = setInterval(() => {
    void s.kubelet.starts().then((starts) => {
      if (starts.length >= 2 && cleared === undefined) {
        for (const p of stuck) fake.pods.delete(`${p.metadata.namespace}/${p.metadata.name}`);
        cleared = Date.now();
      }
    });
  }, 50);
  t.teardown(() => clearInterval(watcher));

  // 1. Outage: 503 first.
  fake.fault = 'unavailable';
  const agent = await s.startAgent();
  await agent.waitStatus((st) => st.results.find((r) => r.check === 'stuck-pods')?.reason === 'ApiUnavailable', 'stuck-pods unknown/ApiUnavailable');
  await sleep(3500); // more than three times grace
  let st = await agent.status();
  t.match(
    Object.fromEntries(st.results.map((r) => [r.check, `${r.status}/${r.reason}`])),
    { 'stuck-pods': 'unknown/ApiUnavailable', 'node-ready': 'unknown/ApiUnavailable', kubelet: /^ok\// },
    '/status: both cluster-view checks unknown while the API answers 503',
  );
  t.equal(st.episode, null, 'no episode during the 503 outage');
  t.same(st.recentActions, [], 'no action');

  // Then no answer at all: each check gives up on its own (timeout 1s) and says so.
  fake.fault = 'hang';
  await agent.waitStatus((st) => st.results.find((r) => r.check === 'stuck-pods')?.reason === 'ApiTimeout', 'stuck-pods unknown/ApiTimeout');
  await sleep(3500);
  st = await agent.status();
  t.match(Object.fromEntries(st.results.map((r) => [r.check, `${r.status}/${r.reason}`])), { 'stuck-pods': 'unknown/ApiTimeout', 'node-ready': 'unknown/ApiTimeout' });
  t.equal(st.episode, null, 'no episode while the API does not answer');
  t.same(st.recentActions, []);
  t.equal(await s.stopJobs('kubelet'), 0, "systemd's journal: kubelet never restarted during the outage");
  t.equal((await s.kubelet.starts()).length, 1);
  t.notOk(agent.lines(/episode/).some((l) => /started/.test(JSON.stringify(l))), 'no episode in the logs');

  // 2. The API answers: the stuck pods are seen, the ladder restarts kubelet, the pods clear.
  fake.fault = 'none';
  const problem = await agent.waitStatus((st) => {
    const r = st.results.find((x) => x.check === 'stuck-pods');
    return r?.status === 'problem' && r;
  }, 'stuck-pods problem');
  t.match(problem, { reason: 'PodsStuckTerminating' });
  const ep = await agent.waitStatus((st) => st.episode?.state === 'recovered' && st.episode, 'the episode to end recovered', 45_000);
  t.match(ep, { trigger: 'stuck-pods', state: 'recovered', endReason: /ok after restart-kubelet/ });
  st = await agent.status();
  const actions = st.recentActions.filter((a) => a.episodeId === ep.id);
  t.same(actions.map((a) => `${a.step}:${a.action}:${a.result}`), ['restart-kubelet:restart_kubelet:success'], 'exactly one step: the kubelet restart');
  t.equal(await s.stopJobs('kubelet'), 1, "systemd's journal: kubelet restarted exactly once");
  t.equal((await s.kubelet.starts()).length, 2, 'the fake kubelet started twice (boot + restart)');
  t.ok(cleared, 'the pods were cleared by the restarted kubelet');
  // The restart is told on the Node, as an Event naming the unit and the evidence bundle.
  const told = fake.events.filter((e) => e.reason === 'NodemedicRestart') as { message: string; involvedObject: { name: string } }[];
  t.equal(told.length, 1, 'one NodemedicRestart Event');
  t.match(told[0], { involvedObject: { name: node }, message: /^kubelet restarted: .*\(evidence: .*restart-kubelet\.tar\.gz\)$/ });

  const full = (await (await fetch(new URL('/status', agent.url))).json()) as { results: { check: string; status: string; reason: string; evidence: Record<string, any> }[] };
  const sp = full.results.find((r) => r.check === 'stuck-pods')!;
  t.match(sp, { status: 'ok', reason: 'NoStuckPods', evidence: { excludedCount: 1, excluded: [{ pod: 'default/broken-image', reason: 'ImagePullError' }] } }, 'the excluded pod is still there, listed, not counted');
  t.match(full.results.find((r) => r.check === 'node-ready'), { status: 'ok', reason: 'NodeReady' });
  const metrics = await (await fetch(new URL('/metrics', agent.url))).text();
  t.match(metrics, /nodemedic_check_status\{check="stuck-pods",status="ok"\} 1\n/);
  t.match(metrics, /nodemedic_check_status\{check="node-ready",status="ok"\} 1\n/);
  t.match(metrics, /nodemedic_remediation_actions_total\{action="restart_kubelet",result="success"\} 1\n/);
  t.notMatch(metrics, /nodemedic_remediation_actions_total\{action="restart_docker",result="success"\} 1/);

  // `nodemedic check` with Kubernetes access shows both cluster-view checks. The one-shot builds its
  // client and lists from scratch: it gets the default timeout, not the 1 s the outage above needed.
  await s.writeConfig({ checks: { 'stuck-pods': { timeout: '10s' }, 'node-ready': { timeout: '10s' } } });
  const r = await runCli(['check', '--json', '--config', s.configPath, '--only', 'node-ready,stuck-pods']);
  const out = JSON.parse(r.stdout) as { results: { check: string; status: string; reason: string }[] };
  t.same(out.results.map((x) => `${x.check}=${x.status}/${x.reason}`), ['node-ready=ok/NodeReady', 'stuck-pods=ok/NoStuckPods']);
  t.equal(r.code, 0);
  await agent.stop();
});

t.test('nodemedic check: cluster-view checks only with Kubernetes access; by name they say NoKubernetesAccess', async (t) => {
  const all = await runCli(['check', '--json'], { env: { KUBERNETES_SERVICE_HOST: '' } });
  const ids = (JSON.parse(all.stdout) as { results: { check: string }[] }).results.map((x) => x.check);
  t.notOk(ids.includes('node-ready') || ids.includes('stuck-pods'), `not listed without access (${ids.join(', ')})`);
  const named = await runCli(['check', '--json', '--only', 'node-ready,stuck-pods'], { env: { KUBERNETES_SERVICE_HOST: '' } });
  const res = (JSON.parse(named.stdout) as { results: { check: string; status: string; reason: string; message: string }[] }).results;
  t.match(res, [
    { check: 'node-ready', status: 'unknown', reason: 'NoKubernetesAccess', message: /set kubernetes\.kubeconfig/ },
    { check: 'stuck-pods', status: 'unknown', reason: 'NoKubernetesAccess' },
  ]);
  t.equal(named.code, 2, 'exit 2: unknown only');

  const { fake, kubeconfig, dir } = await startFakeCluster(t);
  const now = Date.now();
  fake.addNode(nodeWithReady('cli-node', { now, status: 'False', sinceAgoMs: 10 * MIN }));
  fake.addPod(terminatingPod({ name: 'web-2', node: 'cli-node', now, scheduledAgoMs: 60 * MIN, deletedAgoMs: 20 * MIN }));
  const file = `${dir}/config.yaml`;
  await writeFile(file, stringify({ nodeName: 'cli-node', kubernetes: { kubeconfig }, checks: { ...allChecksOff(), 'stuck-pods': { enabled: true }, 'node-ready': { enabled: true } } }));
  const withAccess = await runCli(['check', '--config', file]);
  t.match(withAccess.stdout, /\nnode-ready\s+PROBLEM\s+NodeNotReady\s+node cli-node: Ready is False for 10m/);
  t.match(withAccess.stdout, /\nstuck-pods\s+PROBLEM\s+PodsStuckTerminating\s+1 pod stuck on node cli-node/);
  t.equal(withAccess.code, 1, 'exit 1: a problem');
});
