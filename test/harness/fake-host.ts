/**
 * A fleet of real `nodemedic run` processes (dist/agent/cli.js) against the fake API server, each
 * node behind a fake host (fake-host.sh, a bash script, through `hostCommandPrefix`) that acts only on
 * its own directory. This harness plays systemd and the machine: when a node's agent runs `systemctl reboot`,
 * it stops that agent (SIGTERM, as systemd does at shutdown), marks the Node NotReady, keeps the node
 * down for `downMs`, then "boots": a new boot id, the kubelet fault cured, the agent started again,
 * and (playing the kubelet) the Node Ready once the agent serves.
 *
 * What happened is judged from the fake API server's request log (see `cordonTimeline`), not from
 * what the agents say.
 */
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { CHECK_DEFINITIONS } from '../../checks/index.js';
import type { Cluster } from '../fake-apiserver/harness.js';
import { makeNode, makePod } from '../fake-apiserver/fixtures.js';
import type { RequestRecord } from '../fake-apiserver/server.js';
import { AgentProcess } from '../helpers/scenario.js';
import { agentCommand } from '../helpers/cli.js';

export const FAKE_HOST = fileURLToPath(new URL('./fake-host.sh', import.meta.url));

type Tap = { teardown(fn: () => unknown): void; comment(...a: unknown[]): void };

/** CPU time (ms) a process has used so far, all its threads (Linux: /proc/PID/task/TID/schedstat); undefined elsewhere. */
function cpuMs(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    return Math.round(ns / 1e6);
  } catch {
    return undefined;
  }
}

export interface FleetOptions {
  nodes: number;
  /** `remediation:` overrides. */
  remediation?: Record<string, unknown>;
  /** How long a rebooting node stays down (stopped agent, NotReady Node). */
  downMs: number;
  /** Called once a node's agent serves again after its reboot, before its Node is Ready (e.g. to start an API outage). */
  onBoot?: (node: string, n: number) => void | Promise<void>;
}

export interface FleetNode {
  name: string;
  dir: string;
  configPath: string;
  stateDir: string;
  agent: AgentProcess | undefined;
  boots: number;
  /** Times (ms) `systemctl reboot` was seen. */
  reboots: number[];
  /** Every agent process this node ran (for logs after the fact). */
  agents: AgentProcess[];
}

