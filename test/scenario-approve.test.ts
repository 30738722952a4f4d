/**
 * Issue 17, approval mode end to end: the real agent (`remediation.mode: approve`) in a real systemd
 * namespace whose kubelet writes real PLEG lines from the corpus that no kubelet restart cures, with
 * Kubernetes access to the fake API server. The restart runs unasked (not an approval step); the
 * drain-reboot is proposed and waits:
 * 1. the proposal is visible on all four surfaces (/status, the metric, the Node annotation, an Event)
 *    and nothing is cordoned; it lapses unanswered and is proposed anew under a new id, and an answer
 *    naming the lapsed id does nothing; `nodemedic reject` drops it (episode exhausted, annotation gone);
 * 2. `nodemedic approve` lets exactly that drain-reboot run: cordon, eviction, `systemctl reboot` of
 *    the namespace, judged from the fake API server's request log and the namespace's end.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { startFakeCluster } from './fake-apiserver/pod-states.js';
import { PLEG_CORPUS } from './harness/fake-kubelet.js';
import { waitFor } from './harness/systemd-ns.js';
import { Scenario, scenarioAvailable, type AgentProcess } from './helpers/scenario.js';

type Proposal = { id: string; step: string; action: string; reason: string; expiresAt: string; evidence: string | null };
const proposalOf = async (agent: AgentProcess): Promise<Proposal | null> => ((await agent.status()) as unknown as { proposal?: Proposal | null }).proposal ?? null;

async function approveScenario(t: Tap.Test, name: string, expiry: string) {
  const { fake, kubeconfig } = await startFakeCluster(t, { msPerGraceSecond: 10 });
  const node = `scenario-${name}`;
  for (const n of [node, 'worker-2', 'worker-3']) fake.addNode(makeNode({ name: n }));
  fake.addPod(makePod({ name: 'web-0', node, terminationGracePeriodSeconds: 1 }));
  const s = await Scenario.start(t, {
    name,
    // PLEG lines at every start: a kubelet restart does not cure it, only the reboot would.
    kubelet: { emit: [{ corpus: PLEG_CORPUS, label: 'pleg-unhealthy', everyMs: 200 }] },
    checks: { pleg: { enabled: true, source: 'journald', unit: 'kubelet', window: '10s', minOccurrences: 3, startupGrace: '1s' } },
    remediation: { mode: 'approve', steps: ['restart-kubelet', 'drain-reboot'], approval: { expiry }, drain: { timeout: '30s' } },
    kubeconfig,
  });
  const agent = await s.startAgent();
  // Shown once its evidence is collected (what a person decides on comes first).
  const first = await waitFor(async () => {
    const p = await proposalOf(agent);
    return p?.evidence ? p : undefined;
  }, { timeoutMs: 60_000, what: 'a drain-reboot proposal with its evidence on /status' });
  return { fake, node, s, agent, first };
}

const cordons = (fake: { requests: { method: string; path: string; body?: unknown }[] }, node: string) =>
  fake.requests.filter((r) => r.method === 'PATCH' && r.path === `/api/v1/nodes/${node}` && (r.body as { spec?: { unschedulable?: boolean } } | undefined)?.spec?.unschedulable === true);

t.test('approval mode: proposed on four surfaces, nothing cordoned; a lapsed proposal is replaced and its answer ignored; reject drops it', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const { fake, node, s, agent, first } = await approveScenario(t, 'approve-reject', '20s');

  // The restart was not an approval step: it ran on its own, before the proposal.
  let st = await agent.status();
  t.same(st.recentActions.map((a) => `${a.action}:${a.result}`), ['restart_kubelet:success'], 'restart-kubelet ran unasked; nothing else yet');
  t.equal(await s.restarts('kubelet'), 1);

  // 1. /status
  t.match(first, { id: /\/drain-reboot\/1$/, step: 'drain-reboot', action: 'reboot', reason: /pleg still failing/ }, '/status: the proposal');
  t.match(st.episode, { phase: 'awaiting-approval', step: 'drain-reboot' });
  t.ok(first.evidence, `the evidence was collected before proposing: ${String(first.evidence)}`);
  // 2. the metric
  const metrics = await (await fetch(new URL('/metrics', agent.url))).text();
  t.match(metrics, /nodemedic_remediation_pending_approval\{step="drain-reboot"\} 1\n/, 'metric: drain-reboot pending');
  t.match(metrics, /nodemedic_remediation_pending_approval\{step="restart-kubelet"\} 0\n/);
  // 3. the Node annotation and 4. an Event
  const shown = await waitFor(() => fake.node(node).metadata.annotations?.['nodemedic.io/proposal'], { timeoutMs: 10_000, what: 'the proposal annotation' });
  t.match(JSON.parse(shown as string), { id: first.id, step: 'drain-reboot' }, 'Node annotation nodemedic.io/proposal');
  const ev = fake.events.find((e) => e.reason === 'NodemedicApprovalRequired');
  t.match(ev, { type: 'Warning', involvedObject: { name: node }, message: new RegExp(`drain-reboot proposed as ${first.id.replace(/[/.]/g, '\\$&')}`) }, 'an Event on the Node');
  t.equal(cordons(fake, node).length, 0, 'nothing cordoned while the proposal waits');
  t.notOk([...fake.leases.values()].some((l) => l.spec?.holderIdentity), 'no reboot slot taken');

  // It lapses unanswered: a new proposal, a new id.
  const second = await waitFor(async () => {
    const p = await proposalOf(agent);
    return p && p.id !== first.id ? p : undefined;
  }, { timeoutMs: 30_000, what: 'the proposal to lapse and be made anew' });
  t.match(second.id, /\/drain-reboot\/2$/, 'proposed anew under a new id');
  // An answer naming the lapsed proposal does nothing: refused by the CLI, ignored on the Node.
  const late = await s.cli('approve', '--id', first.id);
  t.equal(late.code, 1, 'nodemedic approve --id <lapsed id>: exit 1');
  t.match(late.stderr, /is not the one waiting/);
  fake.updateNode(node, (n) => (n.metadata.annotations = { ...n.metadata.annotations, 'nodemedic.io/approve': first.id }));
  const seen = fake.requests.length;
  await waitFor(() => (fake.requests.slice(seen).some((r) => r.method === 'GET' && r.path === `/api/v1/nodes/${node}`) ? true : undefined), { timeoutMs: 20_000, what: 'the agent to look at the Node again' });
  st = await agent.status();
  t.match(st.episode, { phase: 'awaiting-approval' }, 'still waiting: the answer was for the lapsed proposal');
  t.equal(cordons(fake, node).length, 0, 'still nothing cordoned');

  // Reject: the episode ends, the proposal is gone from every surface.
  const rejected = await s.cli('reject');
  t.equal(rejected.code, 0, rejected.stderr);
  // The one waiting now: on a busy machine the second may have lapsed too, replaced by a third.
  t.match(rejected.stdout, /^rejected \S+\/drain-reboot\/\d+ \(drain-reboot: /);
  const ended = await agent.waitStatus((x) => x.episode?.state === 'exhausted' && x.episode, 'the episode to end rejected', 30_000);
  t.match(ended.endReason, /drain-reboot rejected by operator\//);
  t.equal(await proposalOf(agent), null, '/status: no proposal');
  await waitFor(() => (fake.node(node).metadata.annotations?.['nodemedic.io/proposal'] === undefined ? true : undefined), { timeoutMs: 10_000, what: 'the annotation removed' });
  t.ok(fake.events.some((e) => e.reason === 'NodemedicStepSkipped' && /rejected by operator\//.test(String(e.message))), 'an Event says it was rejected');
  const after = await (await fetch(new URL('/metrics', agent.url))).text();
  t.match(after, /nodemedic_remediation_pending_approval\{step="drain-reboot"\} 0\n/, 'metric: nothing pending');
  t.equal(cordons(fake, node).length, 0, 'never cordoned');
  t.ok(s.ns.running(), 'the namespace was not rebooted');
});

t.test('approval mode: nodemedic approve lets exactly the proposed drain-reboot run', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const { fake, node, s, agent, first } = await approveScenario(t, 'approve-run', '10m');
  t.equal(cordons(fake, node).length, 0, 'nothing cordoned before the approval');
  const approved = await s.cli('approve', '--id', first.id);
  t.equal(approved.code, 0, approved.stderr);
  // The namespace's systemd says it on its console. (Its PID namespace may then linger while the agent's
  // journal follower, entered from outside, is reaped; a real node's reboot ends every process.)
  await waitFor(() => (/^Rebooting\.$/m.test(readFileSync(s.ns.consoleLog, 'utf8')) ? true : undefined), { timeoutMs: 90_000, what: "the namespace's systemd rebooting" });
  t.pass("the namespace's systemd rebooted: systemctl reboot through the prefix");
  t.equal(cordons(fake, node).length, 1, 'cordoned once, after the approval');
  t.ok(fake.requests.some((r) => r.method === 'POST' && r.path === `/api/v1/namespaces/default/pods/web-0/eviction`), 'web-0 evicted');
  const reboot = fake.events.find((e) => e.reason === 'NodemedicReboot');
  t.ok(reboot, 'the reboot event');
  const cordon = fake.events.find((e) => e.reason === 'NodemedicCordon');
  t.match(cordon?.message, /approved by operator\//, 'the cordon says who approved it');
  const st = await s.stateFile();
  const acts = (st.actions as { step: string; reason: string; outcome?: { result: string } }[]).map((a) => `${a.step}:${a.outcome?.result ?? 'in_progress'}`);
  t.same(acts, ['restart-kubelet:success', 'drain-reboot:success'], 'exactly the proposed action ran, once');
  await agent.stop();
});
