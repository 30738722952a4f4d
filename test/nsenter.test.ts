/**
 * DaemonSet mode. The manifest (deploy/daemonset.yaml) is well-formed Kubernetes, privileged with
 * hostPID, mounts the host journal, and runs with the Kubernetes issue's ServiceAccount. Its own
 * config, pointed at a real systemd namespace instead of PID 1 (`nsenter -t <its PID 1>`, the
 * same flags), is run by the real CLI: the agent sees the namespace's kubelet unit through nsenter
 * and statfs()es the namespace's mounts through /proc/<pid>/root, exactly as a pod sees its node.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import { execa } from 'execa';
import t from 'tap';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { requireSystemdNs, startSystemdNs, type SystemdNs } from './harness/systemd-ns.js';
import { CLI_JS, REPO_ROOT, requireBuilt } from './helpers/built.js';
import { freePort } from './helpers/agent.js';

const MANIFEST = join(REPO_ROOT, 'deploy', 'daemonset.yaml');
const RBAC_DIR = join(REPO_ROOT, 'systemd-units', 'kubernetes');
const DAEMONSET_PREFIX = ['nsenter', '-t', '1', '-m', '-u', '-i', '-n', '-p', '--'];

type Obj = Record<string, any>;
const docs = parseAllDocuments(readFileSync(MANIFEST, 'utf8')).map((d) => {
  if (d.errors.length) throw new Error(`${MANIFEST}: ${d.errors[0]!.message}`);
  return d.toJS() as Obj;
});
const configMap = docs.find((d) => d.kind === 'ConfigMap')!;
const daemonSet = docs.find((d) => d.kind === 'DaemonSet')!;
const dsConfigText = configMap.data['config.yaml'] as string;

t.test('the manifest is valid Kubernetes: the official models keep every field', async (t) => {
  t.same(docs.map((d) => d.kind), ['ConfigMap', 'DaemonSet']);
  // A misspelled field (hostPid, priviledged) is dropped by the generated models; a round trip shows it.
  const roundTrip = (o: Obj, type: string): unknown => ObjectSerializer.serialize(ObjectSerializer.deserialize(o, type, ''), type, '');
  t.same(roundTrip(configMap, 'V1ConfigMap'), configMap, 'ConfigMap round-trips');
  t.same(roundTrip(daemonSet, 'V1DaemonSet'), daemonSet, 'DaemonSet round-trips');
  const misspelled = structuredClone(daemonSet);
  misspelled.spec.template.spec.hostPid = true;
  t.notSame(roundTrip(misspelled, 'V1DaemonSet'), misspelled, 'and the round trip does catch a misspelling');
});

t.test('the DaemonSet: hostPID, privileged, host journal, state on the host, all nodes, probes', async (t) => {
  const pod = daemonSet.spec.template.spec as Obj;
  t.same(daemonSet.spec.selector.matchLabels, daemonSet.spec.template.metadata.labels, 'selector matches the pod labels');
  t.equal(pod.hostPID, true);
  t.equal(pod.hostNetwork, true, "kubelet's healthz is on the node's loopback");
  t.same(pod.tolerations, [{ operator: 'Exists' }], 'runs on tainted (NotReady) nodes too');
  t.equal(pod.priorityClassName, 'system-node-critical');
  const c = pod.containers[0] as Obj;
  t.equal(c.securityContext.privileged, true);
  const mounts = new Map((c.volumeMounts as Obj[]).map((m) => [m.mountPath as string, m]));
  const vols = new Map((pod.volumes as Obj[]).map((v) => [v.name as string, v]));
  const hostPathAt = (mountPath: string): string | undefined => vols.get(mounts.get(mountPath)?.name)?.hostPath?.path;
  t.equal(hostPathAt('/var/log'), '/var/log', 'persistent journal (/var/log/journal) mounted');
  t.equal(hostPathAt('/run/log'), '/run/log', 'volatile journal (/run/log/journal) mounted');
  t.ok(mounts.get('/var/log')?.readOnly && mounts.get('/run/log')?.readOnly, 'read-only');
  const cfg = parseYaml(dsConfigText) as Obj;
  t.equal(hostPathAt(cfg.stateDir), cfg.stateDir, 'stateDir is a hostPath: budgets survive pod restarts');
  t.equal(mounts.get('/etc/nodemedic')?.name, 'config');
  t.same(c.args, ['run', '--config', '/etc/nodemedic/config.yaml']);
  const port = Number(/:(\d+)$/.exec(cfg.http.listen)![1]);
  t.same(c.livenessProbe.httpGet, { path: '/healthz', port }, 'liveness on /healthz: the watchdog of DaemonSet mode');
  t.equal(Number(daemonSet.spec.template.metadata.annotations['prometheus.io/port']), port);
});

t.test('the DaemonSet config: valid, nsenter into PID 1, host paths through /proc/1/root', async (t) => {
  if (!requireBuilt(t)) return;
  const cfg = parseYaml(dsConfigText) as Obj;
  t.same(cfg.hostCommandPrefix, DAEMONSET_PREFIX);
  for (const p of cfg.checks.disk.paths as string[]) t.match(p, /^\/proc\/1\/root\//, `disk path ${p} is the node's`);
  t.match(cfg.checks.docker.socket, /^\/proc\/1\/root\//);
  t.match(cfg.checks.containerd.socket, /^\/proc\/1\/root\//);
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-ds-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'config.yaml'), dsConfigText);
  const r = await execa('node', [CLI_JS, 'config', 'validate', join(dir, 'config.yaml')], { reject: false, timeout: 30_000, all: true });
  t.equal(r.exitCode, 0, r.all);
});

t.test("the DaemonSet runs as the Kubernetes issue's ServiceAccount, defined in systemd-units/kubernetes/", async (t) => {
  const pod = daemonSet.spec.template.spec as Obj;
  if (!existsSync(RBAC_DIR)) {
    t.fail(`${RBAC_DIR} is missing: it must define ServiceAccount ${pod.serviceAccountName} in ${daemonSet.metadata.namespace}`);
    return;
  }
  const objects = readdirSync(RBAC_DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .flatMap((f) => parseAllDocuments(readFileSync(join(RBAC_DIR, f), 'utf8')).map((d) => d.toJS() as Obj | null))
    .filter((o): o is Obj => !!o);
  const sa = objects.find((o) => o.kind === 'ServiceAccount' && o.metadata?.name === pod.serviceAccountName);
  t.ok(sa, `ServiceAccount ${pod.serviceAccountName} is defined there`);
  t.equal(sa?.metadata?.namespace, daemonSet.metadata.namespace, 'in the DaemonSet namespace');
  t.notOk(
    docs.some((d) => /Role|ServiceAccount/.test(String(d.kind))),
    'the RBAC is referenced, not duplicated, in deploy/daemonset.yaml',
  );
});

/** The DaemonSet's config aimed at `pid` instead of PID 1, on loopback, with the Kubernetes checks off (no API server). */
function configForNamespace(pid: number, port: number, healthzUrl: string, stateDir: string, diskPaths: string[]): string {
  const cfg = parseYaml(dsConfigText) as Obj;
  cfg.hostCommandPrefix = (cfg.hostCommandPrefix as string[]).map((a) => (a === '1' ? String(pid) : a));
  cfg.http.listen = `127.0.0.1:${port}`;
  cfg.stateDir = stateDir;
  cfg.checks.disk.paths = diskPaths;
  cfg.checks.kubelet.healthzUrl = healthzUrl;
  for (const id of ['node-ready', 'stuck-pods', 'pleg', 'docker', 'containerd']) if (cfg.checks[id]) cfg.checks[id].enabled = false;
  cfg.remediation.mode = 'dry-run';
  return JSON.stringify(cfg);
}