/** The kubelet healthz of every node: 500 while the node's fault is on. */
class Healthz {
  readonly faulty = new Set<string>();
  private server: Server | undefined;
  url = '';
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const node = decodeURIComponent((req.url ?? '').split('/').pop() ?? '');
      const bad = this.faulty.has(node);
      res.writeHead(bad ? 500 : 200, { 'content-type': 'text/plain' });
      res.end(bad ? '[-]syncloop failed: PLEG is not healthy (simulated; cured by a reboot)' : 'ok');
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/healthz`;
  }
  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

export class Fleet {
  readonly nodes: FleetNode[] = [];
  readonly healthz = new Healthz();
  private stopped = false;
  private readonly loops: Promise<void>[] = [];

  constructor(
    readonly t: Tap,
    readonly cluster: Cluster,
    readonly opts: FleetOptions,
  ) {}

  static async start(t: Tap, cluster: Cluster, opts: FleetOptions): Promise<Fleet> {
    const f = new Fleet(t, cluster, opts);
    await f.healthz.start();
    t.teardown(async () => {
      await f.stop();
      await f.healthz.stop();
    });
    for (let i = 1; i <= opts.nodes; i++) f.addNode(`fleet-${i}`);
    return f;
  }

  private addNode(name: string): void {
    const dir = join(this.cluster.dir, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'boot_id'), `${randomUUID()}\n`);
    writeFileSync(join(dir, 'boot-time'), String(Date.now() - 3600_000));
    this.cluster.fake.addNode(makeNode({ name }));
    this.cluster.fake.addPod(makePod({ name: `web-${name}`, node: name, terminationGracePeriodSeconds: 1 }));
    const stateDir = join(dir, 'state');
    const config = {
      nodeName: name,
      http: { listen: '127.0.0.1:0' },
      schedule: '* * * * * *',
      stateDir,
      hostCommandPrefix: ['bash', FAKE_HOST, dir],
      log: { level: 'debug' },
      kubernetes: { kubeconfig: this.cluster.kubeconfig },
      // Only the kubelet check: the fault under test, and nothing else of this machine is looked at.
      checks: Object.fromEntries(
        CHECK_DEFINITIONS.map((d) => [d.id, d.id === 'kubelet' ? { enabled: true, unit: 'kubelet', healthzUrl: `${this.healthz.url}/${name}`, timeout: '3s' } : { enabled: false }]),
      ),
      remediation: {
        mode: 'enforce',
        grace: '1s',
        settle: '2s',
        triggers: ['kubelet'],
        steps: ['drain-reboot'],
        bootIdFile: join(dir, 'boot_id'),
        ...this.opts.remediation,
      },
    };
    const configPath = join(dir, 'config.yaml');
    writeFileSync(configPath, stringify(config));
    this.nodes.push({ name, dir, configPath, stateDir, agent: undefined, boots: 0, reboots: [], agents: [] });
  }

  node(name: string): FleetNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no fleet node ${name}`);
    return n;
  }

  /** Starts `nodemedic run` for the node and waits until it serves. */
  async startAgent(n: FleetNode): Promise<AgentProcess> {
    const [cmd, ...args] = agentCommand(n.configPath);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, NODEMEDIC_CONFIG: '' } });
    const a = new AgentProcess(child, `${n.name}#${n.agents.length + 1}`);
    n.agent = a;
    n.agents.push(a);
    await a.waitReady(120_000);
    return a;
  }

  /** Starts every agent, and the "machine" loop of each node (reboots). */
  async startAll(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.startAgent(n)));
    for (const n of this.nodes) this.loops.push(this.machine(n));
  }

  /** Plays systemd and the machine for one node until the fleet stops. */
  private async machine(n: FleetNode): Promise<void> {
    const flag = join(n.dir, 'reboot-requested');
    while (!this.stopped) {
      if (!existsSync(flag)) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      n.reboots.push(Number(readFileSync(flag, 'utf8')));
      this.t.comment(`${new Date().toISOString()} ${n.name}: systemctl reboot`);
      // systemd stops the services at shutdown: SIGTERM, then SIGKILL after its timeout.
      const stopping = Date.now();
      await n.agent?.stop();
      const stoppedMs = Date.now() - stopping;
      this.cluster.fake.updateNode(n.name, (node) => {
        node.status.conditions[0].status = 'Unknown';
        node.status.conditions[0].reason = 'NodeStatusUnknown';
      });
      await new Promise((r) => setTimeout(r, this.opts.downMs));
      if (this.stopped) return;
      // The boot: a new boot id, a fresh kubelet (the fault was cured by the reboot), the agent again.
      writeFileSync(join(n.dir, 'boot_id'), `${randomUUID()}\n`);
      writeFileSync(join(n.dir, 'boot-time'), String(Date.now()));
      rmSync(join(n.dir, 'start-kubelet'), { force: true });
      rmSync(flag);
      this.healthz.faulty.delete(n.name);
      n.boots += 1;
      const starting = Date.now();
      const a = await this.startAgent(n);
      const startedMs = Date.now() - starting;
      const cpu = cpuMs(a.child.pid);
      // Before the kubelet is back (Ready), e.g. an API outage right after the boot.
      await this.opts.onBoot?.(n.name, n.boots);
      this.t.comment(
        `${new Date().toISOString()} ${n.name}: booted (${n.boots}); the agent took ${stoppedMs} ms to stop, ${startedMs} ms to serve again${cpu === undefined ? '' : ` (${cpu} ms of CPU)`}`,
      );
      // The kubelet posts Ready again.
      this.cluster.fake.updateNode(n.name, (node) => {
        node.status.conditions[0].status = 'True';
        node.status.conditions[0].reason = 'KubeletReady';
      });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await Promise.all(
      this.nodes.flatMap((n) =>
        n.agents.map(async (a) => {
          await a.stop().catch(() => undefined);
          a.killGroup();
        }),
      ),
    );
  }

  /** Every agent log line of every process of the fleet matching `re`. */
  lines(re: RegExp): { node: string; line: Record<string, unknown> }[] {
    return this.nodes.flatMap((n) => n.agents.flatMap((a) => a.lines(re).map((line) => ({ node: n.name, line }))));
  }
}

