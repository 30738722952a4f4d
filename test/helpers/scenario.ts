/**
 * Ladder scenarios: a real systemd namespace with a fake kubelet and (optionally) a real dockerd as
 * `docker.service`, and the real agent (`node dist/agent/cli.js run`, built by `npm test`) pointed at
 * it through `hostCommandPrefix`, so nothing outside the namespace can be restarted. What happened
 * is judged from the namespace's own journal (systemd's job messages about each unit).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { dockerClient, prepareDockerd, sweepDockerd, type DockerClient, type DockerdPaths } from '../harness/dockerd.js';
import { FakeKubelet, type FakeKubeletConfig } from '../harness/fake-kubelet.js';
import { requireSystemdNs, startSystemdNs, waitFor, type SystemdNs, type UnitEvent } from '../harness/systemd-ns.js';
import { requireComponent } from './require.js';
import { allChecksOff } from './lifecycle.js';

export { CLI };
import { agentCommand, CLI } from './cli.js';

type Tap = {
  teardown(fn: () => unknown): void;
  skip(msg?: string): void;
  fail(msg?: string): void;
  comment(...args: unknown[]): void;
};

/** True when the namespace, dockerd (if wanted) and the built CLI are here; else skips (or fails in CI). */
export async function scenarioAvailable(t: Tap, opts: { docker?: boolean } = {}): Promise<boolean> {
  if (!(await requireComponent(t, 'systemd namespace', ['systemctl', 'journalctl', 'unshare', 'nsenter', 'script', 'timeout']))) return false;
  if (opts.docker && !(await requireComponent(t, 'dockerd', ['dockerd']))) return false;
  if (!(await requireSystemdNs(t))) return false;
  if (!existsSync(CLI)) {
    t.fail(`${CLI} is missing: run \`npm run build\` first (\`npm test\` does)`);
    return false;
  }
  return true;
}

export interface ScenarioOptions {
  name: string;
  /** The fake kubelet's behaviour (config.json); healthy by default. */
  kubelet?: FakeKubeletConfig;
  /** Run a real dockerd as docker.service. */
  docker?: { liveRestore: boolean };
  /** `remediation:` overrides (mode enforce, grace 1s, settle 2s by default). */
  remediation?: Record<string, unknown>;
  /** `checks:` overrides, merged per check. */
  checks?: Record<string, Record<string, unknown>>;
  /** A kubeconfig (a fake API server's): the agent then has Kubernetes access. */
  kubeconfig?: string;
}

