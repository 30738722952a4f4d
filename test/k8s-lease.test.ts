/**
 * Cluster-wide reboot concurrency with coordination.k8s.io/v1 Leases: racing agents, at most
 * `maxConcurrentReboots` proceed; a holder that is killed (a real process, SIGKILL) blocks the others
 * until they have seen its Lease unchanged for its whole duration (`slotExpiry`), by their own
 * monotonic clocks: no clock step, here or on the holder, shortens that.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { pino } from 'pino';
import { ManualClock, systemClock } from '../platform/clock.js';
import { RebootLease, type LeaseOptions } from '../remediations/kubernetes/lease.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { agentlet, sleep, spawnCli, startCluster, until, writeNodeConfigFile } from './fake-apiserver/harness.js';
import { requireComponent } from './helpers/require.js';

const silent = pino({ level: 'silent' });

function mkLease(o: Partial<LeaseOptions> & Pick<LeaseOptions, 'api' | 'namespace' | 'identity'>): RebootLease {
  return new RebootLease({ slots: 1, expiryMs: 1000, renewEveryMs: 300, renewDeadlineMs: 1000, clock: systemClock, logger: silent, retryMs: 50, ...o });
}

t.test('raw Lease races: creation and takeover of an expired Lease each have exactly one winner', async (t) => {
  const c = await startCluster(t);
  for (let round = 0; round < 4; round++) {
    const ns = `race-${round}`;
    const leases = ['a', 'b', 'c'].map((id) => mkLease({ api: c.access.api, namespace: ns, identity: id }));
    const got = await Promise.all(leases.map((l) => l.acquire()));
    t.equal(got.filter((g) => g.ok).length, 1, `round ${round}: one creator wins`);
    const winner = leases.find((l, i) => got[i]!.ok)!;
    winner.stopRenewing();
    // Let it stand unchanged for its duration, as the two others watch it, then all three race the
    // takeover (update with a resourceVersion).
    await Promise.all(leases.map((l) => l.heldSlots()));
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

t.test('a Lease holder killed with SIGKILL blocks the others until they have seen its Lease unchanged for slotExpiry', async (t) => {
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
  const expirySeconds = 3;
  const common = { leaseDuration: '1s', slotExpiry: `${expirySeconds}s`, recovery: { timeout: '1s' }, maxUnhealthyNodes: 3, drain: { timeout: '10m' } };
  const cfgA = writeNodeConfigFile(c, 'worker-a', common);
  const holder = spawnCli(t, ['reboot', '--config', cfgA.path, '--reason', 'lease holder test']);
  await until(() => c.fake.requests.some((r) => r.path.endsWith('/pods/db-0/eviction')), 120_000).catch(() => {
    throw new Error(`worker-a never started draining:\n${holder.output()}`);
  });
  const leaseKey = 'kube-system/nodemedic-reboot-0';
  t.equal(c.fake.leases.get(leaseKey)?.spec.holderIdentity, 'worker-a', 'the CLI process holds the lease');
  t.equal(c.fake.leases.get(leaseKey)?.spec.leaseDurationSeconds, expirySeconds, 'its duration is slotExpiry, not leaseDuration');
  // Let it renew at least once, so we see a live holder renewing.
  const firstRenew = c.fake.leases.get(leaseKey)!.spec.renewTime;
  await until(() => c.fake.leases.get(leaseKey)!.spec.renewTime !== firstRenew, 5000);
  holder.proc.kill('SIGKILL');
  const { signal } = await holder.exited;
  t.equal(signal, 'SIGKILL');
  const lastChange = Date.now();

  const b = agentlet(c, 'worker-b', common);
  t.teardown(() => b.controller.stop());
  const attempts: { at: number; result: string }[] = [];
  for (;;) {
    const r = await b.controller.run({ episodeId: `ep-b-${attempts.length}`, reason: 'after the holder died', dryRun: false });
    attempts.push({ at: Date.now(), result: r.result });
    if (r.result === 'success') break;
    t.equal(r.refusedBy?.guard, 'lease', `refused by the lease while it is valid: ${r.detail}`);
    if (Date.now() > lastChange + 30_000) throw new Error('worker-b never got the expired lease');
    await sleep(250);
  }
  const firstSeen = attempts.length ? attempts[0]!.at : Date.now();
  const refusals = attempts.filter((a) => a.result !== 'success');
  t.ok(refusals.length >= 2, `worker-b was refused while it had not yet seen the lease stand still for slotExpiry (${refusals.length} times)`);
  const won = attempts.at(-1)!.at;
  t.ok(won >= lastChange + expirySeconds * 1000, `worker-b proceeded only after slotExpiry without a change (${won - lastChange}ms after the last one)`);
  t.ok(won < firstSeen + expirySeconds * 1000 + 5000, 'and soon after it: the dead holder blocked the fleet at most its slotExpiry');
  const l = c.fake.leases.get(leaseKey)!;
  t.equal(l.spec.holderIdentity, 'worker-b');
  t.equal(l.spec.leaseTransitions, 1, 'a transition recorded');
  t.equal(b.host.reboots, 1);
  t.notOk(existsSync(cfgA.commandsFile) && readFileSync(cfgA.commandsFile, 'utf8').includes('reboot'), 'the killed holder never rebooted');
  t.ok(existsSync(join(cfgA.stateDir, 'drain-reboot.json')), 'the killed holder left its plan for its restart');
});

t.test('clock steps never shorten a hold: expiry is judged on the observer monotonic clock from the last change it saw', async (t) => {
  const c = await startCluster(t);
  const wallA = new ManualClock(Date.now());
  const wallB = new ManualClock(Date.now());
  let monoB = 0;
  const a = mkLease({ api: c.access.api, namespace: 'clock', identity: 'a', clock: wallA, expiryMs: 10_000 });
  const b = mkLease({ api: c.access.api, namespace: 'clock', identity: 'b', clock: wallB, expiryMs: 10_000, monotonic: () => monoB });
  t.ok((await a.acquire()).ok, 'a holds the slot');
  // b's wall clock steps forward 2 h: by renewTime + duration the Lease would look long expired.
  wallB.advance(2 * 3600_000);
  const first = await b.acquire();
  t.notOk(first.ok, 'no takeover after a forward step of the observer clock');
  t.match(first.ok ? '' : first.detail, /held by a \(taken over only if it stays unchanged for 10s more\)/);
  // The holder's clock steps back 1 h and it renews: its renewTime is in the past; b sees a change.
  wallA.advance(-3600_000);
  monoB += 9_000;
  t.equal(await a.renew(), 'renewed');
  t.notOk((await b.acquire()).ok, 'a renewal with a backdated renewTime is still a change: the countdown restarts');
  monoB += 9_999;
  t.notOk((await b.acquire()).ok, 'still within its duration since the change b saw');
  monoB += 2;
  const taken = await b.acquire();
  t.ok(taken.ok, 'taken over once b has seen it unchanged for the whole duration');
  t.equal(c.fake.leases.get('clock/nodemedic-reboot-0')!.spec.holderIdentity, 'b');
});

t.test('renewal retries transient errors within its deadline; only a lasting outage or another holder loses the slot', async (t) => {
  const c = await startCluster(t);
  const a = mkLease({ api: c.access.api, namespace: 'renew', identity: 'a', renewDeadlineMs: 3000 });
  t.ok((await a.acquire()).ok);
  // One 503 and one 429 on the Lease: retried, not the end of a drain (issue 11, item 6).
  let failures = 2;
  c.fake.inject = (method, path) => (path.includes('/leases/') && failures-- > 0 ? (failures === 1 ? 503 : 429) : undefined);
  t.equal(await a.renew(), 'renewed', 'renewed after two transient errors');
  c.fake.inject = undefined;
  t.ok(c.fake.requests.some((r) => r.status === 503 && r.path.includes('/leases/')) && c.fake.requests.some((r) => r.status === 429 && r.path.includes('/leases/')), 'both errors were met');
  c.fake.fault = 'unavailable';
  const t0 = Date.now();
  t.equal(await a.renew(), 'lost', 'a lasting outage: lost once the deadline passed');
  t.ok(Date.now() - t0 >= 2500, `not before its deadline (${Date.now() - t0}ms)`);
  c.fake.fault = 'none';
});
