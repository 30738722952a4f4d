// Scenario 1: a fake kubelet (kubelet.service in a real systemd namespace) writes real PLEG lines from
// the corpus to the real journal until it is restarted once; a real dockerd with live-restore runs as
// docker.service beside it. The agent (enforce, grace 1s, settle 2s) follows the journal, restarts
// kubelet exactly once, sees PLEG healthy after settle and ends the episode recovered. systemd's own
// journal says what happened: one kubelet restart, docker untouched.
import t from 'tap';
import { PLEG_CORPUS } from './harness/fake-kubelet.js';
import { Scenario, scenarioAvailable, sleep } from './helpers/scenario.js';

t.test('scenario 1: PLEG errors until kubelet is restarted once -> one kubelet restart, recovered, docker untouched', async (t) => {
  if (!(await scenarioAvailable(t, { docker: true }))) return;
  const s = await Scenario.start(t, {
    name: 'pleg',
    kubelet: { emit: [{ corpus: PLEG_CORPUS, label: 'pleg-unhealthy', everyMs: 200, toStart: 1 }] },
    docker: { liveRestore: true },
    checks: { pleg: { enabled: true, source: 'journald', unit: 'kubelet', window: '10s', minOccurrences: 3, startupGrace: '1s' } },
  });
  const dockerd = await s.mainPid('docker');
  const agent = await s.startAgent();

  const ep = await agent.waitStatus((st) => st.episode?.state === 'recovered' && st.episode, 'the PLEG episode to end recovered', 45_000);
  t.match(ep, { trigger: 'pleg', endReason: /^pleg(, kubelet)? ok after restart-kubelet$/ });
  let st = await agent.status();
  t.same(
    st.recentActions.map((a) => `${a.action}:${a.result}`),
    ['restart_kubelet:success'],
    'one action: the kubelet restart',
  );
  t.match(st.results.find((r) => r.check === 'pleg'), { status: 'ok' });
  t.equal((await s.kubelet.starts()).length, 2, 'the fake kubelet started twice (boot, the restart)');
  t.equal(await s.restarts('kubelet'), 1, "systemd's journal: exactly one kubelet restart");
  t.equal(await s.restarts('docker'), 0, "systemd's journal: docker untouched");
  t.equal(await s.stoppings('docker'), 0);
  t.equal(await s.mainPid('docker'), dockerd, 'the same dockerd');
  const journal = await s.ns.journalctl('-u', 'kubelet.service', '-o', 'cat');
  t.match(journal.stdout, /PLEG is not healthy/, 'the PLEG lines really went through the journal');

  // Healthy from now on: sweeps go on, nothing more is done.
  await sleep(3000);
  st = await agent.status();
  t.equal(st.recentActions.length, 1, 'no further action');
  t.equal(await s.restarts('kubelet'), 1);
  const logs = agent.lines(/^restart-kubelet: /).filter((l) => l.episodeId === ep.id);
  t.ok(logs.length >= 2, 'the decision and its outcome are logged with the episode id');
});
