/**
 * Drain of 110 pods against the fake API server (test/fake-apiserver/), through the real
 * @kubernetes/client-node and a kubeconfig, by the agent's own drain-reboot controller
 * (remediations/kubernetes/rebooter.ts, production timings: kubectl's 1 s pod poll), against the
 * longest grace period among the pods and against real `kubectl drain` on an identical cluster in
 * the same run. The reboot at the end goes to a recording host: nothing is rebooted.
 *
 * Run by bench/run.ts under tap's TypeScript loader:
 * `node --import=@tapjs/typescript/import bench/drain.mts --result F`.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { makeNode, makePod } from '../test/fake-apiserver/fixtures.js';
import { agentlet, startCluster, type Cluster } from '../test/fake-apiserver/harness.js';
import { which } from '../test/helpers/require.js';
import { fmt, harnessMain, loadAverage, median, onCleanup, runs, table, type StepOptions, type StepReport } from './lib.js';

const SELF = 'worker-1';
const PODS = 110;
/** Grace periods of the evicted pods, cycled; the longest bounds any drain from below. */
const GRACE_SECONDS = [0, 1, 2, 3, 5, 10];
const LONGEST_GRACE_MS = Math.max(...GRACE_SECONDS) * 1000;

interface Population {
  keep: number;
  deleted: number;
  evicted: number;
}

/** 110 pods on worker-1: DaemonSet and mirror pods (left), finished Jobs (deleted), the rest evicted. */
function populate(c: Cluster): Population {
  for (const n of [SELF, 'worker-2', 'worker-3']) c.fake.addNode(makeNode({ name: n, allocatable: { cpu: '64', memory: '256Gi', pods: '250' } }));
  const req = { cpu: '100m', memory: '128Mi' };
  let n = 0;
  for (const ds of ['kube-proxy', 'node-exporter', 'fluent-bit', 'calico-node', 'csi-node', 'npd']) {
    c.fake.addPod(makePod({ name: `${ds}-x7k2p`, namespace: 'kube-system', node: SELF, kind: 'DaemonSet', requests: req }));
    n++;
  }
  for (const m of ['etcd', 'haproxy']) {
    c.fake.addPod(makePod({ name: `${m}-${SELF}`, namespace: 'kube-system', node: SELF, kind: 'mirror', requests: req }));
    n++;
  }
  const keep = n;
  for (const j of ['backup-28511', 'backup-28512']) {
    c.fake.addPod(makePod({ name: j, node: SELF, kind: 'Job', phase: 'Succeeded', requests: req }));
    n++;
  }
  const deleted = n - keep;
  for (let i = 0; n < PODS; i++, n++) {
    c.fake.addPod(
      makePod({
        name: `web-${String(i).padStart(3, '0')}`,
        namespace: ['default', 'shop', 'search'][i % 3]!,
        node: SELF,
        requests: req,
        terminationGracePeriodSeconds: GRACE_SECONDS[i % GRACE_SECONDS.length]!,
      }),
    );
  }
  for (let i = 0; i < 20; i++) c.fake.addPod(makePod({ name: `other-${i}`, node: i % 2 ? 'worker-2' : 'worker-3', requests: { cpu: '500m', memory: '1Gi' } }));
  return { keep, deleted, evicted: PODS - keep - deleted };
}

/** A fresh fake API server (real grace periods: 1 s per grace second) with the 110 pods. */
async function cluster(anonymous: boolean): Promise<{ c: Cluster; pop: Population; dispose: () => Promise<void> }> {
  const disposers: (() => unknown)[] = [];
  const c = await startCluster({ teardown: (fn) => void disposers.push(fn) }, { msPerGraceSecond: 1000, anonymous });
  const dispose = async () => {
    for (const fn of disposers.reverse()) await fn();
  };
  onCleanup(dispose);
  return { c, pop: populate(c), dispose };
}

function leftOn(c: Cluster): number {
  return c.fake.podsOn(SELF).length;
}

/** The agent's drain-reboot (lease, cordon, drain, reboot request to a recording host). */
async function agentDrain(): Promise<{ wallMs: number; drainMs: number; ok: boolean; detail: string }> {
  const { c, pop, dispose } = await cluster(false);
  try {
    // Production timings: undefined overrides the harness's shortened test tuning.
    const a = agentlet(c, SELF, { drain: { deleteEmptyDirData: true, force: true, timeout: '120s' } }, { evictionRetryMs: undefined, podPollMs: undefined, recoveryPollMs: undefined });
    try {
      const t0 = performance.now();
      const r = await a.controller.run({ episodeId: `bench-${Date.now()}`, reason: 'benchmark', dryRun: false });
      const wallMs = performance.now() - t0;
      const left = leftOn(c);
      const ok = r.result === 'success' && left === pop.keep && a.host.reboots === 1;
      return { wallMs, drainMs: r.drain?.durationMs ?? NaN, ok, detail: `${r.result}: ${r.drain?.summary ?? r.detail}; ${left} pods left` };
    } finally {
      await a.controller.stop();
    }
  } finally {
    await dispose();
    rmSync(c.dir, { recursive: true, force: true });
  }
}

