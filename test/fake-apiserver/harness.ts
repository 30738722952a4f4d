/**
 * What the Kubernetes tests share: a fake API server with a kubeconfig file, a config per simulated
 * node, and a Host that records commands instead of running them, so no test can reboot this machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { systemClock, type Clock } from '../../platform/clock.js';
import { resolveConfig, type Config } from '../../agent/config.js';
import type { CommandResult, Host, LineStream, RunOptions, SpawnLinesOptions, StatFs } from '../../platform/host.js';
import type { CheckResult } from '../../checks/types.js';
import { connectKubernetes, type KubeAccess } from '../../platform/kube-client.js';
import { DrainRebootController, type EpisodeEnd, type Tuning } from '../../remediations/kubernetes/rebooter.js';
import type { ActionName, ActionResult } from '../../remediations/types.js';
import { FakeApiServer, type FakeApiServerOptions } from './server.js';

/** Records every command; runs nothing. `systemctl reboot` here ends nothing but a list entry. */
export class RecordingHost implements Host {
  readonly clock: Clock = systemClock;
  readonly commands: { argv: string[]; at: number }[] = [];
  /** What `run` answers; default success. */
  answer: (argv: readonly string[]) => Partial<CommandResult> = () => ({ exitCode: 0 });

  async run(argv: readonly string[], _opts: RunOptions): Promise<CommandResult> {
    this.commands.push({ argv: [...argv], at: Date.now() });
    return { argv, exitCode: 0, stdout: '', stderr: '', timedOut: false, notFound: false, outputCapped: false, ...this.answer(argv) };
  }
  spawnLines(_argv: readonly string[], _opts: SpawnLinesOptions): LineStream {
    throw new Error('RecordingHost.spawnLines: not used by these tests');
  }
  async readFile(path: string): Promise<string> {
    throw Object.assign(new Error(`RecordingHost: no file ${path}`), { code: 'ENOENT' });
  }
  async statfs(_path: string): Promise<StatFs> {
    throw new Error('RecordingHost.statfs: not used by these tests');
  }
  get reboots(): number {
    return this.commands.filter((c) => c.argv.join(' ') === 'systemctl reboot').length;
  }
}

export interface Cluster {
  fake: FakeApiServer;
  dir: string;
  kubeconfig: string;
  access: KubeAccess;
}

type Tap = { teardown(fn: () => unknown): void };

export async function startCluster(t: Tap, opts: FakeApiServerOptions = {}): Promise<Cluster> {
  const fake = new FakeApiServer(opts);
  await fake.start();
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-k8s-'));
  t.teardown(async () => {
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const kubeconfig = fake.writeKubeconfig(dir);
  const access = await connectKubernetes(kubeconfig, { requestTimeoutMs: 3000 });
  if (!access) throw new Error('connectKubernetes returned no access for a kubeconfig file');
  return { fake, dir, kubeconfig, access };
}

/** The effective config of one simulated node, validated like the real one. */
export function nodeConfig(cluster: Cluster, nodeName: string, remediation: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Config {
  return resolveConfig({
    nodeName,
    stateDir: join(cluster.dir, `state-${nodeName}`),
    kubernetes: { kubeconfig: cluster.kubeconfig },
    remediation: { mode: 'enforce', leaseDuration: '5s', ...remediation },
    ...extra,
  });
}

export interface Agentlet {
  controller: DrainRebootController;
  host: RecordingHost;
  config: Config;
  actions: { action: ActionName; result: ActionResult }[];
  ends: EpisodeEnd[];
  logs: string[];
  /** Changes what the injected boot-id reader returns (a reboot, simulated). */
  bootId: { value: string };
}

/** One node's drain-reboot controller, as the agent builds it, with a recording host and boot-id reader. */
export function agentlet(cluster: Cluster, nodeName: string, remediation: Record<string, unknown> = {}, tuning: Tuning = {}): Agentlet {
  const config = nodeConfig(cluster, nodeName, remediation);
  const host = new RecordingHost();
  const logs: string[] = [];
  const logger: Logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(s) });
  const actions: Agentlet['actions'] = [];
  const ends: EpisodeEnd[] = [];
  const bootId = { value: `boot-${nodeName}-1` };
  const controller = new DrainRebootController({
    config,
    host,
    logger,
    clock: systemClock,
    recordAction: (action, result) => void actions.push({ action, result }),
    kube: cluster.access,
    readBootId: async () => bootId.value,
    tuning: { evictionRetryMs: 200, podPollMs: 50, recoveryPollMs: 100, ...tuning },
    onEpisodeEnd: (e) => void ends.push(e),
  });
  return { controller, host, config, actions, ends, logs, bootId };
}

/**
 * A config file for a real `nodemedic` process (the built CLI) acting as `nodeName` against the fake.
 * Its host command prefix is a recorder: `systemctl reboot` only appends a line to `commandsFile`.
 */
export function writeNodeConfigFile(cluster: Cluster, nodeName: string, remediation: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): { path: string; stateDir: string; commandsFile: string } {
  const stateDir = join(cluster.dir, `state-${nodeName}`);
  const commandsFile = join(cluster.dir, `commands-${nodeName}.log`);
  const cfg = {
    nodeName,
    stateDir,
    log: { level: 'debug' },
    hostCommandPrefix: ['/bin/sh', '-c', 'printf "%s\\n" "$*" >> "$0"', commandsFile],
    kubernetes: { kubeconfig: cluster.kubeconfig },
    remediation: { mode: 'enforce', leaseDuration: '5s', ...remediation },
    ...extra,
  };
  const path = join(cluster.dir, `config-${nodeName}.yaml`);
  writeFileSync(path, JSON.stringify(cfg, null, 2));
  return { path, stateDir, commandsFile };
}

/** The built CLI (`npm test` builds first). */
export const CLI = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));

export interface Child {
  proc: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `nodemedic ...args` as a real process; killed (SIGKILL) in teardown if still running. */
export function spawnCli(t: Tap, args: readonly string[]): Child {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, NODEMEDIC_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  return { proc, output: () => out, exited };
}

/** A check result as the agent's sweeper publishes it. */
export function result(check: string, status: CheckResult['status'], reason = status === 'ok' ? 'Healthy' : 'Broken'): CheckResult {
  return { check, status, reason, message: `${check} is ${status}`, observedAt: new Date().toISOString(), durationSeconds: 0.01, evidence: {} };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `f` until it is truthy or `ms` passes. */
export async function until<T>(f: () => T | Promise<T>, ms: number, every = 50): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${ms}ms`);
    await sleep(every);
  }
}
