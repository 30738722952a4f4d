/**
 * The operator commands as real processes (the built CLI) against the fake API server:
 * `nodemedic cordon|uncordon|drain|reboot`, their output pod by pod, summaries and exit codes.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CORDON_REASON, CORDONED_BY } from '../remediations/kubernetes/cordon.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { startCluster, writeNodeConfigFile } from './fake-apiserver/harness.js';
import { CLI, runCli } from './helpers/cli.js';
import { requireComponent } from './helpers/require.js';

const SELF = 'worker-1';

t.test('operator commands', async (t) => {
  if (!existsSync(CLI) && !(await requireComponent(t, 'the built CLI (npm run build)', ['__nodemedic_dist_missing__'], false))) return;
  const c = await startCluster(t, { msPerGraceSecond: 10 });
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  c.fake.addPod(makePod({ name: 'kube-proxy-1', namespace: 'kube-system', node: SELF, kind: 'DaemonSet' }));
  c.fake.addPod(makePod({ name: 'web-0', node: SELF }));
  c.fake.addPod(makePod({ name: 'web-1', node: SELF }));
  c.fake.addPod(makePod({ name: 'job-done', node: SELF, kind: 'Job', phase: 'Succeeded' }));
  const cfg = writeNodeConfigFile(c, SELF, {}, { log: { level: 'warn' } });
  const run = (...args: string[]) => runCli([...args, '--config', cfg.path], { env: { USER: 'alice', SUDO_USER: '' } });

  await t.test('cordon, again, uncordon; --node for another node', async (t) => {
    let r = await run('cordon', '--reason', 'swap a disk');
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, `cordoning node ${SELF}\nnode/${SELF} cordoned (by operator/alice: swap a disk)\n`);
    const node = c.fake.node(SELF);
    t.equal(node.spec.unschedulable, true);
    t.equal(node.metadata.annotations[CORDONED_BY], 'operator/alice');
    t.equal(node.metadata.annotations[CORDON_REASON], 'swap a disk');
    t.match(c.fake.events.at(-1), { reason: 'NodemedicCordon', source: { component: 'nodemedic-cli' }, message: /operator\/alice cordoned worker-1: swap a disk/ });
    r = await run('cordon');
    t.equal(r.code, 0);
    t.match(r.stdout, /was already cordoned by nodemedic \(operator\/alice\); nothing changed/);
    r = await run('uncordon');
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, `uncordoning node ${SELF} (cordoned by nodemedic (operator/alice))\nnode/${SELF} uncordoned\n`);
    t.notOk(c.fake.node(SELF).spec.unschedulable);
    t.notOk(c.fake.node(SELF).metadata.annotations, 'mark removed');
    r = await run('cordon', '--node', 'worker-2');
    t.equal(r.code, 0);
    t.equal(c.fake.node('worker-2').spec.unschedulable, true);
    t.notOk(c.fake.node(SELF).spec.unschedulable);
    c.fake.updateNode('worker-2', (n) => delete n.metadata.annotations);
    r = await run('uncordon', '--node', 'worker-2');
    t.match(r.stdout, /cordoned by an administrator \(no nodemedic mark\)/, 'uncordon by an operator works on any cordon');
    t.notOk(c.fake.node('worker-2').spec.unschedulable);
  });

  await t.test('drain --dry-run changes nothing and lists every pod', async (t) => {
    const writes = c.fake.requests.filter((x) => x.method !== 'GET').length;
    const r = await run('drain', '--dry-run');
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /would keep pod kube-system\/kube-proxy-1 \(DaemonSet pod\)/);
    t.match(r.stdout, /would delete finished pod default\/job-done/);
    t.match(r.stdout, /would evict pod default\/web-0\nwould evict pod default\/web-1/);
    t.match(r.stdout, /dry run summary: would evict 2, delete 1 finished, keep 1\n$/);
    t.equal(c.fake.requests.filter((x) => x.method !== 'GET').length, writes, 'no write');
  });

  await t.test('drain: cordon, then pod by pod, a summary; the node stays cordoned', async (t) => {
    const r = await run('drain', '--timeout', '30s');
    t.equal(r.code, 0, r.stdout + r.stderr);
    t.match(r.stdout, new RegExp(`^node/${SELF} cordoned\n`));
    t.match(r.stdout, /keeping pod kube-system\/kube-proxy-1: DaemonSet pod stays/);
    t.match(r.stdout, /deleting finished pod default\/job-done/);
    t.match(r.stdout, /evicting pod default\/web-0/);
    t.match(r.stdout, /pod default\/web-0 evicted/);
    t.match(r.stdout, /pod default\/web-1 evicted/);
    t.match(r.stdout, /summary: drain done in .*: evicted 2 pods, deleted 1 finished pods, left 1 \(1 DaemonSet, 0 mirror\); node\/worker-1 stays cordoned/);
    t.same(c.fake.podsOn(SELF).map((p) => p.metadata.name), ['kube-proxy-1']);
    t.equal(c.fake.node(SELF).spec.unschedulable, true);
    t.same(c.fake.events.slice(-3).map((e) => e.reason), ['NodemedicCordon', 'NodemedicDrainStarted', 'NodemedicDrainSucceeded']);
    c.fake.updateNode(SELF, (n) => {
      n.spec.unschedulable = false;
      delete n.metadata.annotations;
    });
  });

  await t.test('drain refuses emptyDir/unmanaged pods without the options, and times out on a stuck PDB', async (t) => {
    c.fake.addPod(makePod({ name: 'scratch', node: SELF, emptyDir: true }));
    let r = await run('drain');
    t.equal(r.code, 1);
    t.match(r.stdout, /cannot evict pod default\/scratch \(emptyDir volume\)/);
    t.match(r.stderr, /cannot drain: pods with emptyDir volumes .*: default\/scratch; nothing was changed/);
    t.notOk(c.fake.node(SELF).spec.unschedulable, 'not even cordoned');
    c.fake.pods.delete('default/scratch');
    c.fake.addPod(makePod({ name: 'db', node: SELF, labels: { app: 'db' } }));
    c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];
    r = await run('drain', '--timeout', '2s');
    t.equal(r.code, 1);
    t.match(r.stdout, /pod default\/db: eviction refused \(.*disruption budget.*\); retrying in 5s \(attempt 1\)/);
    t.match(r.stdout, /summary: drain timed out after 2s .*1 not gone \(default\/db\)/);
    t.equal(c.fake.node(SELF).spec.unschedulable, true, 'an operator drain leaves the node cordoned, like kubectl');
    c.fake.pdbs = [];
    c.fake.pods.delete('default/db');
    c.fake.updateNode(SELF, (n) => {
      n.spec.unschedulable = false;
      delete n.metadata.annotations;
    });
  });

  await t.test('usage and config errors', async (t) => {
    let r = await run('drain', '--timeout', 'soon');
    t.equal(r.code, 64);
    t.match(r.stderr, /--timeout: must be a duration with a unit/);
    r = await run('reboot', '--node', 'worker-2');
    t.equal(r.code, 64);
    t.match(r.stderr, /--node: reboot acts on the machine it runs on \(worker-1\); run it on worker-2 instead/);
    const bare = join(c.dir, 'bare.yaml');
    writeFileSync(bare, `nodeName: ${SELF}\nstateDir: ${join(c.dir, 'bare-state')}\n`);
    r = await runCli(['cordon', '--config', bare], { env: { KUBERNETES_SERVICE_HOST: '' } });
    t.equal(r.code, 69, 'not configured is not an invalid config (issue 12)');
    t.match(r.stderr, /Kubernetes access is not configured .*kubernetes\.kubeconfig is empty/);
    t.notMatch(r.stderr, /invalid config/);
    const missing = join(c.dir, 'missing.yaml');
    writeFileSync(missing, `nodeName: ${SELF}\nkubernetes: { kubeconfig: ${join(c.dir, 'nope')} }\n`);
    r = await runCli(['uncordon', '--config', missing]);
    t.equal(r.code, 78);
    t.match(r.stderr, /kubernetes\.kubeconfig: cannot read/);
  });

  await t.test('reboot --dry-run runs the guards only; uncordon after a failed recovery clears the plan', async (t) => {
    let r = await run('reboot', '--dry-run', '--reason', 'kernel 6.1.99');
    t.equal(r.code, 0, r.stdout + r.stderr);
    t.match(r.stdout, /storm guard: 0 of the 1 other nodes/);
    t.match(r.stdout, /summary: dry_run: dry run: would take a reboot lease, cordon worker-1, evict 0 pods/);
    t.equal(c.fake.leases.size, 0);
    mkdirSync(cfg.stateDir, { recursive: true });
    const plan = { version: 1, episodeId: 'ep-old', reason: 'x', origin: 'agent', node: SELF, phase: 'recovery-failed', bootId: 'b', createdAt: '', updatedAt: '', kubernetes: true, cordon: { token: 'tok', ours: true }, failure: 'kubelet still down' };
    writeFileSync(join(cfg.stateDir, 'drain-reboot.json'), JSON.stringify(plan));
    r = await run('reboot');
    t.equal(r.code, 1);
    t.match(r.stdout, /summary: skipped: a previous reboot \(episode ep-old\) did not recover: kubelet still down; no second reboot/);
    c.fake.updateNode(SELF, (n) => {
      n.spec.unschedulable = true;
      n.metadata.annotations = { [CORDONED_BY]: `agent/${SELF}`, 'nodemedic.io/cordon-token': 'tok' };
    });
    r = await run('uncordon');
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /cleared the drain-reboot plan of episode ep-old \(recovery-failed\)/);
    t.notOk(existsSync(join(cfg.stateDir, 'drain-reboot.json')));
    t.notOk(c.fake.node(SELF).spec.unschedulable);
  });
});