/** Real `kubectl drain` of the same population (client-go sends no token over plain HTTP: anonymous fake). */
async function kubectlDrain(): Promise<{ wallMs: number; ok: boolean; detail: string }> {
  const { c, pop, dispose } = await cluster(true);
  try {
    const t0 = performance.now();
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      execFile(
        'kubectl',
        ['--kubeconfig', c.kubeconfig, 'drain', SELF, '--ignore-daemonsets', '--delete-emptydir-data', '--force', '--timeout=120s'],
        { timeout: 150_000, encoding: 'utf8', env: { ...process.env, KUBECONFIG: '' }, maxBuffer: 16 * 1024 * 1024 },
        (e, out, err) => resolve({ code: e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : null) : 0, out: `${out}${err}` }),
      );
    });
    const wallMs = performance.now() - t0;
    const left = leftOn(c);
    return { wallMs, ok: r.code === 0 && left === pop.keep, detail: `exit ${r.code}; ${left} pods left${r.code === 0 ? '' : `: ${r.out.slice(-300)}`}` };
  } finally {
    await dispose();
  }
}

async function drain(opts: StepOptions): Promise<StepReport> {
  const n = opts.quick ? 1 : 3;
  const kubectl = !!which('kubectl');
  const agent: number[] = [];
  const agentDrainOnly: number[] = [];
  const kube: number[] = [];
  const notes: string[] = [];
  let pop: Population | undefined;
  {
    const { c, pop: p, dispose } = await cluster(false);
    pop = p;
    await dispose();
    rmSync(c.dir, { recursive: true, force: true });
  }
  for (let i = 0; i < n; i++) {
    const a = await agentDrain();
    if (!a.ok) notes.push(`agent run ${i + 1}: ${a.detail}`);
    agent.push(a.wallMs);
    agentDrainOnly.push(a.drainMs);
    opts.log(`drain: agent ${fmt(a.wallMs)} ms (${a.detail})`);
    if (kubectl) {
      const k = await kubectlDrain();
      if (!k.ok) notes.push(`kubectl run ${i + 1}: ${k.detail}`);
      kube.push(k.wallMs);
      opts.log(`drain: kubectl ${fmt(k.wallMs)} ms (${k.detail})`);
    }
  }
  const rows = [
    ['nodemedic drain-reboot (lease, cordon, drain, reboot request)', fmt(median(agent)), fmt(median(agent) / LONGEST_GRACE_MS), fmt(median(agent) - LONGEST_GRACE_MS), runs(agent)],
    ['  of which the drain (DrainOutcome.durationMs)', fmt(median(agentDrainOnly)), fmt(median(agentDrainOnly) / LONGEST_GRACE_MS), fmt(median(agentDrainOnly) - LONGEST_GRACE_MS), runs(agentDrainOnly)],
  ];
  if (kubectl) rows.push(['`kubectl drain` (baseline, same cluster)', fmt(median(kube)), fmt(median(kube) / LONGEST_GRACE_MS), fmt(median(kube) - LONGEST_GRACE_MS), runs(kube)]);
  const body = [
    `Method: a fresh fake API server (test/fake-apiserver/, real grace periods: a pod evicted with a grace period of g s goes away ` +
      `g s later) per run, with ${PODS} pods on ${SELF}: ${pop!.keep} DaemonSet/mirror pods (left), ${pop!.deleted} finished Jobs (deleted) ` +
      `and ${pop!.evicted} ReplicaSet pods with grace periods cycling through ${GRACE_SECONDS.join(', ')} s (evicted), no ` +
      'PodDisruptionBudget. The agent side is `DrainRebootController.run` as the agent builds it (test/fake-apiserver/harness.ts ' +
      '`agentlet`, with production timings: 1 s pod poll, 5 s 429 retry, 16 requests in flight) through the real ' +
      '@kubernetes/client-node; its `systemctl reboot` goes to a recording host. The baseline is real `kubectl drain ' +
      `--ignore-daemonsets --delete-emptydir-data --force\` (${kubectl ? 'installed' : 'not installed: no baseline'}) on an identical ` +
      `cluster. Median of ${n} run(s) each, alternating. The longest grace period is ${LONGEST_GRACE_MS / 1000} s: no drain can be shorter.`,
    '',
    table(['drain of 110 pods', 'wall ms (median)', '/ longest grace', 'over the longest grace, ms', 'runs, ms'], rows),
    '',
    (kubectl ? `Ratio nodemedic / kubectl: ${fmt(median(agent) / median(kube))}x. ` : '') +
      'Both wait for each pod to be gone by polling it once a second, as kubectl does, so up to 1 s over the longest grace period ' +
      'is that polling; the rest is the API round trips (kubectl adds its own start-up and client-side rate limit).',
    ...(notes.length ? ['', `**Runs that did not end as expected:** ${notes.join('; ')}.`] : []),
    '',
    `No goal is set for the drain. Load average after: ${loadAverage()}.`,
  ].join('\n');
  return {
    id: 'drain',
    title: 'Drain of 110 pods against the fake API server',
    measured: true,
    body,
    goals: [],
    data: { longestGraceMs: LONGEST_GRACE_MS, agentMs: agent, agentDrainMs: agentDrainOnly, kubectlMs: kube, notes },
  };
}

await harnessMain({ drain });
