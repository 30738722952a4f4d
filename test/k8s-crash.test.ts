/**
 * A real nodemedic process (the built CLI's `reboot`, the same DrainRebootController the agent runs)
 * killed with SIGKILL at each point of a drain-reboot. At every kill the node is either not cordoned
 * by us or cordoned with our owner mark and a plan on disk naming it; on restart the agent rolls the
 * drain back (or, after the reboot, recovers), never leaving an ownerless cordon.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CORDON_TOKEN, CORDONED_BY } from '../remediations/kubernetes/cordon.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { agentlet, result, spawnCli, startCluster, until, writeNodeConfigFile, type Cluster } from './fake-apiserver/harness.js';
import { startAgent } from './helpers/agent.js';
import { requireComponent } from './helpers/require.js';
import { allChecksOff } from './helpers/lifecycle.js';

const SELF = 'worker-1';

function populate(c: Cluster): void {
  for (const n of [SELF, 'worker-2', 'worker-3']) c.fake.addNode(makeNode({ name: n }));
  for (let i = 0; i < 15; i++) c.fake.addPod(makePod({ name: `web-${i}`, node: SELF, terminationGracePeriodSeconds: 1 + (i % 3) }));
  for (let i = 0; i < 3; i++) c.fake.addPod(makePod({ name: `db-${i}`, node: SELF, labels: { app: 'db' } }));
  c.fake.addPod(makePod({ name: 'kube-proxy-1', node: SELF, kind: 'DaemonSet' }));
  // The drain cannot finish while the budget blocks: the process is certainly mid-drain when killed there.
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];
}

/** The invariant: cordoned by us implies our mark on the node and a plan on disk with the same token. */
function ownerRecordHolds(c: Cluster, stateDir: string): { ok: boolean; why: string } {
  const node = c.fake.node(SELF);
  if (!node.spec.unschedulable) return { ok: true, why: 'not cordoned' };
  const mark = node.metadata.annotations?.[CORDON_TOKEN];
  if (!mark || !node.metadata.annotations?.[CORDONED_BY]) return { ok: false, why: 'cordoned without a nodemedic mark' };
  const path = join(stateDir, 'drain-reboot.json');
  if (!existsSync(path)) return { ok: false, why: 'cordoned with a mark but no plan on disk' };
  const plan = JSON.parse(readFileSync(path, 'utf8'));
  if (plan.cordon?.token !== mark) return { ok: false, why: 'the plan names another cordon' };
  return { ok: true, why: `cordoned, mark and plan agree (phase ${plan.phase})` };
}

const killPoints: { name: string; reached: (c: Cluster) => boolean }[] = [
  { name: 'right after the lease was taken', reached: (c) => c.fake.leases.size > 0 },
  { name: 'right after the cordon', reached: (c) => !!c.fake.node(SELF).spec.unschedulable },
  { name: 'after the first evictions', reached: (c) => c.fake.requests.some((r) => r.path.endsWith('/eviction') && r.status === 201) },
  { name: 'while a PodDisruptionBudget refuses evictions', reached: (c) => c.fake.requests.filter((r) => r.status === 429).length >= 3 },
];

t.test('killed at any point of the drain: on restart it rolls back and never leaves an ownerless cordon', async (t) => {
  if (!existsSync(new URL('../dist/agent/cli.js', import.meta.url)) && !(await requireComponent(t, 'the built CLI (npm run build)', ['__nodemedic_dist_missing__'], false))) return;
  for (const point of killPoints) {
    await t.test(point.name, async (t) => {
      const c = await startCluster(t, { msPerGraceSecond: 300 });
      populate(c);
      const cfg = writeNodeConfigFile(c, SELF, { maxUnhealthyNodes: 3, drain: { timeout: '10m' } });
      const child = spawnCli(t, ['reboot', '--config', cfg.path, '--reason', `crash test: ${point.name}`]);
      await until(() => point.reached(c), 120_000, 5).catch(() => {
        throw new Error(`never reached "${point.name}":\n${child.output()}`);
      });
      child.proc.kill('SIGKILL');
      t.equal((await child.exited).signal, 'SIGKILL');
      const atKill = ownerRecordHolds(c, cfg.stateDir);
      t.ok(atKill.ok, `at the kill: ${atKill.why}`);

      // The restarted agent: same config and state dir, same boot (nothing rebooted).
      const a = agentlet(c, SELF, { maxUnhealthyNodes: 3, drain: { timeout: '10m' } });
      a.bootId.value = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      t.teardown(() => a.controller.stop());
      await a.controller.onStartup();
      const node = c.fake.node(SELF);
      t.notOk(node.spec.unschedulable, 'rolled back: uncordoned');
      t.notOk(node.metadata.annotations?.[CORDONED_BY], 'and the mark removed');
      t.notOk(existsSync(join(cfg.stateDir, 'drain-reboot.json')), 'no plan left');
      const lease = c.fake.leases.get('kube-system/nodemedic-reboot-0');
      t.notOk(lease?.spec.holderIdentity, 'lease released (or never created)');
      if (c.fake.events.some((e) => e.reason === 'NodemedicCordon')) {
        t.match(c.fake.events.at(-1), { reason: 'NodemedicRollback', message: /the agent stopped during the drain/ });
      }
      t.equal(a.host.commands.length, 0, 'no reboot');
      t.notOk(existsSync(cfg.commandsFile), 'the killed process never ran a host command');
    });
  }
});

