/**
 * Adding a check is its file, its test and one line in checks/index.ts (issue 12): everything else
 * that used to be edited by hand for each check is derived from, or held to, what the check declares
 * (checks/types.ts CheckDefinition). Each test here names the check and the file that disagree.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { parseConfigText, resolveConfig } from '../agent/config.js';
import { CHECK_DEFINITIONS, neverTriggers } from '../checks/index.js';
import { nodeConditionsOf, type CheckDefinition } from '../checks/types.js';
import { NEVER_TRIGGERS, remediationDefaults } from '../remediations/config.js';
import { conditionSources } from '../remediations/kubernetes/conditions.js';
import { readmeChecksTableProblems } from './helpers/readme-checks.js';

const read = (rel: string): string => readFileSync(new URL(`../${rel}`, import.meta.url), 'utf8');

t.test("README's checks table lists exactly the registered checks, in order, with their reasons", async (t) => {
  t.same(readmeChecksTableProblems(read('README.md'), CHECK_DEFINITIONS), []);
});

t.test('the README check sees what it is for', async (t) => {
  const readme = read('README.md');
  const [first, second, ...rest] = CHECK_DEFINITIONS;
  t.match(readmeChecksTableProblems(readme, [second!, first!, ...rest]).join('\n'), /order/, 'a reordered registry');
  const renamed = { ...first!, reasons: [...(first!.reasons ?? []), 'SomethingNew'] };
  t.match(readmeChecksTableProblems(readme, [renamed, second!, ...rest]), [/SomethingNew/], 'a reason the README does not list');
  t.match(readmeChecksTableProblems(readme, [second!, ...rest]), [new RegExp(`${first!.id}.*not registered`)], 'a row for no check');
});

t.test('a restart cures exactly the checks that may trigger the ladder', async (t) => {
  t.same([...NEVER_TRIGGERS], neverTriggers(), 'NEVER_TRIGGERS is what the checks say');
  t.same(neverTriggers(), ['disk', 'load', 'resources', 'kernel', 'systemd-version', 'network', 'overcommit'], "today: no restart cures a full disk, load, exhausted kernel tables, a kernel fault, an old systemd, the node's network path or an oversold node");
  for (const trigger of remediationDefaults.triggers) {
    t.ok(CHECK_DEFINITIONS.find((d) => d.id === trigger)?.restartCures, `default trigger ${trigger} is a check a restart can cure`);
  }
  t.throws(() => resolveConfig({ remediation: { triggers: ['load'] } }), /cannot be a trigger/, 'and config validation refuses the others');
});

t.test('Node conditions come from the checks that declare them', async (t) => {
  t.same(
    conditionSources().map((c) => [c.type, c.healthyReason, c.checks]),
    [
      ['KubeletUnhealthy', 'KubeletIsHealthy', ['kubelet']],
      ['ContainerRuntimeUnhealthy', 'ContainerRuntimeIsHealthy', ['docker', 'containerd']],
      ['PLEGUnhealthy', 'PLEGIsHealthy', ['pleg']],
      ['KernelDeadlock', 'KernelHasNoDeadlock', ['kernel']],
      ['ReadonlyFilesystem', 'FilesystemIsNotReadOnly', ['kernel']],
      ['SystemdUnresponsive', 'SystemdIsResponsive', ['systemd']],
    ],
  );
  const types = new Map<string, string>();
  for (const d of CHECK_DEFINITIONS) {
    for (const c of nodeConditionsOf(d)) {
      const seen = types.get(c.type);
      if (seen !== undefined) t.equal(c.healthyReason, seen, `${d.id} agrees on ${c.type}'s healthy reason`);
      types.set(c.type, c.healthyReason);
    }
  }
});

t.test('the production config runs every check with its declared defaults', async (t) => {
  const prod = parseConfigText(read('systemd-units/config.production.yaml'), 'systemd-units/config.production.yaml');
  for (const d of CHECK_DEFINITIONS) {
    // A check the file does not mention runs with its defaults: a new check needs no edit there.
    t.same(prod.checks[d.id], d.defaults, `checks.${d.id} in config.production.yaml is the check's defaults`);
    t.equal(prod.checks[d.id]?.enabled, true, `${d.id} is on in production`);
  }
  t.equal(prod.remediation.mode, 'enforce');
});

/** The DaemonSet's ConfigMap config and its pod spec. */
function daemonSet(): { config: ReturnType<typeof resolveConfig>; hostPID: boolean; mounts: string[] } {
  const docs = parseAllDocuments(read('deploy/daemonset.yaml')).map((d) => d.toJS() as Record<string, any>);
  const cm = docs.find((d) => d?.kind === 'ConfigMap');
  const ds = docs.find((d) => d?.kind === 'DaemonSet');
  if (!cm || !ds) throw new Error('deploy/daemonset.yaml: no ConfigMap or no DaemonSet');
  const text = Object.values(cm.data as Record<string, string>)[0]!;
  const pod = ds.spec.template.spec;
  const hostVolumes = new Set((pod.volumes as any[]).filter((v) => v.hostPath).map((v) => v.name as string));
  const mounts = (pod.containers[0].volumeMounts as any[]).filter((m) => hostVolumes.has(m.name)).map((m) => m.mountPath as string);
  return { config: parseConfigText(text, 'deploy/daemonset.yaml'), hostPID: pod.hostPID === true, mounts };
}

/** Whether the pod can open a node path as written in the config. */
function reachable(p: string, ds: { hostPID: boolean; mounts: string[] }): boolean {
  if (p.startsWith('/proc/1/root/')) return ds.hostPID;
  return ds.mounts.some((m) => p === m || p.startsWith(m.endsWith('/') ? m : `${m}/`));
}

function unreachableHostPaths(defs: readonly CheckDefinition<any>[], ds = daemonSet()): string[] {
  const out: string[] = [];
  for (const d of defs) {
    for (const key of d.hostPathOptions ?? []) {
      const v = (ds.config.checks[d.id] as Record<string, unknown> | undefined)?.[key];
      for (const p of (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === 'string' && x !== '')) {
        if (!reachable(p, ds)) out.push(`checks.${d.id}.${key}: ${p} is not reachable in the DaemonSet's pod (neither /proc/1/root/... nor a hostPath mount)`);
      }
    }
  }
  return out;
}

t.test("the DaemonSet reaches every node path the checks' options name", async (t) => {
  const ds = daemonSet();
  t.ok(ds.hostPID, 'hostPID, so /proc/1/root is the node');
  t.ok(CHECK_DEFINITIONS.some((d) => d.hostPathOptions?.length), 'some check declares host paths (or this test checks nothing)');
  t.same(unreachableHostPaths(CHECK_DEFINITIONS, ds), []);
  // A check whose path option the DaemonSet leaves at a container path is caught.
  const disk = CHECK_DEFINITIONS.find((d) => d.id === 'disk')!;
  const bare = { ...ds, config: { ...ds.config, checks: { ...ds.config.checks, disk: { ...ds.config.checks.disk!, paths: ['/var/lib/kubelet'] } } } };
  t.same(unreachableHostPaths([disk], bare), ['checks.disk.paths: /var/lib/kubelet is not reachable in the DaemonSet\'s pod (neither /proc/1/root/... nor a hostPath mount)']);
});

t.test('every check declares its reasons', async (t) => {
  for (const d of CHECK_DEFINITIONS) t.ok(d.reasons?.length, `${d.id} lists the reasons it returns`);
});