/** One JSON log line of the agent. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

export interface RecentAction {
  id: string;
  episodeId: string;
  step: string;
  action: string | null;
  unit?: string;
  mode: string;
  result: string;
  detail?: string;
  inferred?: boolean;
}

export interface RemediationStatus {
  mode: string;
  paused: boolean;
  episode: null | { id: string; trigger: string; step: string | null; phase: string; state: string; nextDecisionAt: string | null; endReason?: string };
  exhausted: null | { episodeId: string };
  rebootRequested: boolean;
  rebootRequest: null | { episodeId: string; result: string; detail: string };
  budgets: { restartsPerHour: { limit: number; used: Record<string, number> }; rebootsPerDay: { limit: number; used: number } };
  recentActions: RecentAction[];
  error?: string;
}

/** A running `nodemedic run`. */
export class AgentProcess {
  readonly logs: LogLine[] = [];
  url: string | undefined;
  private readonly ready: Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly child: ChildProcess,
    private readonly label: string,
  ) {
    let buf = '';
    let stderr = '';
    this.ready = new Promise((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          try {
            const rec = JSON.parse(line) as LogLine;
            this.logs.push(rec);
            if (rec.msg === 'nodemedic ready' && typeof rec.url === 'string') {
              this.url = rec.url;
              resolve();
            }
          } catch {
            this.logs.push({ msg: line });
          }
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString('utf8');
      });
      child.once('exit', (code, signal) => reject(new Error(`agent ${label} exited before it was ready (code ${code}, signal ${signal}): ${stderr.slice(-2000)}`)));
    });
    this.ready.catch(() => undefined);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  waitReady(timeoutMs = 30_000): Promise<void> {
    return Promise.race([
      this.ready,
      new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`agent ${this.label} not ready within ${timeoutMs} ms`)), timeoutMs).unref()),
    ]);
  }

  async status(): Promise<RemediationStatus & { results: { check: string; status: string; reason: string }[] }> {
    const res = await fetch(new URL('/status', this.url), { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as { remediation: RemediationStatus; results: { check: string; status: string; reason: string }[] };
    return { ...body.remediation, results: body.results };
  }

  async waitStatus<T>(pred: (s: RemediationStatus & { results: { check: string; status: string; reason: string }[] }) => T | undefined | false, what: string, timeoutMs = 30_000): Promise<T> {
    return waitFor(
      async () => {
        const v = pred(await this.status());
        return v ? v : undefined;
      },
      // A cap, not a guess: the wait ends at the event. At least 90 s, because on a busy 2-core CI
      // machine an action's evidence bundle plus a systemd restart can take tens of seconds.
      { timeoutMs: Math.max(timeoutMs, 90_000), intervalMs: 100, what: `${this.label}: ${what}` },
    );
  }

  /** Log lines with a message matching `re`. */
  lines(re: RegExp): LogLine[] {
    return this.logs.filter((l) => typeof l.msg === 'string' && re.test(l.msg));
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    if (!done) this.kill();
    await this.exited;
  }

  /** SIGKILL the agent process only (its children, e.g. a systemctl in flight, live on, as on a node). */
  kill(): void {
    if (this.child.pid && this.child.exitCode === null && this.child.signalCode === null) process.kill(this.child.pid, 'SIGKILL');
  }

  /** SIGKILL the agent's whole process group (teardown). */
  killGroup(): void {
    try {
      if (this.child.pid) process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export class Scenario {
  agents: AgentProcess[] = [];

  private constructor(
    readonly t: Tap,
    readonly dir: string,
    readonly ns: SystemdNs,
    readonly kubelet: FakeKubelet,
    readonly docker: { paths: DockerdPaths; client: DockerClient } | undefined,
    public opts: ScenarioOptions,
  ) {}

  static async start(t: Tap, opts: ScenarioOptions): Promise<Scenario> {
    const dir = await mkdtemp(join(tmpdir(), `nm-scenario-${opts.name}-`));
    const kubelet = await FakeKubelet.create(t);
    await kubelet.configure(opts.kubelet ?? {});
    const units: Record<string, string> = { 'kubelet.service': kubelet.unit() };
    let docker: { paths: DockerdPaths; client: DockerClient } | undefined;
    let ns: SystemdNs | undefined;
    let scenario: Scenario | undefined;
    t.teardown(async () => {
      for (const a of scenario?.agents ?? []) {
        await a.stop().catch(() => undefined);
        a.killGroup();
      }
      await ns?.stop();
      if (docker) await sweepDockerd(docker.paths);
      await rm(dir, { recursive: true, force: true });
    });
    if (opts.docker) {
      const prepared = await prepareDockerd({ liveRestore: opts.docker.liveRestore });
      docker = { paths: prepared.paths, client: dockerClient(prepared.paths) };
      units['docker.service'] = prepared.unitText;
    }
    ns = await startSystemdNs({ name: opts.name, units });
    const n = ns;
    const active = async (u: string) => (await n.systemctl('show', '--property=ActiveState', '--value', u)).stdout.trim() === 'active';
    await waitFor(async () => (await active('kubelet')) && (!docker || (await active('docker'))), { timeoutMs: 60_000, what: 'kubelet (and docker) active' });
    // Active is not listening: on a busy machine the fake kubelet takes seconds to bind its port, and an
    // agent started before that would see a refused healthz, a real problem that starts an episode.
    if (opts.kubelet?.healthz !== 'refuse') {
      await waitFor(() => tcpConnects(kubelet.port), { timeoutMs: 60_000, what: "the fake kubelet's healthz port" });
    }
    scenario = new Scenario(t, dir, ns, kubelet, docker, opts);
    await scenario.writeConfig();
    return scenario;
  }

  get configPath(): string {
    return join(this.dir, 'config.yaml');
  }

  get stateDir(): string {
    return join(this.dir, 'state');
  }

  async writeConfig(over: Partial<ScenarioOptions> = {}): Promise<void> {
    this.opts = { ...this.opts, ...over };
    const o = this.opts;
    // Every check off (from the registry, so a check added later is off too) but the two the scenario
    // is built around; a check the test names is on unless it says otherwise.
    const checks: Record<string, Record<string, unknown>> = {
      ...allChecksOff(),
      kubelet: { unit: 'kubelet', healthzUrl: this.kubelet.healthzUrl, timeout: '1s' },
      docker: this.docker ? { unit: 'docker', socket: this.docker.paths.socket, timeout: '1s' } : { enabled: false },
    };
    for (const [id, v] of Object.entries(o.checks ?? {})) checks[id] = { ...checks[id], enabled: true, ...v };
    const config = {
      nodeName: `scenario-${o.name}`,
      http: { listen: '127.0.0.1:0' },
      schedule: '* * * * * *',
      hostCommandPrefix: this.ns.prefix,
      stateDir: this.stateDir,
      log: { level: 'debug' },
      checks,
      remediation: { mode: 'enforce', grace: '1s', settle: '2s', commandTimeout: '30s', ...o.remediation },
      ...(o.kubeconfig ? { kubernetes: { kubeconfig: o.kubeconfig } } : {}),
    };
    await writeFile(this.configPath, stringify(config));
  }

  /** Starts `nodemedic run --config` and waits until it serves. */
  async startAgent(label = `agent-${this.agents.length + 1}`): Promise<AgentProcess> {
    const [cmd, ...args] = agentCommand(this.configPath);
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, NODEMEDIC_CONFIG: '' },
    });
    const agent = new AgentProcess(child, label);
    this.agents.push(agent);
    await agent.waitReady();
    return agent;
  }

  /** Runs a nodemedic command (pause, resume) with this scenario's config. */
  async cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args, '--config', this.configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODEMEDIC_CONFIG: '' } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.once('exit', (code) => resolve({ code, stdout, stderr }));
    });
  }

  /** systemd's own job messages about `unit` (not the unit's output). */
  async systemdEvents(unit: string): Promise<UnitEvent[]> {
    return (await this.ns.unitEvents(`${unit}.service`)).filter((e) => e.fromSystemd);
  }

  /**
   * How often the unit was restarted, per systemd's journal: each restart job ends with a `Stopped`
   * message carrying `JOB_TYPE=restart`, `JOB_RESULT=done`; a crash followed by `Restart=` has none.
   */
  async restarts(unit: string): Promise<number> {
    return (await this.systemdEvents(unit)).filter((e) => e.jobType === 'restart' && e.result === 'done').length;
  }

  /**
   * How often something stopped the unit while it ran (a restart or a stop), per systemd's journal:
   * each logs a `Stopping` message with `JOB_TYPE=stop`; a crash followed by `Restart=` does not.
   */
  async stopJobs(unit: string): Promise<number> {
    return (await this.systemdEvents(unit)).filter((e) => e.jobType === 'stop' && /^Stopping /.test(e.message)).length;
  }

  /** How often anything began to stop the unit (restart or stop), per systemd's `Stopping` messages. */
  async stoppings(unit: string): Promise<number> {
    return (await this.systemdEvents(unit)).filter((e) => /^Stopping /.test(e.message)).length;
  }

  /** Starts of the unit that completed, per systemd's journal (the boot's start included). */
  async startedJobs(unit: string): Promise<number> {
    return (await this.systemdEvents(unit)).filter((e) => e.jobType === 'start' && e.result === 'done').length;
  }

  async mainPid(unit: string): Promise<number> {
    return Number((await this.ns.systemctl('show', '--property=MainPID', '--value', unit)).stdout.trim());
  }

  async stateFile(): Promise<Record<string, unknown>> {
    return JSON.parse(await readFile(join(this.stateDir, 'state.json'), 'utf8')) as Record<string, unknown>;
  }

  /** Prints what systemd logged about the unit (for debugging a failure). */
  async dumpJournal(unit: string): Promise<void> {
    for (const e of await this.systemdEvents(unit)) this.t.comment(`${unit}: ${new Date(e.realtimeUs / 1000).toISOString()} ${e.jobType ?? ''} ${e.result ?? ''} ${e.message}`);
  }
}

/** Whether a TCP connection to 127.0.0.1:port is accepted (within 2 s). */
function tcpConnects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean): void => {
      c.destroy();
      resolve(ok);
    };
    c.setTimeout(2000, () => done(false));
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
