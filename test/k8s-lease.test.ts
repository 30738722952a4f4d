/**
 * Cluster-wide reboot concurrency with coordination.k8s.io/v1 Leases: racing agents, at most
 * `maxConcurrentReboots` proceed; a holder that is killed (a real process, SIGKILL) blocks the others
 * only until its Lease expires.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { pino } from 'pino';
import { systemClock } from '../platform/clock.js';
import { RebootLease } from '../remediations/kubernetes/lease.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { agentlet, sleep, spawnCli, startCluster, until, writeNodeConfigFile } from './fake-apiserver/harness.js';
import { requireComponent } from './helpers/require.js';

const silent = pino({ level: 'silent' });

t.test('raw Lease races: creation and takeover of an expired Lease each have exactly one winner', async (t) => {
  const c = await startCluster(t);
  for (let round = 0; round < 4; round++) {
    const ns = `race-${round}`;
    const leases = ['a', 'b', 'c'].map((id) => new RebootLease({ api: c.access.api, namespace: ns, slots: 1, identity: id, durationMs: 1000, clock: systemClock, logger: silent }));
    const got = await Promise.all(leases.map((l) => l.acquire()));
    t.equal(got.filter((g) => g.ok).length, 1, `round ${round}: one creator wins`);
    const winner = leases.find((l, i) => got[i]!.ok)!;
    winner.stopRenewing();
    // Let it expire without renewal, then all three race the takeover (update with a resourceVersion).
    await sleep(1100);
    const again = await Promise.all(leases.map((l) => l.acquire()));
    t.equal(again.filter((g) => g.ok).length, 1, `round ${round}: one taker wins the expired lease`);
    const lease = c.fake.leases.get(`${ns}/nodemedic-reboot-0`)!;
    t.ok(['a', 'b', 'c'].includes(lease.spec.holderIdentity));
    t.match(lease.spec.renewTime, /\.\d{6}Z$/, 'MicroTime');
  }
  const conflicts = c.fake.requests.filter((r) => r.status === 409 && r.path.includes('/leases'));
  t.ok(conflicts.length >= 8, `the losers met 409s (${conflicts.length})`);
});

t.test('three agents race for one Lease: at most one drains and reboots; with maxConcurrentReboots 2, two', async (t) => {
  for (const slots of [1, 2]) {
    const c = await startCluster(t, { msPerGraceSecond: 10 });
    const names = ['worker-1', 'worker-2', 'worker-3'];
    for (const n of names) {
      c.fake.addNode(makeNode({ name: n }));
      c.fake.addPod(makePod({ name: `web-${n}`, node: n, terminationGracePeriodSeconds: 1 }));
    }
    const agents = names.map((n) => agentlet(c, n, { maxConcurrentReboots: slots, maxUnhealthyNodes: 3 }));
    t.teardown(() => Promise.all(agents.map((a) => a.controller.stop())));
    const results = await Promise.all(agents.map((a, i) => a.controller.run({ episodeId: `ep-${i}`, reason: 'race', dryRun: false })));
    const winners = results.filter((r) => r.result === 'success');
    t.equal(winners.length, slots, `${slots} slot(s): ${results.map((r) => r.result).join(', ')}`);
    for (const r of results.filter((x) => x.result !== 'success')) {
      t.equal(r.result, 'skipped');
      t.equal(r.refusedBy?.guard, 'lease', r.detail);
      t.match(r.detail, /reboot leases in kube-system are held/);
    }
    t.equal(agents.reduce((n, a) => n + a.host.reboots, 0), slots, 'reboots issued');
    const cordoned = names.filter((n) => c.fake.node(n).spec.unschedulable);
    t.equal(cordoned.length, slots, 'only the winners cordoned');
    const holders = [...c.fake.leases.values()].map((l) => l.spec.holderIdentity).sort();
    t.same(holders, cordoned.sort(), 'each winner holds its own lease');
    t.ok(c.fake.events.filter((e) => e.reason === 'NodemedicGuardRefused').length === 3 - slots, 'the others say why in an event');
  }
});

t.test('a Lease holder killed with SIGKILL blocks the others only until its Lease expires', async (t) => {
  if (!existsSync(new URL('../dist/agent/cli.js', import.meta.url))) {
    if (!(await requireComponent(t, 'the built CLI (npm run build)', ['__nodemedic_dist_missing__'], false))) return;
  }
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: 'worker-a' }));
  c.fake.addNode(makeNode({ name: 'worker-b' }));
  c.fake.addNode(makeNode({ name: 'worker-c' }));
  c.fake.addPod(makePod({ name: 'db-0', node: 'worker-a', labels: { app: 'db' } }));
  c.fake.addPod(makePod({ name: 'web-b', node: 'worker-b' }));
  // worker-a's drain can never finish: the holder sits in its drain, renewing the Lease, until killed.
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];
  const leaseSeconds = 3;
  const common = { leaseDuration: `${leaseSeconds}s`, maxUnhealthyNodes: 3, drain: { timeout: '10m' } };
  const cfgA = writeNodeConfigFile(c, 'worker-a', common);
  const holder = spawnCli(t, ['reboot', '--config', cfgA.path, '--reason', 'lease holder test']);
  await until(() => c.fake.requests.some((r) => r.path.endsWith('/pods/db-0/eviction')), 30_000).catch(() => {
    throw new Error(`worker-a never started draining:\n${holder.output()}`);
  });
  const leaseKey = 'kube-system/nodemedic-reboot-0';
  t.equal(c.fake.leases.get(leaseKey)?.spec.holderIdentity, 'worker-a', 'the CLI process holds the lease');
  // Let it renew at least once, so we see a live holder renewing.
  const firstRenew = c.fake.leases.get(leaseKey)!.spec.renewTime;
  await until(() => c.fake.leases.get(leaseKey)!.spec.renewTime !== firstRenew, 5000);
  holder.proc.kill('SIGKILL');
  const { signal } = await holder.exited;
  t.equal(signal, 'SIGKILL');
  const lastRenew = Date.parse(c.fake.leases.get(leaseKey)!.spec.renewTime);
  const expiry = lastRenew + leaseSeconds * 1000;

  const b = agentlet(c, 'worker-b', common);
  t.teardown(() => b.controller.stop());
  const attempts: { at: number; result: string }[] = [];
  for (;;) {
    const r = await b.controller.run({ episodeId: `ep-b-${attempts.length}`, reason: 'after the holder died', dryRun: false });
    attempts.push({ at: Date.now(), result: r.result });
    if (r.result === 'success') break;
    t.equal(r.refusedBy?.guard, 'lease', `refused by the lease while it is valid: ${r.detail}`);
    if (Date.now() > expiry + 10_000) throw new Error('worker-b never got the expired lease');
    await sleep(250);
  }
  const refusals = attempts.filter((a) => a.result !== 'success');
  t.ok(refusals.length >= 2, `worker-b was refused while the dead holder's lease was valid (${refusals.length} times)`);
  t.ok(refusals.every((a) => a.at < expiry + 1000), 'refusals only before the expiry');
  const won = attempts.at(-1)!.at;
  t.ok(won >= expiry, `worker-b proceeded only after the expiry (${won - expiry}ms after it)`);
  t.ok(won < expiry + 3000, 'and soon after it: the dead holder blocked the fleet at most its lease duration');
  const lease = c.fake.leases.get(leaseKey)!;
  t.equal(lease.spec.holderIdentity, 'worker-b');
  t.equal(lease.spec.leaseTransitions, 1, 'a transition recorded');
  t.equal(b.host.reboots, 1);
  t.notOk(existsSync(cfgA.commandsFile) && readFileSync(cfgA.commandsFile, 'utf8').includes('reboot'), 'the killed holder never rebooted');
  t.ok(existsSync(join(cfgA.stateDir, 'drain-reboot.json')), 'the killed holder left its plan for its restart');
});
