/**
 * `nodemedic maintain` (issue 17), the built CLI as a real process, against the fake API server and a
 * real systemd namespace with a fake kubelet (the node's side, reached through `hostCommandPrefix`):
 * the command's whole course judged from the API server's request log; a failing command leaving the
 * node cordoned with its reason while the agent beside it (`nodemedic run`, same stateDir) starts no
 * episode for a failing trigger until the maintenance is ended; the capacity guard refusing before any
 * cordon; SIGHUP during the drain rolling back; `--systemd-upgrade` with a fake package manager on the
 * node's PATH and a real `systemctl daemon-reexec` of the namespace's PID 1.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { parse, stringify } from 'yaml';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { startCluster, type Cluster } from './fake-apiserver/harness.js';
import type { K8sObject, RequestRecord } from './fake-apiserver/server.js';
import { waitFor } from './harness/systemd-ns.js';
import { CLI, untapped } from './helpers/cli.js';
import { Scenario, scenarioAvailable } from './helpers/scenario.js';

const SELF = 'scenario-maintain';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `nodemedic maintain --config F ARGS` as a real process; `onStart` gets it while it runs. */
function maintain(configPath: string, args: readonly string[], onStart?: (p: ReturnType<typeof spawn>) => void): Promise<Run> {
  const [cmd, ...rest] = untapped([process.execPath, CLI, 'maintain', '--config', configPath, ...args]);
  const child = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODEMEDIC_CONFIG: '', USER: 'alice', SUDO_USER: '' } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  onStart?.(child);
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

const nodePatches = (c: Cluster, from = 0): RequestRecord[] =>
  c.fake.requests.slice(from).filter((r) => r.method === 'PATCH' && r.path === `/api/v1/nodes/${SELF}`);
const unschedulableIn = (r: RequestRecord): unknown => (r.body as { spec?: { unschedulable?: unknown } } | undefined)?.spec?.unschedulable;
const slotsFree = (c: Cluster): boolean => [...c.fake.leases.values()].every((l) => !l.spec?.holderIdentity);
const condition = (c: Cluster, type: string): { status: string; reason: string; message: string } | undefined =>
  (c.fake.node(SELF).status?.conditions as { type: string; status: string; reason: string; message: string }[] | undefined)?.find((x) => x.type === type);

