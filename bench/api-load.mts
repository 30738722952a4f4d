/**
 * API load of a fleet (issue 13): N real `nodemedic run` processes at the default 15 s schedule
 * against the fake API server, idle and then with one agent in an episode (its pods stuck
 * terminating: the ladder's restarts, then drain-reboot with guards, Lease, cordon, evictions),
 * counted from the fake's request log per agent, per verb and resource, per minute, and extrapolated
 * to 5,000 nodes. The same step runs the code before the change at the same time against its own
 * fake API server: `$NODEMEDIC_BENCH_BEFORE` (a commit), else the merge base of this branch with
 * `main`, extracted with `git archive` and built with this tree's TypeScript and node_modules. Before
 * and after share the machine and the minutes. The before code runs the same checks where it has them.
 *
 * Run by bench/run.ts under tap's TypeScript loader:
 * `node --import=@tapjs/typescript/import bench/api-load.mts --result F`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { terminatingPod } from '../test/fake-apiserver/pod-states.js';
import { FakeApiServer } from '../test/fake-apiserver/server.js';
import { API_CHECKS_ONLY, costPerAgent, populateNode, startFleetAgent, type AgentCost, type FleetAgent } from '../test/helpers/api-cost.js';
import { CLI } from '../test/helpers/cli.js';
import { fmt, harnessMain, loadAverage, onCleanup, REPO_ROOT, table, type StepOptions, type StepReport } from './lib.js';

const FLEET_NODES = 5000;

/** The code before the change (`$NODEMEDIC_BENCH_BEFORE`, else the merge base with main), built once per commit under /tmp. */
function buildBefore(log: (m: string) => void): { cli: string; commit: string; checks: string } {
  const git = (...a: string[]) => execFileSync('git', ['-C', REPO_ROOT, ...a], { encoding: 'utf8' }).trim();
  const commit = git('rev-parse', process.env.NODEMEDIC_BENCH_BEFORE || git('merge-base', 'HEAD', 'main'));
  if (commit === git('rev-parse', 'HEAD')) {
    throw new Error(`api-load: the code before the change is this commit (${commit.slice(0, 12)}): on main, set NODEMEDIC_BENCH_BEFORE to the commit to compare with`);
  }
  const dir = `/tmp/nodemedic-before-${commit.slice(0, 12)}`;
  const cli = join(dir, 'dist/agent/cli.js');
  if (!existsSync(cli)) {
    log(`api-load: building the code before the change (${commit.slice(0, 12)}) in ${dir}`);
    mkdirSync(dir, { recursive: true });
    execFileSync('sh', ['-c', `git -C '${REPO_ROOT}' archive ${commit} | tar -x -C '${dir}'`]);
    if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
    execFileSync(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { stdio: 'inherit' });
  }
  return { cli, commit, checks: join(dir, 'dist/checks/index.js') };
}

/** `checks:` for a fleet of `cli`: API_CHECKS_ONLY, reduced to the checks that code has (an older tree rejects unknown ones). */
async function checksFor(registry: string): Promise<Record<string, { enabled: false }>> {
  const { CHECK_DEFINITIONS } = (await import(registry)) as { CHECK_DEFINITIONS: { id: string }[] };
  const known = new Set(CHECK_DEFINITIONS.map((d) => d.id));
  return Object.fromEntries(Object.entries(API_CHECKS_ONLY).filter(([id]) => known.has(id)));
}

interface Phase {
  minutes: number;
  /** Per agent, per minute. */
  perAgent: AgentCost[];
}