/** One change of a Node's cordon as the API server applied it (a PATCH it answered 200). */
export interface CordonChange {
  at: number;
  node: string;
  cordoned: boolean;
  by: string | undefined;
}

/**
 * The cordon history of every node from the request log: each successful PATCH of a Node that sets
 * `spec.unschedulable`. (A PATCH applied late, after the client gave up, is still logged with the time
 * the server applied it: see faults.ts.)
 */
export function cordonTimeline(requests: readonly RequestRecord[]): CordonChange[] {
  const out: CordonChange[] = [];
  for (const r of requests) {
    const m = /^\/api\/v1\/nodes\/([^/]+)$/.exec(r.path);
    if (!m || r.method !== 'PATCH' || r.status !== 200 || !r.body || typeof r.body !== 'object' || Array.isArray(r.body)) continue;
    const spec = (r.body as { spec?: { unschedulable?: boolean } }).spec;
    if (typeof spec?.unschedulable !== 'boolean') continue;
    const ann = (r.body as { metadata?: { annotations?: Record<string, string | null> } }).metadata?.annotations;
    out.push({ at: r.doneAt ?? r.at, node: decodeURIComponent(m[1]!), cordoned: spec.unschedulable, by: ann?.['nodemedic.io/cordoned-by'] ?? undefined });
  }
  return out.sort((a, b) => a.at - b.at);
}

/** The most nodes cordoned at once over the timeline, and when. */
export function maxCordoned(timeline: readonly CordonChange[]): { max: number; at: number; nodes: string[] } {
  const now = new Set<string>();
  let best = { max: 0, at: 0, nodes: [] as string[] };
  for (const c of timeline) {
    if (c.cordoned) now.add(c.node);
    else now.delete(c.node);
    if (now.size > best.max) best = { max: now.size, at: c.at, nodes: [...now] };
  }
  return best;
}

/** Which nodes were cordoned (by the timeline) at time `at`. */
export function cordonedAt(timeline: readonly CordonChange[], at: number): string[] {
  const now = new Set<string>();
  for (const c of timeline) {
    if (c.at > at) break;
    if (c.cordoned) now.add(c.node);
    else now.delete(c.node);
  }
  return [...now];
}

/**
 * Reboot-slot takeovers in the request log: a successful write of a Lease naming a holder while the
 * last holder the server accepted was another node that had not released it.
 */
export function slotTakeovers(requests: readonly RequestRecord[]): string[] {
  const holder = new Map<string, string | undefined>();
  const out: string[] = [];
  for (const r of requests) {
    if (!r.path.includes('/leases') || (r.method !== 'PUT' && r.method !== 'POST') || r.status >= 300 || !r.body || typeof r.body !== 'object') continue;
    const b = r.body as { metadata?: { name?: string }; spec?: { holderIdentity?: string } };
    const name = b.metadata?.name ?? r.path.split('/').pop()!;
    const prev = holder.get(name);
    const next = b.spec?.holderIdentity;
    if (prev && next && prev !== next) out.push(`${name}: ${next} took it from ${prev} at ${new Date(r.at).toISOString()}`);
    holder.set(name, next);
  }
  return out;
}
