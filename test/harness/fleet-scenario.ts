/**
 * The fleet (issue 11): eight real `nodemedic run` processes against the fake API server, in enforce
 * mode, every node's kubelet broken at once in a way only a reboot cures. Reboots are simulated by the
 * fake host (test/harness/fake-host.*): the agent is stopped and kept down longer than the reboot
 * Lease's renewal interval and than `leaseDuration` (the old expiry), its Node NotReady, then it boots
 * with a new boot id. Judged from the API server's request log, not from what the agents say:
 * - never more than `maxConcurrentReboots` nodes cordoned by nodemedic at once;
 * - no reboot while another node's is unfinished (still cordoned), and no slot taken over;
 * - every node healed (rebooted once, uncordoned), every slot released;
 * - refused attempts (slot busy) retried with backoff and never spending the reboot budget;
 * - with one slot, the API answering 503 right after a node's boot for longer than
 *   `recovery.timeout`: that node is uncordoned once the API is back, no `recovery-failed`;
 *   and a 500 on one eviction ends nothing: the drain-reboot is retried.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster } from '../fake-apiserver/harness.js';
import { outage } from '../fake-apiserver/faults.js';
import { cordonedAt, cordonTimeline, Fleet, maxCordoned, slotTakeovers } from './fake-host.js';
import { waitFor } from './systemd-ns.js';

/**
 * 8 real agents by default (issue 11 asks for at least 8); FLEET_NODES=N runs another size. What makes
 * 8 fit on 2 cores: the fake host is a bash script, not a Node.js process per host command, and the
 * agents start without tap's processinfo hook (see fake-host.ts); most of the time left is the agents'
 * own start after each reboot (3 to 5 s of CPU each), the reboots being one (then two) at a time.
 */
const NODES = Number(process.env.FLEET_NODES ?? 8);
/** Renewal every third of it; the old code let a Lease expire after it. The reboot lasts longer. */
const LEASE_DURATION_MS = 1500;
const DOWN_MS = 2 * LEASE_DURATION_MS;
const RECOVERY_TIMEOUT_MS = 4000;