interface FleetResult {
  label: string;
  idle: Phase;
  episode: Phase & { node: string; unattributedCharged: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function fleet(label: string, cli: string, checks: Record<string, unknown>, n: number, idleMs: number, episodeMs: number, log: (m: string) => void): Promise<FleetResult> {
  const fake = new FakeApiServer();
  await fake.start();
  onCleanup(() => fake.stop());
  const dir = (await import('node:fs')).mkdtempSync('/tmp/nm-api-load-');
  const kubeconfig = fake.writeKubeconfig(dir);
  const nodes = Array.from({ length: n }, (_, i) => `load-${label}-${i}`);
  // Each node's kubelet renews its Lease every 10 s, which kubelet-connection follows.
  const kubelets = nodes.map((node) => populateNode(fake, node, 10));
  onCleanup(() => kubelets.forEach((k) => k.stop()));
  // node 0 acts (enforce, short grace and settle so the episode reaches the drain in minutes); the others only watch.
  const episodeNode = nodes[0]!;
  const agents: FleetAgent[] = await Promise.all(
    nodes.map((node, i) =>
      startFleetAgent(node, kubeconfig, { checks, ...(i === 0 ? { remediation: { mode: 'enforce', grace: '10s', settle: '20s', leaseDuration: '1m', drain: { timeout: '2m' } } } : {}) }, cli),
    ),
  );
  onCleanup(() => Promise.all(agents.map((a) => a.stop())));
  log(`api-load: ${label}: ${n} agents up`);
  // Measure from a minute after the start: the steady state, not the start-up lists.
  await sleep(60_000);
  const idleFrom = Date.now();
  await sleep(idleMs);
  const idleTo = Date.now();
  const idle = costPerAgent(fake.requests, nodes, idleFrom, idleTo);
  log(`api-load: ${label}: idle measured; the episode starts on ${episodeNode}`);
  const now = Date.now();
  for (let i = 0; i < 3; i++) fake.addPod(terminatingPod({ name: `${episodeNode}-app-stuck-${i}`, node: episodeNode, now, scheduledAgoMs: 3600_000, deletedAgoMs: 30 * 60_000, grace: 30 }));
  await sleep(episodeMs);
  const epTo = Date.now();
  const ep = costPerAgent(fake.requests, nodes, now, epTo);
  // Requests that name no node (the guards' fleet-wide lists, the reboot Lease) are the acting agent's: no other acts.
  const acting = ep.agents.find((a) => a.node === episodeNode)!;
  for (const r of ep.unattributed) {
    const verb = r.method === 'GET' ? (r.path.split('/').length > 5 && !r.path.endsWith('/nodes') && !r.path.endsWith('/pods') ? 'get' : 'list') : { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }[r.method] ?? r.method;
    const res = r.path.includes('/leases') ? 'leases' : r.path.endsWith('/nodes') ? 'nodes' : r.path.endsWith('/pods') ? 'pods' : r.path.split('/').filter(Boolean).slice(-1)[0]!;
    const k = `${verb} ${res}`;
    acting.by[k] = (acting.by[k] ?? 0) + 1;
    acting.total++;
    acting.nonWatch++;
  }
  const st = (await (await fetch(`${agents[0]!.url}/status`)).json()) as { episode?: { state?: string } | null };
  log(`api-load: ${label}: episode state ${JSON.stringify(st.episode?.state ?? null)}`);
  await Promise.all(agents.map((a) => a.stop()));
  kubelets.forEach((k) => k.stop());
  await fake.stop();
  const idleMin = (idleTo - idleFrom) / 60_000;
  const epMin = (epTo - now) / 60_000;
  return {
    label,
    idle: { minutes: idleMin, perAgent: idle.agents },
    episode: { minutes: epMin, perAgent: [acting], node: episodeNode, unattributedCharged: ep.unattributed.length },
  };
}

/** Mean per agent per minute of each `verb resource`, over the agents of a phase (idle: the agents that never acted). */
function rates(p: Phase, skipFirst: boolean): Map<string, number> {
  const agents = skipFirst ? p.perAgent.slice(1) : p.perAgent;
  const out = new Map<string, number>();
  for (const a of agents) for (const [k, v] of Object.entries(a.by)) out.set(k, (out.get(k) ?? 0) + v / agents.length / p.minutes);
  return out;
}

const sum = (m: Map<string, number>, f: (k: string) => boolean = () => true) => [...m].filter(([k]) => f(k)).reduce((s, [, v]) => s + v, 0);

async function apiLoad(opts: StepOptions): Promise<StepReport> {
  const n = opts.quick ? 3 : 5;
  const idleMs = opts.quick ? 90_000 : 4 * 60_000;
  const episodeMs = opts.quick ? 90_000 : 3 * 60_000;
  const before = buildBefore(opts.log);
  // Both fleets at once: the same machine, the same minutes.
  const [b, a] = await Promise.all([
    fleet('before', before.cli, await checksFor(before.checks), n, idleMs, episodeMs, opts.log),
    fleet('after', CLI, API_CHECKS_ONLY, n, idleMs, episodeMs, opts.log),
  ]);
  const bi = rates(b.idle, true);
  const ai = rates(a.idle, true);
  const be = rates(b.episode, false);
  const ae = rates(a.episode, false);
  const keys = [...new Set([...bi.keys(), ...ai.keys(), ...be.keys(), ...ae.keys()])].sort();
  const cell = (m: Map<string, number>, k: string) => (m.has(k) ? fmt(m.get(k)!) : '0');
  const rows = keys.map((k) => [k, cell(bi, k), cell(ai, k), cell(be, k), cell(ae, k)]);
  const notWatch = (k: string) => !k.startsWith('watch ');
  rows.push(['**all but watches**', fmt(sum(bi, notWatch)), fmt(sum(ai, notWatch)), fmt(sum(be, notWatch)), fmt(sum(ae, notWatch))]);
  rows.push(['**Node status writes**', fmt(sum(bi, (k) => k === 'patch nodes/status')), fmt(sum(ai, (k) => k === 'patch nodes/status')), fmt(sum(be, (k) => k === 'patch nodes/status')), fmt(sum(ae, (k) => k === 'patch nodes/status'))]);
  const perS = (perMin: number) => fmt((perMin * FLEET_NODES) / 60);
  const idleB = sum(bi, notWatch);
  const idleA = sum(ai, notWatch);
  const writesB = sum(bi, (k) => k === 'patch nodes/status');
  const writesA = sum(ai, (k) => k === 'patch nodes/status');
  const watchesHeld = 4;
  const body = [
    `Method: two fleets of ${n} real \`nodemedic run\` processes (default 15 s schedule, the checks that call the API on at their ` +
      `defaults: node-ready, stuck-pods and kubelet-connection; the checks that need this machine's kubelet and runtimes off, ` +
      `remediation dry-run) each against its own fake API server, ` +
      `run at the same time: **before** = the code at \`${before.commit.slice(0, 12)}\` (\`$NODEMEDIC_BENCH_BEFORE\` or the merge base with main, \`git archive\` + tsc into ` +
      `/tmp), **after** = this tree. Each node has 10 running pods and a kubelet renewing its Lease every 10 s. Idle: ${fmt(b.idle.minutes)} / ${fmt(a.idle.minutes)} minutes from a minute ` +
      `after start, over the ${n - 1} agents that never act. Episode: agent 0 (enforce, grace 10s, settle 20s) gets 3 pods stuck terminating; ` +
      `its requests over the next ${fmt(b.episode.minutes)} / ${fmt(a.episode.minutes)} minutes (restart steps, then drain-reboot: guards, ` +
      `Lease, cordon, evictions, reboot request), including the ${b.episode.unattributedCharged} / ${a.episode.unattributedCharged} requests ` +
      `naming no node (fleet-wide lists, the Lease), which only it makes. Counted from each fake's request log.`,
    '',
    table(['verb resource, requests per agent per minute', 'before, idle', 'after, idle', 'before, episode', 'after, episode'], rows),
    '',
    `At ${FLEET_NODES.toLocaleString('en-US')} idle nodes: **${perS(idleB)} requests/s before, ${perS(idleA)} after** besides watches ` +
      `(${idleA > 0 ? fmt(idleB / idleA) : '∞'}x fewer), of which Node status writes ${perS(writesB)}/s before and ${perS(writesA)}/s after. ` +
      `After the change each agent holds ${watchesHeld} watches (its Node, its pods, pods nominated for it, its Lease in kube-node-lease): ` +
      `${(watchesHeld * FLEET_NODES).toLocaleString('en-US')} open watches at ${FLEET_NODES.toLocaleString('en-US')} nodes, each re-opened every ` +
      `5-10 minutes (the watch rows above). The idle window is ${fmt(a.idle.minutes)} minutes, so a 5-minute heartbeat shows as ` +
      `at most one write per agent in it.`,
    '',
    `Goal (issue 13): at idle at most 1 request per agent per minute besides the watches: after ${fmt(idleA)}, ${idleA <= 1 ? 'met' : 'not met'}. ` +
      `Load average after: ${loadAverage()}.`,
  ].join('\n');
  return {
    id: 'api-load',
    title: 'API load per agent, idle and during an episode, against the fake API server',
    measured: true,
    body,
    goals: [{ goal: 'at idle at most 1 request per agent per minute besides the watches', measured: `${fmt(idleA)} per agent per minute`, met: idleA <= 1, margin: idleA <= 1 ? `${fmt(1 - idleA)} under` : `over by ${fmt(idleA - 1)}` }],
    data: { before: b, after: a, commitBefore: before.commit },
  };
}

await harnessMain({ 'api-load': apiLoad });
