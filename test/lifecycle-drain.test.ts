/**
 * SIGTERM to a real `nodemedic run` (enforce, Kubernetes access through the fake API server) while
 * it drains its node, with a PodDisruptionBudget that never allows the last evictions: the agent
 * aborts the drain first and rolls it back (uncordon, release the reboot slot) before it exits,
 * well inside systemd's TimeoutStopSec. Judged from the API server's request log.
 */
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { startCluster, until } from './fake-apiserver/harness.js';
import { agentDir, getJson } from './helpers/lifecycle.js';

const SELF = 'worker-1';
const PLEG_LINE = (n: number): string =>
  `E1127 10:00:0${n}.000000    1234 kubelet.go:2412] "Skipping pod synchronization" err="PLEG is not healthy: pleg was last seen active 3m${n}.1s ago; threshold is 3m0s"`;

t.test('SIGTERM while draining: uncordoned and the slot released before the process exits, within 20 s', async (t) => {
  const c = await startCluster(t, { msPerGraceSecond: 100 });
  for (const n of [SELF, 'worker-2', 'worker-3', 'worker-4']) c.fake.addNode(makeNode({ name: n }));
  for (let i = 0; i < 4; i++) c.fake.addPod(makePod({ name: `web-${i}`, node: SELF }));
  for (let i = 0; i < 2; i++) c.fake.addPod(makePod({ name: `db-${i}`, node: SELF, labels: { app: 'db' } }));
  // The drain cannot finish: the process is certainly mid-drain when the SIGTERM comes.
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];

  const a = await agentDir(t);
  const kubeletLog = join(a.dir, 'kubelet.log');
  writeFileSync(kubeletLog, 'kubelet started\n');
  const commandsFile = join(a.dir, 'host-commands.log');
  a.write({
    ...a.config,
    nodeName: SELF,
    // Nothing runs on this machine: every host command is only written down.
    hostCommandPrefix: ['/bin/sh', '-c', 'printf "%s\\n" "$*" >> "$0"', commandsFile],
    kubernetes: { kubeconfig: c.kubeconfig },
    remediation: { mode: 'enforce', grace: '1s', settle: '2s', steps: ['drain-reboot'], maxUnhealthyNodes: 3, leaseDuration: '30s', drain: { timeout: '10m' } },
    checks: { ...(a.config.checks as object), pleg: { enabled: true, source: 'file', file: kubeletLog, minOccurrences: 2, window: '10m' } },
  });
  const p = a.spawn();
  await p.waitLog(/^nodemedic ready$/, 90_000);
  appendFileSync(kubeletLog, `${PLEG_LINE(1)}\n${PLEG_LINE(2)}\n${PLEG_LINE(3)}\n`);

  // Mid-drain: cordoned, and the budget refusing evictions.
  await until(() => c.fake.node(SELF).spec.unschedulable && c.fake.requests.filter((r) => r.path.endsWith('/eviction') && r.status === 429).length >= 1, 60_000, 20).catch(() => {
    throw new Error(`the drain never started:\n${p.dump()}`);
  });
  const lease = [...c.fake.leases.values()].find((l) => l.spec.holderIdentity === SELF);
  t.ok(lease, 'this node holds a reboot slot');
  const leaseName = lease!.metadata.name as string;
  const status = await getJson(`${a.url}/status`);
  t.match(status.kubernetes, { inFlight: true }, '/status: a drain-reboot in flight');

  const sentAt = Date.now();
  const sent = performance.now();
  p.signal('SIGTERM');
  const { code, at } = await p.exited;
  const exitedAt = Date.now();
  t.equal(code, 0, 'clean exit');
  t.ok(at - sent < 20_000, `exited ${Math.round(at - sent)} ms after SIGTERM (limit 20 s)`);

  // From the request log: after the SIGTERM and before the exit, the uncordon and the release.
  const between = c.fake.requests.filter((r) => r.at >= sentAt && r.at <= exitedAt && r.status >= 200 && r.status < 300);
  const uncordon = between.find((r) => r.method === 'PATCH' && r.path === `/api/v1/nodes/${SELF}` && (r.body as { spec?: { unschedulable?: boolean } })?.spec?.unschedulable === false);
  t.ok(uncordon, 'the node was uncordoned between SIGTERM and exit');
  const leaseWrites = between.filter((r) => r.path.endsWith(`/leases/${leaseName}`) && r.method !== 'GET');
  t.ok(leaseWrites.length >= 1, 'the slot was written between SIGTERM and exit');
  const last = leaseWrites.at(-1);
  t.ok(last && (last.method === 'DELETE' || !(last.body as { spec?: { holderIdentity?: string } })?.spec?.holderIdentity), 'the last write gave the slot up');
  // And the state the server ended in.
  t.notOk(c.fake.node(SELF).spec.unschedulable, 'not cordoned');
  t.notOk(c.fake.leases.get(`kube-system/${leaseName}`)?.spec.holderIdentity, 'no holder');
  t.notOk(existsSync(join(a.stateDir, 'drain-reboot.json')), 'no plan left');
  t.notOk(existsSync(commandsFile) && /reboot/.test(String(await import('node:fs').then((f) => f.readFileSync(commandsFile, 'utf8')))), 'no reboot');
  t.same(p.nonJsonLines, [], 'every stdout line is JSON');
});