t.test('nodemedic maintain against the fake API server and a systemd namespace', async (t) => {
  if (!(await scenarioAvailable(t))) return;
  const c = await startCluster(t, { msPerGraceSecond: 10 });
  c.fake.addNode(makeNode({ name: SELF }));
  c.fake.addNode(makeNode({ name: 'worker-2', allocatable: { cpu: '4', memory: '16Gi' } }));
  c.fake.addPod(makePod({ name: 'kube-proxy-m', namespace: 'kube-system', node: SELF, kind: 'DaemonSet' }));
  c.fake.addPod(makePod({ name: 'web-0', node: SELF, requests: { cpu: '500m', memory: '1Gi' } }));
  c.fake.addPod(makePod({ name: 'web-1', node: SELF, requests: { cpu: '500m', memory: '1Gi' } }));
  const s = await Scenario.start(t, {
    name: 'maintain',
    kubeconfig: c.kubeconfig,
    // kubelet is the one trigger here: maintain judges the node's health by it, and the agent's ladder acts on it.
    remediation: { triggers: ['kubelet'], leaseDuration: '5s', maxUnhealthyNodes: 1, recovery: { timeout: '30s' } },
  });
  const config = s.configPath;
  const evidence = join(s.stateDir, 'evidence');

  await t.test('the command succeeds: slot, cordon, drain, command, healthy, uncordon, slot released; exit 0', async (t) => {
    const from = c.fake.requests.length;
    const r = await maintain(config, ['--reason', 'swap the data disk', '--timeout', '60s', '--', '/bin/sh', '-c', 'echo hello-from-maintenance; echo warn-from-maintenance >&2']);
    t.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    t.match(r.stdout, /^hello-from-maintenance$/m, "the command's stdout on stdout");
    t.match(r.stderr, /^warn-from-maintenance$/m, "the command's stderr on stderr");
    t.match(r.stdout, /summary: success: drain done .*evicted 2 pods.*left 1 \(1 DaemonSet, 0 mirror\).*healthy \(trigger checks ok, Node Ready\); uncordoned scenario-maintain, released the reboot lease/);
    const logs = readdirSync(evidence).filter((f) => f.endsWith('-maintain-command.log'));
    t.equal(logs.length, 1, 'one output file in the evidence directory');
    const kept = readFileSync(join(evidence, logs[0]!), 'utf8');
    t.match(kept, /hello-from-maintenance/);
    t.match(kept, /warn-from-maintenance/);

    // The course, from the request log: slot taken, cordoned, evicted, uncordoned, slot released.
    const reqs = c.fake.requests.slice(from);
    const at = (f: (x: RequestRecord) => boolean): number => reqs.findIndex(f);
    const lastAt = (f: (x: RequestRecord) => boolean): number => reqs.map(f).lastIndexOf(true);
    const leaseTaken = at((x) => x.path.includes('/leases') && (x.method === 'POST' || x.method === 'PUT') && x.status < 300);
    const cordoned = at((x) => x.method === 'PATCH' && x.path === `/api/v1/nodes/${SELF}` && unschedulableIn(x) === true);
    const evictions = reqs.filter((x) => x.method === 'POST' && x.path.endsWith('/eviction')).map((x) => x.path.split('/').at(-2));
    const firstEviction = at((x) => x.path.endsWith('/eviction'));
    const uncordoned = at((x) => x.method === 'PATCH' && x.path === `/api/v1/nodes/${SELF}` && unschedulableIn(x) === false);
    const released = lastAt((x) => x.path.includes('/leases') && x.method === 'PUT' && x.status < 300);
    t.ok(leaseTaken >= 0 && leaseTaken < cordoned, 'a reboot slot is taken before the cordon');
    t.ok(cordoned < firstEviction, 'cordoned before the first eviction');
    t.same(evictions.sort(), ['web-0', 'web-1'], 'both pods evicted, the DaemonSet pod not');
    t.ok(uncordoned > firstEviction && released > uncordoned, 'uncordoned after the drain, slot released after the uncordon');
    t.same(c.fake.podsOn(SELF).map((p) => p.metadata.name), ['kube-proxy-m'], 'the DaemonSet pod stays');
    t.notOk(c.fake.node(SELF).spec.unschedulable, 'schedulable again');
    t.notOk(c.fake.node(SELF).metadata.annotations, 'the cordon mark is gone');
    t.ok(slotsFree(c), 'slot released');
    t.notOk(existsSync(join(s.stateDir, 'drain-reboot.json')), 'no plan left');
    t.match(condition(c, 'UnderMaintenance'), { status: 'False', reason: 'MaintenanceDone' });
    const reasons = c.fake.events.filter((e: K8sObject) => e.source?.component === 'nodemedic-cli').map((e: K8sObject) => e.reason);
    t.same(reasons, ['NodemedicCordon', 'NodemedicDrainStarted', 'NodemedicDrainSucceeded', 'NodemedicMaintenance', 'NodemedicUncordon', 'NodemedicMaintenanceDone']);
  });

  await t.test('--dry-run: the guards and the drain plan are reported; nothing cordoned, no slot, the command never runs; exit 0', async (t) => {
    const from = c.fake.requests.length;
    const ran = join(s.dir, 'dry-run-ran');
    const r = await maintain(config, ['--dry-run', '--', '/bin/sh', '-c', `touch ${ran}`]);
    t.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    // (web-0 and web-1 went with the first maintenance: the plan has the DaemonSet pod only.)
    t.match(r.stdout, /summary: dry_run: dry run: would take a reboot lease, cordon scenario-maintain, evict 0 pods, .*leave 1 DaemonSet\/mirror pods/);
    t.same(nodePatches(c, from), [], 'no write to the Node');
    t.notOk(c.fake.requests.slice(from).some((x) => x.path.includes('/leases') && x.method !== 'GET'), 'no Lease written');
    t.notOk(existsSync(ran), 'the command did not run');
  });

  await t.test('the capacity guard refuses: nothing cordoned, the command never runs, exit 1', async (t) => {
    c.fake.addPod(makePod({ name: 'big-0', node: SELF, requests: { cpu: '64', memory: '1Gi' } }));
    const from = c.fake.requests.length;
    const ran = join(s.dir, 'capacity-ran');
    const r = await maintain(config, ['--', '/bin/sh', '-c', `touch ${ran}`]);
    t.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    t.match(r.stdout, /summary: skipped: refused: capacity guard: .*pod default\/big-0 \(cpu 64.*fits on no other node/);
    t.same(nodePatches(c, from), [], 'no write to the Node: nothing cordoned');
    t.notOk(existsSync(ran), 'the command did not run');
    t.ok(slotsFree(c), 'the slot taken for the guards was given back');
    t.match(c.fake.events.at(-1), { reason: 'NodemedicGuardRefused', message: /refused to drain for maintenance .*capacity guard/ });
    c.fake.pods.delete('default/big-0');
  });

  await t.test('the command fails: cordoned with the reason, exit 3; the agent beside it starts no episode until uncordon', async (t) => {
    const agent = await s.startAgent();
    t.teardown(() => agent.stop());
    await agent.waitStatus((st) => st.results.find((x) => x.check === 'kubelet')?.status === 'ok', 'kubelet ok');
    c.fake.addPod(makePod({ name: 'web-2', node: SELF }));
    const r = await maintain(config, ['--reason', 'firmware', '--', '/bin/sh', '-c', 'echo flashing failed >&2; exit 7']);
    t.equal(r.code, 3, `${r.stdout}\n${r.stderr}`);
    t.match(r.stdout, /summary: failure: `\/bin\/sh -c echo flashing failed >&2; exit 7` failed \(exit code 7\).*scenario-maintain stays cordoned/);
    t.match(r.stderr, /the node stays cordoned .*nodemedic uncordon/);
    const node = c.fake.node(SELF);
    t.equal(node.spec.unschedulable, true, 'stays cordoned');
    t.match(node.metadata.annotations, { 'nodemedic.io/cordoned-by': 'operator/alice', 'nodemedic.io/cordon-reason': 'nodemedic maintain: firmware' });
    t.match(c.fake.events.at(-1), { type: 'Warning', reason: 'NodemedicMaintenanceFailed', message: /exit code 7.*stays cordoned/ });
    t.match(condition(c, 'UnderMaintenance'), { status: 'True', reason: 'MaintenanceFailed', message: /exit code 7/ });
    t.ok(slotsFree(c), 'the slot goes to the next node');
    const st = await agent.waitStatus((x) => ((x as unknown as { maintenance?: { phase?: string } }).maintenance?.phase === 'maintenance-failed' ? x : undefined), "the agent's /status shows the failed maintenance");
    t.match((st as unknown as { maintenance: unknown }).maintenance, { phase: 'maintenance-failed', by: 'operator/alice', reason: 'firmware', failure: /exit code 7/ });

    // A failing trigger during the (failed, unfinished) maintenance: no episode, well past grace (1s).
    await s.kubelet.configure({ healthz: 'fail' });
    const seen = await agent.waitStatus((x) => (x.results.find((y) => y.check === 'kubelet')?.status === 'problem' ? Date.now() : undefined), 'kubelet failing');
    // Judged on sweeps that finished 5 s after that (grace is 1 s, a sweep every second), not on a sleep.
    await waitFor(
      async () => {
        const raw = (await (await fetch(new URL('/status', agent.url), { signal: AbortSignal.timeout(5000) })).json()) as { lastSweep: string | null };
        return Date.parse(raw.lastSweep ?? '') > seen + 5000 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 200, what: 'a sweep 5 s after kubelet began failing' },
    );
    const later = await agent.status();
    t.equal(later.episode, null, 'no episode while the maintenance stands');
    t.same(later.recentActions, [], 'no action');
    t.match(later.results.find((y) => y.check === 'kubelet'), { status: 'problem' });

    // The control: once the operator ends the maintenance, the same failing kubelet starts an episode.
    const u = await maintainLike(config, ['uncordon']);
    t.equal(u.code, 0, u.stderr);
    t.match(u.stdout, /cleared the drain-reboot plan of episode maintain-.* \(maintenance-failed\)/);
    t.notOk(c.fake.node(SELF).spec.unschedulable);
    t.match(condition(c, 'UnderMaintenance'), { status: 'False', reason: 'MaintenanceCleared' });
    const ep = await agent.waitStatus((x) => x.episode ?? undefined, 'an episode once the maintenance ended');
    t.match(ep, { trigger: 'kubelet' });
    await agent.stop();
    await s.kubelet.configure({ healthz: 'ok' });
  });

  await t.test('SIGHUP during the drain rolls back: uncordoned, slot free, plan removed, the command never ran; exit 1', async (t) => {
    c.fake.addPod(makePod({ name: 'db-0', node: SELF, labels: { app: 'db' } }));
    c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, never: true }];
    const ran = join(s.dir, 'hup-ran');
    let child: ReturnType<typeof spawn> | undefined;
    const done = maintain(config, ['--', '/bin/sh', '-c', `touch ${ran}`], (p) => (child = p));
    // The drain cannot finish (a PodDisruptionBudget allowing nothing): the signal lands in it.
    await waitFor(() => (c.fake.requests.some((x) => x.path.endsWith('/pods/db-0/eviction') && x.status === 429) ? true : undefined), { timeoutMs: 60_000, intervalMs: 100, what: 'the drain refused by the PDB' });
    t.equal(c.fake.node(SELF).spec.unschedulable, true, 'cordoned while draining');
    child!.kill('SIGHUP');
    const r = await done;
    t.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    t.match(r.stderr, /SIGHUP: stopping/);
    t.match(r.stdout, /summary: failure: .*rolled back, no reboot \(uncordoned scenario-maintain, released the reboot lease\)/);
    t.notOk(c.fake.node(SELF).spec.unschedulable, 'uncordoned');
    t.ok(slotsFree(c), 'slot released');
    t.notOk(existsSync(join(s.stateDir, 'drain-reboot.json')), 'plan removed');
    t.notOk(existsSync(ran), 'the command never ran');
    c.fake.pdbs = [];
    c.fake.pods.delete('default/db-0');
  });

  await t.test('--systemd-upgrade: a fake yum upgrades, a real daemon-reexec, systemd-version ok, exit 0', async (t) => {
    // The node's package tools, first on the PATH the prefix gives commands on the node side.
    const bin = join(s.dir, 'fakebin');
    const state = join(s.dir, 'installed-systemd');
    await mkdir(bin, { recursive: true });
    await writeFile(state, 'systemd-219-62.el7_6.9.x86_64\n');
    const script = async (name: string, body: string): Promise<void> => {
      await writeFile(join(bin, name), `#!/bin/sh\n${body}\n`);
      await chmod(join(bin, name), 0o755);
    };
    await script('rpm', `[ "$1 $2" = "-q systemd" ] || { echo "fake rpm: $*" >&2; exit 2; }\ncat ${state}`);
    await script('yum', `[ "$*" = "update -y systemd" ] || { echo "fake yum: $*" >&2; exit 2; }\necho "Updating systemd 219-62.el7_6.9 -> 219-78.el7_9.9"\necho systemd-219-78.el7_9.9.x86_64 > ${state}\necho Complete!`);
    // Present too, so the detection's order is what is tested, and the host's real apt-get is never reached.
    await script('apt-get', 'echo "fake apt-get must not be called on an rpm node" >&2; exit 99');
    const cfg = parse(await readFile(config, 'utf8')) as Record<string, any>;
    cfg.hostCommandPrefix = [...s.ns.prefix, 'env', `PATH=${bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`];
    cfg.checks['systemd-version'] = { enabled: true, minimum: '219-67.el7' };
    const upgradeConfig = join(s.dir, 'config-upgrade.yaml');
    await writeFile(upgradeConfig, stringify(cfg));
    const before = (await s.ns.journalctl('-o', 'cat', '_PID=1')).stdout;
    t.notMatch(before, /^Reexecuting\.$/m, 'no reexec before');

    const r = await maintain(upgradeConfig, ['--systemd-upgrade', '--timeout', '60s']);
    t.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    t.match(r.stdout, /systemd-version before: problem \(SystemdTooOld\)/);
    t.match(r.stdout, /running on scenario-maintain: yum update -y systemd\nUpdating systemd .*\nComplete!/);
    t.match(r.stdout, /systemd re-executed by systemctl daemon-reexec: PID 1 answers again .*the journal says "Reexecuting\."; no runc process older than 10m/);
    t.match(r.stdout, /systemd-version: ok \(SystemdUpToDate\): systemd 219-78\.el7_9\.9 is at or above 219-67\.el7/);
    t.match(r.stdout, /summary: success: .*systemd-version ok \(SystemdUpToDate\).*uncordoned scenario-maintain/);
    t.notMatch(r.stderr, /apt-get must not be called/);
    t.equal(readFileSync(state, 'utf8').trim(), 'systemd-219-78.el7_9.9.x86_64', 'the fake upgrade happened');
    const after = (await s.ns.journalctl('-o', 'cat', '_PID=1')).stdout;
    t.match(after, /^Reexecuting\.$/m, "the namespace's journal shows the real reexec");
    t.notOk(c.fake.node(SELF).spec.unschedulable, 'schedulable again');
    t.ok(slotsFree(c));

    // Run again: nothing to cure, so nothing is drained.
    const from = c.fake.requests.length;
    const again = await maintain(upgradeConfig, ['--systemd-upgrade']);
    t.equal(again.code, 0, again.stderr);
    t.match(again.stdout, /summary: nothing to do: systemd-version is ok \(SystemdUpToDate\); the node was not touched/);
    t.same(c.fake.requests.slice(from), [], 'no API request at all');
  });
});

/** Another nodemedic command with the scenario's config (its flags before the config, as an operator types them). */
function maintainLike(configPath: string, args: readonly string[]): Promise<Run> {
  const [cmd, ...rest] = untapped([process.execPath, CLI, ...args, '--config', configPath]);
  const child = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODEMEDIC_CONFIG: '', USER: 'alice', SUDO_USER: '' } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}
