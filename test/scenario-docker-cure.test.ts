// Scenario 2: a fault only a docker restart cures. A real dockerd with live-restore runs as
// docker.service in a systemd namespace with a container; it hangs (SIGSTOP). The agent (enforce,
// grace 1s, settle 2s) restarts kubelet first (the runbook's order), sees docker still hung after
// settle, restarts docker, and ends the episode recovered; the container never stopped.
import t from 'tap';
import { Scenario, scenarioAvailable } from './helpers/scenario.js';

t.test('scenario 2: hung dockerd -> kubelet restart, then docker restart, recovered, containers still running', async (t) => {
  if (!(await scenarioAvailable(t, { docker: true }))) return;
  const s = await Scenario.start(t, { name: 'dockercure', docker: { liveRestore: true } });
  const docker = s.docker!.client;
  const id = await docker.runContainer();
  const containerPid = await docker.containerPid(id);
  t.ok(containerPid > 0, `a container runs (pid ${containerPid})`);
  const dockerdBefore = await s.mainPid('docker');

  const agent = await s.startAgent();
  await agent.waitStatus((st) => st.results.find((r) => r.check === 'docker' && r.status === 'ok'), 'docker ok (live-restore reported)');
  const hungAt = Date.now();
  t.equal((await s.ns.systemctl('kill', '--kill-who=main', '--signal=SIGSTOP', 'docker')).exitCode, 0, 'dockerd stopped with SIGSTOP: every API call hangs');

  const ep = await agent.waitStatus((st) => st.episode?.state === 'recovered' && st.episode, 'the episode to end recovered', 45_000);
  const st = await agent.status();
  const actions = st.recentActions.filter((a) => a.episodeId === ep.id).reverse();
  t.same(
    actions.map((a) => `${a.action}:${a.result}`),
    ['restart_kubelet:success', 'restart_docker:success'],
    'kubelet restart, then docker restart',
  );
  // The episode's triggers are every trigger seen `problem` while it ran (remediations/decide.ts). On a
  // busy machine a sweep can catch kubelet's healthz still down just after its restart, so kubelet may
  // join; the episode then ends once both are ok. Either way it is docker's restart that ends it.
  t.match(ep, { trigger: 'docker', endReason: /^docker(, kubelet)? ok after restart-runtime$/ });

  const restartJobs = async (unit: string) => (await s.systemdEvents(unit)).filter((e) => e.jobType === 'restart' && e.result === 'done');
  const kubeletStops = await restartJobs('kubelet');
  const dockerStops = await restartJobs('docker');
  t.equal(kubeletStops.length, 1, "systemd's journal: one kubelet restart");
  t.equal(dockerStops.length, 1, "systemd's journal: one docker restart");
  t.ok(kubeletStops[0]!.realtimeUs < dockerStops[0]!.realtimeUs, 'kubelet first, docker second');
  t.ok(kubeletStops[0]!.realtimeUs / 1000 >= hungAt, 'both after the fault began');
  t.not(await s.mainPid('docker'), dockerdBefore, 'a new dockerd');

  t.equal(await docker.containerRunning(id), true, 'the container is still running (live-restore)');
  t.equal(await docker.containerPid(id), containerPid, 'the same process: it never stopped');
  t.match(st.results.find((r) => r.check === 'docker'), { status: 'ok' }, 'docker check ok');
});
