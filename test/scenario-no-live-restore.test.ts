// Scenario 4: docker without live-restore. Restarting it would kill every container on the node, so
// even with dockerd itself hung the runtime step is skipped (with that reason) and the ladder goes on
// to the reboot request. systemd's journal shows docker was never stopped; the container never died.
import t from 'tap';
import { Scenario, scenarioAvailable } from './helpers/scenario.js';

t.test('scenario 4: docker without live-restore -> runtime step skipped, no container dies', async (t) => {
  if (!(await scenarioAvailable(t, { docker: true }))) return;
  const s = await Scenario.start(t, { name: 'nolive', docker: { liveRestore: false } });
  const docker = s.docker!.client;
  const id = await docker.runContainer();
  const containerPid = await docker.containerPid(id);
  const dockerd = await s.mainPid('docker');

  const agent = await s.startAgent();
  await agent.waitStatus(
    (st) => st.results.find((r) => r.check === 'docker' && r.status === 'ok' && (r as { evidence?: { liveRestoreEnabled?: boolean } }).evidence?.liveRestoreEnabled === false),
    'docker ok, reporting LiveRestoreEnabled: false',
  );
  t.equal((await s.ns.systemctl('kill', '--kill-who=main', '--signal=SIGSTOP', 'docker')).exitCode, 0, 'dockerd hangs (SIGSTOP)');
  t.teardown(async () => {
    await s.ns.systemctl('kill', '--kill-who=main', '--signal=SIGCONT', 'docker');
  });

  const ep = await agent.waitStatus((st) => st.exhausted && st.episode, 'the episode to be exhausted', 45_000);
  const st = await agent.status();
  const actions = st.recentActions.filter((a) => a.episodeId === ep.id).reverse();
  t.same(actions.map((a) => `${a.action}:${a.result}`), ['restart_kubelet:success', 'restart_docker:skipped', 'reboot:skipped']);
  t.match(actions[1], { step: 'restart-runtime', unit: 'docker', detail: 'docker reports LiveRestoreEnabled: false; restarting it would kill every container on the node' });
  t.equal(st.rebootRequested, true, 'the ladder asks for a (drained) reboot instead');
  t.equal(await s.restarts('docker'), 0, "systemd's journal: docker was never restarted");
  t.equal(await s.stoppings('docker'), 0, 'nor stopped');
  t.equal(await s.mainPid('docker'), dockerd, 'the same dockerd process');
  t.equal(await s.restarts('kubelet'), 1, 'kubelet was restarted once (harmless to containers)');

  t.equal((await s.ns.systemctl('kill', '--kill-who=main', '--signal=SIGCONT', 'docker')).exitCode, 0);
  t.equal(await docker.containerRunning(id), true, 'the container still runs');
  t.equal(await docker.containerPid(id), containerPid, 'the same process: it never died');
  const metrics = await (await fetch(new URL('/metrics', agent.url))).text();
  t.match(metrics, /nodemedic_remediation_actions_total\{action="restart_docker",result="skipped"\} 1\n/);
  t.match(metrics, /nodemedic_remediation_actions_total\{action="restart_docker",result="success"\} 0\n/);
});
