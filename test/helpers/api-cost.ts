/**
 * What the API-cost test and the api-load benchmark share: a fleet of real `nodemedic run` processes
 * (the built CLI, or another build's, for the "before" figures) against one fake API server, and the
 * fake's request log cut per agent, per verb and resource. An agent's requests are recognised by its
 * node name in the path or the field selector; the test checks that no request is left unattributed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { CHECK_DEFINITIONS } from '../../checks/index.js';
import type { FakeApiServer, RequestRecord } from '../fake-apiserver/server.js';
import { NodeLeaseRenewer } from '../fake-apiserver/node-lease.js';
import { nodeWithReady, runningPod } from '../fake-apiserver/pod-states.js';
import { CLI } from './cli.js';
import { freePort } from './agent.js';

export interface FleetAgent {
  node: string;
  url: string;
  child: ChildProcess;
  logs(): string;
  stop(): Promise<void>;
}

/** The checks of the default config that ask the API server anything: what this fleet measures. */
export const API_CHECKS = ['node-ready', 'stuck-pods', 'kubelet-connection'] as const;

/**
 * Only the checks that call the API (`API_CHECKS`, at their defaults) run; every other registered
 * check is off: they need this machine's kubelet, runtimes, systemd or journal, and cost the API nothing.
 */
export const API_CHECKS_ONLY: Record<string, { enabled: false }> = Object.fromEntries(
  CHECK_DEFINITIONS.filter((d) => !(API_CHECKS as readonly string[]).includes(d.id)).map((d) => [d.id, { enabled: false as const }]),
);

/**
 * A Ready node with `pods` running pods and its kubelet renewing the node's Lease every 10 s (what
 * kubelet does), as a cluster shows a healthy node. The renewer is returned to be stopped.
 */
export function populateNode(fake: FakeApiServer, node: string, pods = 10): NodeLeaseRenewer {
  const now = Date.now();
  fake.addNode(nodeWithReady(node, { now, status: 'True', sinceAgoMs: 3 * 3600_000 }));
  for (let i = 0; i < pods; i++) fake.addPod(runningPod({ name: `${node}-app-${i}`, node, now, scheduledAgoMs: 3600_000 }));
  const kubelet = new NodeLeaseRenewer(fake, node, 10_000);
  kubelet.start();
  return kubelet;
}

/**
 * Starts `nodemedic run` for `node` against the fake (kubeconfig `kubeconfig`), at the default schedule
 * unless `config` says otherwise. `cli` is the built CLI to run (default this tree's).
 */
export async function startFleetAgent(node: string, kubeconfig: string, config: Record<string, unknown> = {}, cli = CLI): Promise<FleetAgent> {
  const dir = mkdtempSync(join(tmpdir(), `nodemedic-fleet-${node}-`));
  const port = await freePort();
  const full = {
    nodeName: node,
    http: { listen: `127.0.0.1:${port}` },
    stateDir: join(dir, 'state'),
    log: { level: 'warn' },
    hostCommandPrefix: ['/bin/sh', '-c', 'printf "%s\\n" "$*" >> "$0"', join(dir, 'commands.log')],
    kubernetes: { kubeconfig },
    checks: API_CHECKS_ONLY,
    remediation: { mode: 'dry-run' },
    ...config,
  };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(full));
  const child = spawn(process.execPath, [cli, 'run', '--config', configPath], { env: { ...process.env, NODEMEDIC_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-200_000)));
  child.stderr!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-200_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  // Generous: several agents load client-node at once on a shared 2-core machine.
  const deadline = Date.now() + 300_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`agent ${node} exited with ${child.exitCode}:\n${out}`);
    try {
      const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`agent ${node} did not become healthy:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    node,
    url,
    child,
    logs: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `watch`, `get`, `list`, `patch`, ... as the RBAC authorizer names verbs. */
export function verbOf(r: RequestRecord): string {
  if (r.method === 'GET' && ['true', '1'].includes(r.query.get('watch') ?? '')) return 'watch';
  const seg = r.path.split('/').filter(Boolean);
  const rest = seg[0] === 'api' ? seg.slice(2) : seg.slice(3);
  const named = (rest[0] === 'namespaces' ? rest.length - 2 : rest.length) >= 2;
  return { GET: named ? 'get' : 'list', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }[r.method] ?? r.method.toLowerCase();
}

/** `nodes`, `nodes/status`, `pods`, `pods/eviction`, `leases`, `events`. */
export function resourceOf(r: RequestRecord): string {
  const seg = r.path.split('/').filter(Boolean);
  let rest = seg[0] === 'api' ? seg.slice(2) : seg.slice(3);
  if (rest[0] === 'namespaces' && rest.length > 2) rest = rest.slice(2);
  return rest.length >= 3 ? `${rest[0]}/${rest[2]}` : (rest[0] ?? r.path);
}

/** Which of `nodes` a request was made for: its node name in the path or a field selector, else undefined. */
export function agentOf(r: RequestRecord, nodes: readonly string[]): string | undefined {
  const sel = r.query.get('fieldSelector') ?? '';
  for (const n of nodes) {
    const segs = r.path.split('/');
    // The node itself, or one of its pods (populateNode names them `<node>-app-<i>`).
    if (segs.includes(n) || segs.some((s) => s.startsWith(`${n}-app-`))) return n;
    if (sel.split(',').some((t) => t.endsWith(`=${n}`))) return n;
  }
  if (r.method === 'POST' && r.path.endsWith('/events')) {
    const body = r.body as { involvedObject?: { name?: string }; source?: { host?: string } } | undefined;
    const n = body?.source?.host ?? body?.involvedObject?.name;
    if (n && nodes.includes(n)) return n;
  }
  return undefined;
}

export interface AgentCost {
  node: string;
  total: number;
  watches: number;
  /** Everything but watch requests (lists, gets, writes). */
  nonWatch: number;
  /** PATCH nodes/{n}/status. */
  statusWrites: number;
  /** `verb resource` → count. */
  by: Record<string, number>;
}

/** The request log between `from` and `to` (ms since the epoch), per agent. */
export function costPerAgent(requests: readonly RequestRecord[], nodes: readonly string[], from = 0, to = Infinity): { agents: AgentCost[]; unattributed: RequestRecord[] } {
  const agents = new Map<string, AgentCost>(nodes.map((n) => [n, { node: n, total: 0, watches: 0, nonWatch: 0, statusWrites: 0, by: {} }]));
  const unattributed: RequestRecord[] = [];
  for (const r of requests) {
    if (r.at < from || r.at >= to) continue;
    const n = agentOf(r, nodes);
    if (!n) {
      unattributed.push(r);
      continue;
    }
    const a = agents.get(n)!;
    const verb = verbOf(r);
    const res = resourceOf(r);
    a.total++;
    if (verb === 'watch') a.watches++;
    else a.nonWatch++;
    if (verb === 'patch' && res === 'nodes/status') a.statusWrites++;
    const k = `${verb} ${res}`;
    a.by[k] = (a.by[k] ?? 0) + 1;
  }
  return { agents: [...agents.values()], unattributed };
}
