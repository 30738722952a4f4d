/**
 * systemd-units/kubernetes: the RBAC manifest is the least that works (every request of the
 * cluster-view checks' lists and watches, a full drain-reboot, recovery and the operator operations
 * is allowed by it, and every rule is used), and
 * make-kubeconfig.sh produces a kubeconfig that works with the real client against the fake.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { pino } from 'pino';
import { nodeReadyCheck } from '../checks/node-ready.js';
import { stuckPodsCheck } from '../checks/stuck-pods.js';
import { connectKubernetes, lazyKubeAccess } from '../platform/kube-client.js';
import { RealHost } from '../platform/host.js';
import { creatingPod } from './fake-apiserver/pod-states.js';
import { cordon, uncordon } from '../remediations/kubernetes/cordon.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { agentlet, result, startCluster, until } from './fake-apiserver/harness.js';
import type { RequestRecord } from './fake-apiserver/server.js';
import { requireComponent } from './helpers/require.js';
import { kubeletConnectionCheck } from '../checks/kubelet-connection.js';
import { ManualClock } from '../platform/clock.js';
import { NodeLeaseRenewer } from './fake-apiserver/node-lease.js';

const DIR = fileURLToPath(new URL('../systemd-units/kubernetes/', import.meta.url));
const SELF = 'worker-1';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
interface Grant {
  /** undefined: all namespaces (ClusterRole). */
  namespace: string | undefined;
  rules: Rule[];
}

/** The rules bound to ServiceAccount kube-system/nodemedic in the manifest. */
function grants(): Grant[] {
  const docs = parseAllDocuments(readFileSync(join(DIR, 'rbac.yaml'), 'utf8')).map((d) => d.toJS() as any);
  const sa = docs.find((d) => d.kind === 'ServiceAccount');
  const bound = (d: any) => d.subjects?.some((s: any) => s.kind === 'ServiceAccount' && s.name === sa.metadata.name && s.namespace === sa.metadata.namespace);
  const out: Grant[] = [];
  for (const b of docs.filter((d) => (d.kind === 'ClusterRoleBinding' || d.kind === 'RoleBinding') && bound(d))) {
    const role = docs.find((d) => d.kind === b.roleRef.kind && d.metadata.name === b.roleRef.name && (d.kind === 'ClusterRole' || d.metadata.namespace === b.metadata.namespace));
    if (!role) throw new Error(`binding ${b.metadata.name} names a missing ${b.roleRef.kind}`);
    out.push({ namespace: b.kind === 'RoleBinding' ? b.metadata.namespace : undefined, rules: role.rules });
  }
  return out;
}

/** A request as the RBAC authorizer sees it (k8s.io/apiserver request info). */
function attributes(r: RequestRecord): { verb: string; group: string; resource: string; namespace: string | undefined } {
  const seg = r.path.split('/').filter(Boolean);
  const [group, rest] = seg[0] === 'api' ? ['', seg.slice(2)] : [seg[1]!, seg.slice(3)];
  let namespace: string | undefined;
  let parts = rest;
  if (parts[0] === 'namespaces' && parts.length > 2) {
    namespace = parts[1];
    parts = parts.slice(2);
  }
  const resource = parts.length >= 3 ? `${parts[0]}/${parts[2]}` : parts[0]!;
  const named = parts.length >= 2;
  const watch = r.method === 'GET' && ['true', '1'].includes(r.query.get('watch') ?? '');
  const verb = watch ? 'watch' : ({ GET: named ? 'get' : 'list', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }[r.method] ?? r.method);
  return { verb, group, resource, namespace };
}