export async function runFleet(t: Tap.Test, slots: number, opts: { outageAfterFirstBoot?: boolean; failOneEviction?: boolean } = {}): Promise<void> {
  const c = await startCluster(t, { msPerGraceSecond: 20 });
  let outageDone: Promise<{ from: number; to: number }> | undefined;
  let outageNode: string | undefined;
  const fleet = await Fleet.start(t, c, {
    nodes: NODES,
    downMs: DOWN_MS,
    remediation: {
      maxConcurrentReboots: slots,
      // Enough for `slots` nodes out at once, no more: the slot is the limit under test.
      maxUnhealthyNodes: slots - 1,
      leaseDuration: `${LEASE_DURATION_MS}ms`,
      // The safety valve, long enough for a slow agent restart on a busy machine: never what this tests.
      slotExpiry: '15m',
      recovery: { timeout: `${RECOVERY_TIMEOUT_MS}ms` },
      retryBackoff: { initial: '500ms', max: '3s' },
      rebootsPerDay: 1,
    },
    onBoot: (node, n) => {
      if (!opts.outageAfterFirstBoot || outageDone || n !== 1) return;
      // Longer than recovery.timeout, right after the boot: the API says nothing about this node.
      outageNode = node;
      outageDone = outage(c.fake, 'unavailable', 2 * RECOVERY_TIMEOUT_MS);
    },
  });
  if (opts.failOneEviction) {
    let failed = false;
    c.fake.inject = (method, path) => {
      if (!failed && method === 'POST' && path.endsWith('/eviction')) {
        failed = true;
        return 500;
      }
      return undefined;
    };
  }
  for (const n of fleet.nodes) fleet.healthz.faulty.add(n.name);
  const t0 = Date.now();
  await fleet.startAll();
  t.comment(`${NODES} agents started in ${Date.now() - t0}ms`);

  /** What ends the wait early: a node that gave up cannot heal any more, so there is no point waiting. */
  const gaveUp = (): string | undefined => {
    // The agent's log, not only the Event: a recovery that fails during an API outage cannot post one.
    const failed = fleet.lines(/of judged time after the reboot/)[0];
    if (failed) return `${failed.node}: recovery-failed: ${String(failed.line.msg)}`;
    const exhausted = fleet.lines(/episode exhausted/)[0];
    return exhausted ? `${exhausted.node}: episode exhausted` : undefined;
  };
  const ended = await waitFor(
    async () => {
      const why = gaveUp();
      if (why) return { gaveUp: why };
      const healed = fleet.nodes.every((n) => n.boots >= 1 && !c.fake.node(n.name).spec.unschedulable);
      const free = [...c.fake.leases.values()].every((l) => !l.spec?.holderIdentity);
      return healed && free && fleet.healthz.faulty.size === 0 ? { gaveUp: undefined } : undefined;
    },
    { timeoutMs: 20 * 60_000, intervalMs: 250, what: 'every node rebooted, uncordoned, every slot free' },
  ).catch((e: unknown) => {
    for (const n of fleet.nodes) t.comment(`${n.name}: boots ${n.boots}, cordoned ${!!c.fake.node(n.name).spec.unschedulable}`);
    throw e;
  });
  if (ended.gaveUp) throw new Error(`the fleet cannot heal any more: ${ended.gaveUp}`);
  t.comment(`fleet healed in ${Date.now() - t0}ms`);
  await outageDone;

  // ---- judged from the API server's request log ----
  const timeline = cordonTimeline(c.fake.requests);
  const most = maxCordoned(timeline);
  t.ok(most.max <= slots, `never more than ${slots} node(s) cordoned at once (most: ${most.max}: ${most.nodes.join(', ')})`);
  t.equal(most.max, slots, `and the fleet used its ${slots} slot(s)`);
  t.ok(timeline.every((x) => !x.cordoned || x.by === `agent/${x.node}`), 'every cordon is the agent of that node');
  const reboots = c.fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/events') && (r.body as { reason?: string } | undefined)?.reason === 'NodemedicReboot');
  t.equal(reboots.length, NODES, 'one reboot per node');
  for (const r of reboots) {
    const node = (r.body as { involvedObject: { name: string } }).involvedObject.name;
    const others = cordonedAt(timeline, r.at).filter((n) => n !== node);
    t.ok(others.length <= slots - 1, `${node} rebooted while ${others.length ? others.join(', ') : 'no other node'} still cordoned`);
  }
  t.same(slotTakeovers(c.fake.requests), [], 'no slot taken over from a node that had not released it (the reboot lasted longer than leaseDuration)');
  for (const n of fleet.nodes) {
    t.equal(n.reboots.length, 1, `${n.name}: systemctl reboot once`);
    t.notOk(c.fake.node(n.name).metadata.annotations?.['nodemedic.io/cordoned-by'], `${n.name}: no cordon mark left`);
  }
  t.ok([...c.fake.leases.values()].every((l) => !l.spec.holderIdentity), 'every slot released');
  t.notOk(c.fake.events.some((e) => e.reason === 'NodemedicRecoveryFailed'), 'no recovery-failed');

  // ---- retries: refused attempts were retried and spent nothing ----
  const retried = fleet.lines(/drain-reboot: skipped/).length + fleet.lines(/drain-reboot: failure/).length;
  t.ok(retried >= NODES / slots - 1, `refused attempts happened and were retried (${retried})`);
  t.equal(fleet.lines(/episode exhausted/).length, 0, 'no episode ran out of steps: a refusal is retried, not the end');
  for (const n of fleet.nodes) {
    const state = JSON.parse(readFileSync(join(n.stateDir, 'state.json'), 'utf8')) as { budgets: { reboots: number[] } };
    t.equal(state.budgets.reboots.length, 1, `${n.name}: only the reboot actually issued spent the budget`);
  }
  if (opts.failOneEviction) {
    t.ok(c.fake.requests.some((r) => r.path.endsWith('/eviction') && r.status === 500), 'one eviction answered 500');
  }
  if (outageNode) {
    const o = await outageDone!;
    // Its last uncordon: the one after the reboot (an earlier one may be a rollback of a failed drain).
    const uncordon = timeline.filter((x) => x.node === outageNode && !x.cordoned).at(-1);
    t.ok(uncordon && uncordon.at >= o.to, `${outageNode} stayed cordoned through the outage and was uncordoned after it`);
    const waits = fleet.lines(/recovery waiting, time not counted/).filter((l) => l.node === outageNode);
    t.ok(waits.length >= 1, `${outageNode} said why it waited: ${String(waits[0]?.line.msg ?? '')}`);
  }
}