type Result = { check: string; status: string; reason: string; evidence: Obj };

async function runCheck(config: string): Promise<{ code: number | undefined; results: Result[]; stderr: string }> {
  const r = await execa('node', [CLI_JS, 'check', '--json', '--config', config], { reject: false, timeout: 60_000 });
  const results = r.stdout ? ((JSON.parse(r.stdout) as { results: Result[] }).results ?? []) : [];
  return { code: r.exitCode, results, stderr: r.stderr };
}

t.test('through nsenter the agent sees the namespace: its kubelet unit and its mounts', async (t) => {
  if (!(await requireSystemdNs(t))) return;
  if (!requireBuilt(t)) return;
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-nsenter-'));
  let ns: SystemdNs | undefined;
  t.teardown(async () => {
    await ns?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const hz = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => hz.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => hz.close(() => r())));
  const healthzUrl = `http://127.0.0.1:${(hz.address() as AddressInfo).port}/healthz`;

  ns = await startSystemdNs({ name: 'nsenter', units: { 'kubelet.service': '[Service]\nExecStart=/bin/sleep infinity\n' } });
  // A 3 MiB tmpfs that exists only in the namespace's mount table, like a node's /var/lib/kubelet.
  const probe = '/run/nodemedic-probe';
  const inNs = (argv: string[]) => execa('nsenter', ['-t', String(ns!.pid), '-m', '--', ...argv], { reject: false, timeout: 10_000, all: true });
  const mk = await inNs(['mkdir', '-p', probe]);
  const mount = await inNs(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'nm-probe', probe]);
  t.equal(mk.exitCode ?? mount.exitCode, 0, `probe tmpfs mounted inside: ${mk.all}${mount.all}`);
  t.equal(mount.exitCode, 0);
  t.notOk(existsSync(probe), 'not on the host');

  const port = await freePort();
  const config = join(dir, 'config.json');
  const nodeRoot = `/proc/${ns.pid}/root`;
  await writeFile(config, configForNamespace(ns.pid, port, healthzUrl, join(dir, 'state'), [`${nodeRoot}/`, `${nodeRoot}${probe}`]));

  const mainPid = (await ns.systemctl('show', 'kubelet.service', '-p', 'MainPID', '--value')).stdout.trim();
  t.match(mainPid, /^[1-9]\d*$/, "the namespace's kubelet runs");
  const first = await runCheck(config);
  const kubelet = first.results.find((r) => r.check === 'kubelet');
  t.match(kubelet, { status: 'ok', reason: 'KubeletHealthy' }, `kubelet ok through nsenter (${kubelet?.reason}: ${String(kubelet?.evidence.activeState ?? first.stderr).slice(0, 200)})`);
  t.equal(String(kubelet?.evidence.mainPid), mainPid, "its evidence is the namespace's unit (MainPID as PID 1 there sees it)");
  const disk = first.results.find((r) => r.check === 'disk');
  const paths = (disk?.evidence.paths ?? []) as Array<{ path: string; sizeBytes: number }>;
  t.equal(paths.find((p) => p.path === `${nodeRoot}${probe}`)?.sizeBytes, 3 * 1024 * 1024, "statfs through /proc/<pid>/root measured the namespace's own mount");
  t.equal(disk?.status, 'ok');

  t.equal((await ns.systemctl('stop', 'kubelet.service')).exitCode, 0);
  const second = await runCheck(config);
  t.match(second.results.find((r) => r.check === 'kubelet'), { status: 'problem', reason: 'KubeletInactive' }, 'a stopped kubelet in the namespace is a problem');
  t.equal(second.code, 1, 'check exits 1 on a problem');

  // Control: the same config without the prefix asks this machine's systemd, which knows no such kubelet.
  const noPrefix = JSON.parse(await readFile(config, 'utf8')) as Obj;
  noPrefix.hostCommandPrefix = [];
  await ns.systemctl('start', 'kubelet.service');
  await writeFile(join(dir, 'no-prefix.json'), JSON.stringify(noPrefix));
  const control = (await runCheck(join(dir, 'no-prefix.json'))).results.find((r) => r.check === 'kubelet');
  t.not(control?.reason, 'KubeletHealthy', `without nsenter the namespace's kubelet is not what is seen (${control?.status} ${control?.reason})`);
});
