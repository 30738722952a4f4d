// Scenario 6: `dry-run` decides and reports the whole ladder but changes nothing; `pause` (the CLI
// command, a file in stateDir) holds an enforcing agent, across an agent restart, until `resume`.
// Judged by the namespace's journal: no unit is restarted while either holds.
import t from 'tap';
import { Scenario, scenarioAvailable, sleep, type RecentAction } from './helpers/scenario.js';

const summary = (a: RecentAction[]) => a.map((x) => `${x.action}:${x.result}`).reverse();

t.test('scenario 6a: dry-run walks the ladder, reports dry_run, restarts nothing', async (t) => {
  if (!(await scenarioAvailable(t, { docker: true }))) return;
  const s = await Scenario.start(t, { name: 'dryrun', kubelet: { healthz: 'fail' }, docker: { liveRestore: true }, remediation: { mode: 'dry-run' } });
  const kubeletPid = await s.mainPid('kubelet');
  const dockerdPid = await s.mainPid('docker');
  const agent = await s.startAgent();
  const ep = await agent.waitStatus((st) => st.exhausted && st.episode, 'the dry-run episode to end', 45_000);
  const st = await agent.status();
  t.equal(st.mode, 'dry-run');
  t.same(summary(st.recentActions), ['restart_kubelet:dry_run', 'restart_docker:dry_run', 'reboot:dry_run'], 'every step decided and reported');
  t.match(st.recentActions.at(-1), { mode: 'dry-run', detail: 'dry-run: would run systemctl restart kubelet' });
  t.match(ep, { state: 'exhausted' });
  t.equal(st.rebootRequested, false, 'a dry-run asks for no reboot');
  t.same(st.budgets.restartsPerHour.used, {}, 'and uses no budget');
  t.equal(await s.restarts('kubelet'), 0, "systemd's journal: kubelet untouched");
  t.equal(await s.restarts('docker'), 0, "systemd's journal: docker untouched");
  t.equal((await s.stoppings('kubelet')) + (await s.stoppings('docker')), 0, 'nothing was even stopped');
  t.equal(await s.mainPid('kubelet'), kubeletPid);
  t.equal(await s.mainPid('docker'), dockerdPid);
  const metrics = await (await fetch(new URL('/metrics', agent.url))).text();
  for (const action of ['restart_kubelet', 'restart_docker', 'reboot']) {
    t.match(metrics, new RegExp(`nodemedic_remediation_actions_total\\{action="${action}",result="dry_run"\\} 1\\n`), `metric: ${action} dry_run`);
  }
});

t.test('scenario 6b: pause holds an enforcing agent, across a restart, until resume', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const s = await Scenario.start(t, { name: 'pause', kubelet: { healthz: 'fail' } });
  // Before the agent's first start: its state directory does not exist yet, so the operator says to create it.
  const paused = await s.cli('pause', '--create-state-dir', '--reason', 'investigating PLEG by hand');
  t.equal(paused.code, 0, paused.stderr);
  t.match(paused.stdout, /remediation paused until `nodemedic resume`: investigating PLEG by hand/);

  const agent1 = await s.startAgent();
  await agent1.waitStatus((st) => st.paused && st.episode?.state === 'active' && st.episode.phase === 'due', 'an episode held by the pause');
  let st = await agent1.status();
  t.match(st, { mode: 'enforce', paused: true, pause: { reason: 'investigating PLEG by hand', until: null } });
  await sleep(3000);
  st = await agent1.status();
  t.same(st.recentActions, [], 'no action while paused');
  t.ok(agent1.lines(/^paused: not taking restart-kubelet/).length >= 2, 'each decision logs that the pause holds it');

  // The pause is a file: it holds for a new agent process too.
  await agent1.stop();
  const agent2 = await s.startAgent();
  await sleep(3000);
  st = await agent2.status();
  t.equal(st.paused, true, 'still paused after the agent restart');
  t.same(st.recentActions, []);
  t.equal(await s.restarts('kubelet'), 0, "systemd's journal: kubelet untouched while paused");
  t.equal(await s.stoppings('kubelet'), 0);

  const resumed = await s.cli('resume');
  t.same([resumed.code, resumed.stdout], [0, 'remediation resumed\n']);
  await agent2.waitStatus((x) => !x.paused && x.recentActions.some((a) => a.action === 'restart_kubelet' && a.result === 'success'), 'the kubelet restart after resume');
  t.equal(await s.restarts('kubelet'), 1, 'after resume the ladder acts: one kubelet restart');
});