t.test('killed after the reboot was issued: the next boot recovers and uncordons (CLI reboot, agent recovery)', async (t) => {
  if (!existsSync(new URL('../dist/agent/cli.js', import.meta.url)) && !(await requireComponent(t, 'the built CLI (npm run build)', ['__nodemedic_dist_missing__'], false))) return;
  const c = await startCluster(t, { msPerGraceSecond: 10 });
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  for (let i = 0; i < 5; i++) c.fake.addPod(makePod({ name: `web-${i}`, node: SELF }));
  const cfg = writeNodeConfigFile(c, SELF, { maxUnhealthyNodes: 3 });
  const child = spawnCli(t, ['reboot', '--config', cfg.path, '--reason', 'kernel update']);
  const { code } = await child.exited;
  t.equal(code, 0, child.output());
  t.match(child.output(), /evicting pod default\/web-0/);
  t.match(child.output(), /pod default\/web-0 evicted/);
  t.match(child.output(), /summary: success: drain done .* evicted 5 pods/);
  t.equal(readFileSync(cfg.commandsFile, 'utf8'), 'systemctl reboot\n', 'systemctl reboot went through the host command prefix');
  t.ok(ownerRecordHolds(c, cfg.stateDir).ok);
  // The machine comes back with a new boot id; the agent recovers.
  const a = agentlet(c, SELF, { maxUnhealthyNodes: 3 });
  a.bootId.value = 'a-new-boot';
  t.teardown(() => a.controller.stop());
  await a.controller.onStartup();
  await a.controller.afterSweep([result('kubelet', 'ok'), result('pleg', 'ok'), result('containerd', 'ok')]);
  await until(() => !c.fake.node(SELF).spec.unschedulable, 5000);
  t.same(a.ends.map((e) => e.outcome), ['recovered']);
  t.notOk(c.fake.leases.get('kube-system/nodemedic-reboot-0')!.spec.holderIdentity);
});

t.test('the real daemon (nodemedic run) restarted after a SIGKILL mid-drain rolls back, then publishes conditions', async (t) => {
  if (!existsSync(new URL('../dist/agent/cli.js', import.meta.url)) && !(await requireComponent(t, 'the built CLI (npm run build)', ['__nodemedic_dist_missing__'], false))) return;
  const c = await startCluster(t, { msPerGraceSecond: 300 });
  populate(c);
  const cfg = writeNodeConfigFile(c, SELF, { maxUnhealthyNodes: 3, drain: { timeout: '10m' } });
  const child = spawnCli(t, ['reboot', '--config', cfg.path, '--reason', 'daemon restart test']);
  await until(() => c.fake.requests.filter((r) => r.status === 429).length >= 1, 120_000, 5);
  child.proc.kill('SIGKILL');
  await child.exited;
  t.ok(c.fake.node(SELF).spec.unschedulable, 'left cordoned by the killed process');
  t.ok(ownerRecordHolds(c, cfg.stateDir).ok, 'with its owner record');
  const agent = await startAgent({
    nodeName: SELF,
    stateDir: cfg.stateDir,
    hostCommandPrefix: ['/bin/sh', '-c', 'printf "%s\\n" "$*" >> "$0"', cfg.commandsFile],
    kubernetes: { kubeconfig: c.kubeconfig },
    remediation: { mode: 'off' },
    checks: allChecksOff(),
  }, { readyTimeoutMs: 120_000 });
  t.teardown(() => agent.stop());
  await until(() => !c.fake.node(SELF).spec.unschedulable, 120_000).catch(() => {
    throw new Error(`the daemon did not roll back:\n${agent.logs()}`);
  });
  t.notOk(c.fake.node(SELF).metadata.annotations?.[CORDONED_BY], 'mark removed');
  t.notOk(existsSync(join(cfg.stateDir, 'drain-reboot.json')), 'plan removed');
  t.notOk(c.fake.leases.get('kube-system/nodemedic-reboot-0')?.spec.holderIdentity, 'lease released');
  const status = (await (await fetch(`${agent.url}/status`)).json()) as { kubernetes: { kubernetes: string; plan: unknown } };
  t.match(status.kubernetes, { kubernetes: `kubeconfig ${c.kubeconfig}`, plan: null });
  await until(() => (c.fake.node(SELF).status.conditions as { type: string }[]).some((x) => x.type === 'RebootRequired'), 15_000);
  t.match((c.fake.node(SELF).status.conditions as { type: string }[]).find((x) => x.type === 'RebootRequired'), { status: 'True', reason: 'DrainRebootFailed', message: /the agent stopped during the drain/ }, 'the daemon publishes node conditions: the reboot is still needed, and why it did not happen');
  t.equal(await agent.stop(), 0, 'clean stop');
  t.notOk(existsSync(cfg.commandsFile), 'nothing ran on the host');
});
