/**
 * `nodemedic reboot` ended by SIGHUP (its SSH session went away) while it drains, next to the node's
 * running agent (issue 11): the CLI rolls back as on SIGINT/SIGTERM (uncordon, slot released, plan
 * removed), and the agent, which re-reads the plan file on every housekeeping pass, shows the CLI's
 * drain while it runs and no reboot in flight right after, without a restart.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { makePod } from './fake-apiserver/fixtures.js';
import { spawnCli, startCluster } from './fake-apiserver/harness.js';
import { Fleet } from './harness/fake-host.js';
import { waitFor } from './harness/systemd-ns.js';

interface K8sStatus {
  kubernetes: { inFlight: boolean; plan: null | { phase: string; origin: string }; rebootRequired: null | { required: boolean; reason: string } };
}

t.test('nodemedic reboot sent SIGHUP while draining: uncordoned, plan removed, the agent sees it within a sweep', async (t) => {
  const c = await startCluster(t, { msPerGraceSecond: 20 });
  const fleet = await Fleet.start(t, c, { nodes: 2, downMs: 1000, remediation: { leaseDuration: '2s', slotExpiry: '1m', recovery: { timeout: '10s' }, maxUnhealthyNodes: 1 } });
  const node = fleet.node('fleet-1');
  // The drain can never finish: a PodDisruptionBudget that allows no disruption.
  c.fake.addPod(makePod({ name: 'db-0', node: 'fleet-1', labels: { app: 'db' } }));
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];
  await fleet.startAll();
  const status = async (): Promise<K8sStatus> => (await (await fetch(new URL('/status', node.agent!.url), { signal: AbortSignal.timeout(5000) })).json()) as K8sStatus;

  const cli = spawnCli(t, ['reboot', '--config', node.configPath, '--reason', 'kernel update']);
  await waitFor(async () => (c.fake.requests.some((r) => r.path.endsWith('/pods/db-0/eviction') && r.status === 429) ? true : undefined), {
    timeoutMs: 120_000,
    intervalMs: 100,
    what: `the CLI draining fleet-1:\n${cli.output()}`,
  });
  t.equal(c.fake.node('fleet-1').spec.unschedulable, true, 'cordoned by the CLI');
  // The running agent read the CLI's plan on a housekeeping pass: no restart needed to see it.
  const seen = await waitFor(async () => {
    const s = await status();
    return s.kubernetes.plan?.phase === 'draining' ? s : undefined;
  }, { timeoutMs: 30_000, intervalMs: 200, what: "the agent showing the CLI's drain" });
  t.match(seen.kubernetes.plan, { phase: 'draining', origin: 'cli' });

  cli.proc.kill('SIGHUP');
  const end = await cli.exited;
  t.equal(end.code, 1, `the CLI exits 1 (rolled back):\n${cli.output()}`);
  t.match(cli.output(), /SIGHUP: stopping; rolling back/);
  t.match(cli.output(), /summary: failure: .*rolled back, no reboot \(uncordoned fleet-1, released the reboot lease\)/);
  t.notOk(c.fake.node('fleet-1').spec.unschedulable, 'uncordoned');
  t.notOk(c.fake.node('fleet-1').metadata.annotations?.['nodemedic.io/cordoned-by'], 'mark removed');
  t.ok([...c.fake.leases.values()].every((l) => !l.spec.holderIdentity), 'slot released');
  t.notOk(existsSync(join(node.stateDir, 'drain-reboot.json')), 'plan removed');
  t.notOk(existsSync(join(node.dir, 'reboot-requested')), 'no reboot');

  // The agent sweeps every second; within one sweep (a few seconds on a busy machine) it shows nothing in flight.
  const after = await waitFor(async () => {
    const s = await status();
    return s.kubernetes.plan === null && !s.kubernetes.inFlight ? s : undefined;
  }, { timeoutMs: 10_000, intervalMs: 100, what: 'the agent showing no reboot in flight' });
  t.notOk(after.kubernetes.rebootRequired?.required, `RebootRequired cleared: ${JSON.stringify(after.kubernetes.rebootRequired)}`);
});
