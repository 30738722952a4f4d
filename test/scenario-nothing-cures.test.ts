// Scenario 3: a fault nothing cures. The agent (enforce, grace 1s, settle 2s) restarts kubelet, then
// docker, then requests a reboot, then does nothing more; budgets and the exhausted state hold
// across an agent restart, and a new episode finds both restart budgets spent. The reboot budget is
// spent only by a reboot that was issued: without Kubernetes access the request is reported, not
// performed, so the budget stays whole and the second episode reports the request again. Judged by
// the namespace's journal.
import { execa } from 'execa';
import t from 'tap';
import { requireComponent } from './helpers/require.js';
import { Scenario, scenarioAvailable, sleep, type RecentAction } from './helpers/scenario.js';

const summary = (a: RecentAction[]) => a.map((x) => `${x.action}:${x.result}`).reverse();

t.test('scenario 3: nothing cures it -> kubelet restart, docker restart, reboot request, then quiet; budgets across a restart', async (t) => {
  if (!(await scenarioAvailable(t, { docker: true }))) return;
  if (!(await requireComponent(t, 'promtool (Debian package prometheus)', ['promtool']))) return;
  const s = await Scenario.start(t, {
    name: 'nocure',
    kubelet: { healthz: 'fail' },
    docker: { liveRestore: true },
    remediation: { restartsPerHour: 1, rebootsPerDay: 1 },
  });
  const agent = await s.startAgent();
  const ep1 = await agent.waitStatus((st) => st.exhausted && st.episode, 'the first episode to be exhausted', 45_000);
  let st = await agent.status();
  t.same(summary(st.recentActions), ['restart_kubelet:success', 'restart_docker:success', 'reboot:skipped'], 'kubelet, then docker, then a reboot request');
  t.match(st.recentActions[0], { step: 'drain-reboot', detail: /reboot requested, not performed: there is no Kubernetes access/ });
  t.equal(st.rebootRequested, true, '/status: rebootRequested');
  t.match(st.rebootRequest, { episodeId: ep1.id, result: 'skipped' });
  t.match(ep1, { trigger: 'kubelet', state: 'exhausted' });
  t.equal(await s.restarts('kubelet'), 1, "systemd's journal: kubelet restarted once");
  t.equal(await s.restarts('docker'), 1, "systemd's journal: docker restarted once");

  // Exhausted: sweeps go on (kubelet still failing), no action follows.
  await sleep(4000);
  st = await agent.status();
  t.equal(st.recentActions.length, 3, 'no further action while exhausted');
  t.ok(agent.lines(/exhausted; waiting for the triggers to be ok/).length >= 2, 'each later decision says why it does nothing');

  // An agent restart keeps the exhausted state and the budgets.
  await agent.stop();
  const agent2 = await s.startAgent();
  await sleep(4000);
  st = await agent2.status();
  t.match(st.exhausted, { episodeId: ep1.id }, 'still exhausted after the agent restart');
  t.equal(st.recentActions.length, 3, 'and still no new action');
  t.same(st.budgets.restartsPerHour.used, { kubelet: 1, docker: 1 }, 'restart budgets survived the restart');
  t.equal(st.budgets.rebootsPerDay.used, 0, 'no reboot was issued, so none was counted');

  // The fault clears: the ladder is armed again and the reboot request withdrawn.
  await s.kubelet.configure({ healthz: 'ok' });
  await agent2.waitStatus((x) => !x.exhausted && !x.rebootRequested, 'the ladder to re-arm once kubelet is ok');

  // The fault comes back within the hour: every step's budget is spent, nothing is done.
  await s.kubelet.configure({ healthz: 'fail' });
  const ep2 = await agent2.waitStatus((x) => x.exhausted && x.episode && x.episode.id !== ep1.id && x.episode, 'a second episode, exhausted at once');
  st = await agent2.status();
  const second = st.recentActions.filter((a) => a.episodeId === ep2.id);
  t.same(summary(second), ['restart_kubelet:skipped', 'restart_docker:skipped', 'reboot:skipped']);
  t.match(second.map((a) => a.detail).reverse(), [/budget spent: 1 of 1 restarts of kubelet/, /budget spent: 1 of 1 restarts of docker/, /reboot requested, not performed: there is no Kubernetes access/]);
  t.equal(await s.restarts('kubelet'), 1, 'journal: still one kubelet restart');
  t.equal(await s.restarts('docker'), 1, 'journal: still one docker restart');

  const metrics = await (await fetch(new URL('/metrics', agent2.url))).text();
  for (const action of ['restart_kubelet', 'restart_docker', 'reboot']) {
    t.match(metrics, new RegExp(`nodemedic_remediation_actions_total\\{action="${action}",result="skipped"\\} 1\\n`), `metric: ${action} skipped`);
  }
  t.match(metrics, /nodemedic_remediation_actions_total\{action="restart_kubelet",result="success"\} 0\n/, 'the new agent did not restart anything');
  t.match(metrics, /nodemedic_remediation_episode_state\{state="exhausted"\} 1\n/, 'metric: the last episode is exhausted');
  t.match(metrics, /nodemedic_remediation_episode_state\{state="active"\} 0\n/);
  t.match(metrics, /nodemedic_remediation_episodes_total\{result="exhausted",step="drain-reboot"\} 1\n/, 'metric: one episode ended exhausted at drain-reboot');
  t.match(metrics, /nodemedic_remediation_budget_remaining\{kind="reboot"\} 1\n/, 'metric: the reboot budget is whole (no reboot was issued)');
  t.match(metrics, /nodemedic_remediation_budget_remaining\{kind="restart",unit="kubelet"\} 0\n/, 'metric: no kubelet restart left this hour');
  const lint = await execa('promtool', ['check', 'metrics'], { input: metrics, reject: false, timeout: 10_000 });
  t.equal(lint.exitCode, 0, `promtool check metrics is clean: ${lint.stdout}${lint.stderr}`);
});
