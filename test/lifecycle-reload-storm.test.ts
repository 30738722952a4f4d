/**
 * A storm of SIGHUPs against a real agent following kubelet's journal in a real systemd namespace:
 * two 10 ms apart while a sweep runs, then twenty more, with a config that changes both the PLEG
 * follower's options and the remediation mode (so each applied reload rebuilds both). Reloads are
 * serialised and coalesced: afterwards exactly one journalctl follower runs under the agent and
 * one remediator is live, both counted (the processes from /proc, the remediators from /status).
 */
import t from 'tap';
import { Scenario, scenarioAvailable } from './helpers/scenario.js';
import { waitFor } from './harness/systemd-ns.js';
import { descendants, getJson } from './helpers/lifecycle.js';

const journalctls = (pid: number): number => descendants(pid).filter((p) => p.comm === 'journalctl').length;

t.test('22 SIGHUPs during sweeps: one journal follower, one remediator', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const s = await Scenario.start(t, {
    name: 'lc-hup-storm',
    // healthz hangs: the kubelet check takes its whole 1 s timeout, so with a 1 s schedule a sweep is nearly always running.
    kubelet: { healthz: 'hang' },
    remediation: { mode: 'off' },
    checks: { pleg: { enabled: true, source: 'journald', unit: 'kubelet', window: '5m' } },
  });
  const agent = await s.startAgent();
  const pid = agent.child.pid!;
  const status = async () => (await getJson(new URL('/status', agent.url).href)) as { lifecycle: { remediators: number; reloads: { applied: number; rejected: number; pending: boolean } }; mode: string; results: { check: string; status: string; reason: string }[] };
  await waitFor(() => journalctls(pid) === 1, { timeoutMs: 30_000, what: 'the journal follower running' });
  t.equal((await status()).lifecycle.remediators, 1);

  await s.writeConfig({ checks: { pleg: { enabled: true, source: 'journald', unit: 'kubelet', window: '6m' } }, remediation: { mode: 'dry-run' } });
  agent.child.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 10));
  agent.child.kill('SIGHUP');
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 5));
    agent.child.kill('SIGHUP');
  }
  // Settled: no reload pending, the new config live.
  const settled = await waitFor(
    async () => {
      const st = await status();
      return !st.lifecycle.reloads.pending && st.mode === 'dry-run' && agent.lines(/^configuration reloaded$/).length === st.lifecycle.reloads.applied ? st : undefined;
    },
    { timeoutMs: 60_000, what: 'the reloads to settle' },
  );
  t.ok(settled.lifecycle.reloads.applied >= 1 && settled.lifecycle.reloads.applied <= 3, `22 SIGHUPs made ${settled.lifecycle.reloads.applied} reload(s): serialised and coalesced`);
  t.equal(settled.lifecycle.reloads.rejected, 0);
  // Two full sweeps later (the follower of a rebuilt check has had time to start, an old one to go).
  for (let i = 0; i < 2; i++) {
    const last = ((await status()) as unknown as { lastSweep: string }).lastSweep;
    await waitFor(async () => ((await status()) as unknown as { lastSweep: string }).lastSweep !== last, { timeoutMs: 20_000, what: 'a full sweep' });
  }
  const procs = descendants(pid);
  t.equal(procs.filter((p) => p.comm === 'journalctl').length, 1, `exactly one journalctl follower (agent's descendants: ${procs.map((p) => `${p.pid}:${p.comm}`).join(' ')})`);
  const final = await status();
  t.equal(final.lifecycle.remediators, 1, 'exactly one remediator');
  // kill() returns before the agent's JavaScript has seen the signal: on a busy machine the last
  // SIGHUPs can still sit in libuv's signal pipe when /status says settled. Read in one batch, they make
  // one more reload and at most one coalesced behind it.
  t.equal(agent.lines(/^configuration reloaded$/).length, final.lifecycle.reloads.applied, 'every reload logged is counted');
  t.ok(final.lifecycle.reloads.applied <= settled.lifecycle.reloads.applied + 2 && !final.lifecycle.reloads.pending, `${final.lifecycle.reloads.applied} reload(s) in the end (${settled.lifecycle.reloads.applied} when settled), none pending`);
  t.match(final.results.find((r) => r.check === 'pleg'), { check: 'pleg' }, 'pleg still reports');
  t.same(agent.logs.filter((l) => l.level === undefined), [], 'every stdout line is JSON');
  await agent.stop();
});