t.test('the RBAC manifest allows every request nodemedic makes, and no rule is unused', async (t) => {
  const c = await startCluster(t, { msPerGraceSecond: 10 });
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  c.fake.addPod(makePod({ name: 'web', node: SELF }));
  c.fake.addPod(makePod({ name: 'db', node: SELF, labels: { app: 'db' } }));
  c.fake.addPod(makePod({ name: 'done', node: SELF, kind: 'Job', phase: 'Failed' }));
  c.fake.addPod(makePod({ name: 'ds', node: SELF, kind: 'DaemonSet' }));
  c.fake.pdbs = [{ namespace: 'default', name: 'db', matchLabels: { app: 'db' }, blockedUntil: Date.now() + 300 }];
  // The cluster-view checks (on worker-2, whose pod has not started for an hour, so its events are read).
  c.fake.addPod(creatingPod({ name: 'stuck', node: 'worker-2', now: Date.now(), scheduledAgoMs: 3600_000 }));
  const kube = lazyKubeAccess(c.kubeconfig);
  const deps = { host: new RealHost(), logger: pino({ level: 'silent' }), nodeName: 'worker-2', kube };
  const views = [nodeReadyCheck.create(nodeReadyCheck.defaults, deps), stuckPodsCheck.create(stuckPodsCheck.defaults, deps)];
  for (const v of views) t.notMatch(await v.run(new AbortController().signal), { status: 'unknown' }, `${v.id} ran`);
  await Promise.all(views.map((v) => v.stop?.()));
  // The agent: conditions, a drain-reboot, the boot, recovery.
  const a = agentlet(c, SELF);
  await a.controller.afterSweep([result('kubelet', 'problem', 'KubeletDown')]);
  t.equal((await a.controller.run({ episodeId: 'e', reason: 'rbac', dryRun: false })).result, 'success');
  await a.controller.stop();
  const b = agentlet(c, SELF);
  b.bootId.value = 'next';
  t.teardown(() => b.controller.stop());
  await b.controller.onStartup();
  await b.controller.afterSweep([result('kubelet', 'ok')]);
  await until(() => b.ends.length === 1, 5000);
  // The operator commands' calls beyond the agent's: cordon/uncordon another node.
  await cordon(c.access.api, 'worker-2', { by: 'operator/x', token: 't', reason: 'r', at: new Date().toISOString() });
  await uncordon(c.access.api, 'worker-2', undefined);
  // The kubelet-connection check: this node's heartbeat Lease and its Node, listed and watched; then,
  // the lease not renewed for staleAfter, both read directly (healthz on a closed port: unknown).
  new NodeLeaseRenewer(c.fake, SELF).renew();
  const clock = new ManualClock(Date.now());
  const conn = kubeletConnectionCheck.create(
    { ...kubeletConnectionCheck.defaults, healthzUrl: 'http://127.0.0.1:9/healthz', timeout: '2s' },
    { host: new RealHost({ clock }), logger: pino({ level: 'silent' }), nodeName: SELF, kube: lazyKubeAccess(c.kubeconfig) },
  );
  t.equal((await conn.run(new AbortController().signal)).reason, 'KubeletConnected');
  clock.advance(41_000);
  t.match(await conn.run(new AbortController().signal), { status: 'unknown', reason: 'KubeletNotHealthy', evidence: { seenBy: 'read' } });
  await conn.stop?.();

  const g = grants();
  const used = new Set<string>();
  for (const r of c.fake.requests) {
    const at = attributes(r);
    const rule = g.flatMap((x) => (x.namespace === undefined || x.namespace === at.namespace ? x.rules.map((rule) => ({ rule, ns: x.namespace })) : [])).find(
      ({ rule }) => rule.apiGroups.includes(at.group) && rule.resources.includes(at.resource) && rule.verbs.includes(at.verb),
    );
    t.ok(rule, `${r.method} ${r.path} (${at.verb} ${at.group || 'core'}/${at.resource}${at.namespace ? ` in ${at.namespace}` : ''}) is allowed`);
    if (rule) used.add(`${rule.ns ?? '*'}:${at.group}/${at.resource}:${at.verb}`);
  }
  for (const x of g) {
    for (const rule of x.rules) for (const res of rule.resources) for (const verb of rule.verbs) {
      t.ok(used.has(`${x.namespace ?? '*'}:${rule.apiGroups[0]}/${res}:${verb}`), `rule ${rule.apiGroups[0] || 'core'}/${res} ${verb}${x.namespace ? ` in ${x.namespace}` : ''} is needed`);
    }
  }
});

t.test('make-kubeconfig.sh: a working kubeconfig from the ServiceAccount token and the current context', async (t) => {
  if (!(await requireComponent(t, 'kubectl', ['kubectl', 'base64'], false))) return;
  // Anonymous for kubectl (no bearer token over plain HTTP); the generated kubeconfig's token is still checked.
  const c = await startCluster(t, { anonymous: true });
  c.fake.addNode(makeNode({ name: SELF }));
  const saToken = 'sa-token-of-nodemedic';
  c.fake.secrets.set('kube-system/nodemedic-token', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'nodemedic-token', namespace: 'kube-system' },
    type: 'kubernetes.io/service-account-token',
    data: { token: Buffer.from(saToken).toString('base64'), 'ca.crt': Buffer.from('not used over http').toString('base64') },
  });
  const out = join(c.dir, 'nodemedic.kubeconfig');
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile(join(DIR, 'make-kubeconfig.sh'), ['--output', out], { env: { ...process.env, KUBECONFIG: c.kubeconfig }, timeout: 60_000 }, (e, _o, stderr) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? null) : 0, stderr }),
    );
  });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /wrote .*nodemedic.kubeconfig for ServiceAccount kube-system\/nodemedic/);
  const { statSync } = await import('node:fs');
  t.equal(statSync(out).mode & 0o777, 0o600, 'written 0600');
  // The fake now insists on the ServiceAccount's token.
  c.fake.token = saToken;
  const access = await connectKubernetes(out);
  t.ok(access);
  t.equal((await access!.api.getNode(SELF)).metadata?.name, SELF, 'the real client reaches the API server with it');
  const bad = await new Promise<number | null>((resolve) => {
    execFile(join(DIR, 'make-kubeconfig.sh'), ['--secret', 'missing'], { env: { ...process.env, KUBECONFIG: c.kubeconfig }, timeout: 60_000 }, (e) => resolve(e ? ((e as { code?: number }).code ?? null) : 0));
  });
  t.equal(bad, 1, 'a missing secret is an error');
});
