// Scenario 5: the agent is killed with SIGKILL in the middle of an episode and started again. It
// resumes the episode from its state file without repeating a step: between steps (settling), and
// in the middle of a restart (intent written, outcome not), where the restart is judged from the
// unit's start time instead of being carried out again. Judged by the namespace's journal.
import t from 'tap';
import { waitFor } from './harness/systemd-ns.js';
import { Scenario, scenarioAvailable, type RecentAction } from './helpers/scenario.js';

const summary = (a: RecentAction[]) => a.map((x) => `${x.action}:${x.result}`).reverse();

t.test('scenario 5: SIGKILL between steps, then a restarted agent resumes without repeating a step', async (t) => {
  if (!(await scenarioAvailable(t, { docker: true }))) return;
  const s = await Scenario.start(t, { name: 'kill-settle', kubelet: { healthz: 'fail' }, docker: { liveRestore: true }, remediation: { settle: '4s' } });
  const agent1 = await s.startAgent();
  const ep = await agent1.waitStatus(
    (st) => st.episode?.phase === 'settling' && st.recentActions.some((a) => a.action === 'restart_kubelet' && a.result === 'success') && st.episode,
    'kubelet restarted, settling',
    30_000,
  );
  agent1.kill();
  t.match(await agent1.exited, { signal: 'SIGKILL' }, 'the agent died by SIGKILL while settling after restart-kubelet');
  t.equal(await s.restarts('kubelet'), 1);

  const agent2 = await s.startAgent();
  t.ok(agent2.lines(/resuming remediation episode from the state file/).length === 1, 'the new agent resumes the episode');
  await agent2.waitStatus((st) => st.exhausted, 'the same episode to run to its end', 45_000);
  const st = await agent2.status();
  t.equal(st.episode?.id, ep.id, 'one episode, continued');
  t.same(summary(st.recentActions), ['restart_kubelet:success', 'restart_docker:success', 'reboot:skipped'], 'each step once');
  t.equal(await s.restarts('kubelet'), 1, "systemd's journal: kubelet restarted once, not again after the kill");
  t.equal(await s.restarts('docker'), 1, "systemd's journal: docker restarted once");
});

t.test('scenario 5b: SIGKILL during a restart -> judged from the unit, not repeated', async (t) => {
  if (!(await scenarioAvailable(t, { docker: true }))) return;
  // kubelet ignores SIGTERM, so its restart takes systemd's stop timeout (3s): a window to kill the agent in.
  const s = await Scenario.start(t, {
    name: 'kill-acting',
    kubelet: { healthz: 'fail', ignoreSigterm: true },
    docker: { liveRestore: true },
    remediation: { settle: '2s' },
  });
  const agent1 = await s.startAgent();
  await agent1.waitStatus((st) => st.recentActions.some((a) => a.action === 'restart_kubelet' && a.result === 'in_progress'), 'the kubelet restart in progress', 30_000);
  // The intent is written before the evidence bundle is collected; the kill must land once systemd
  // is carrying out the restart (kubelet stopping), not while the bundle is still being written.
  await waitFor(
    async () => (await s.ns.systemctl('show', '--property=ActiveState', '--value', 'kubelet')).stdout.trim() === 'deactivating',
    { timeoutMs: 30_000, intervalMs: 20, what: 'systemd stopping kubelet for the restart' },
  );
  agent1.kill();
  await agent1.exited;
  const state = await s.stateFile();
  const pending = (state.actions as { action: string; outcome?: unknown }[]).filter((a) => !a.outcome);
  t.same(pending.map((a) => a.action), ['restart_kubelet'], 'the state file holds the intent without an outcome');

  const agent2 = await s.startAgent();
  const judged = agent2.lines(/interrupted action judged after restart/);
  t.equal(judged.length, 1, 'the new agent judged the interrupted restart');
  t.match(judged[0], { action: 'restart_kubelet', result: 'success', detail: /kubelet entered active at .* after the restart was ordered/ });
  await agent2.waitStatus((st) => st.exhausted, 'the episode to run to its end', 45_000);
  const st = await agent2.status();
  t.same(summary(st.recentActions), ['restart_kubelet:success', 'restart_docker:success', 'reboot:skipped']);
  t.match(st.recentActions.at(-1), { action: 'restart_kubelet', inferred: true });
  t.equal(await s.restarts('kubelet'), 1, "systemd's journal: the kubelet restart was not repeated");
  t.equal(await s.restarts('docker'), 1);
});
