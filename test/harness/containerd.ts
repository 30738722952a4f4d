import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { killLeftovers, pause, removeDir, resume, spawnDaemon, terminate, waitReady } from './daemon-process.js';

/** Files of one test containerd, all under its private directory. */
export interface ContainerdPaths {
  dir: string;
  /** gRPC socket (what `checks.containerd.socket` points at). */
  socket: string;
  root: string;
  state: string;
  config: string;
  log: string;
}

export interface ContainerdHarnessOptions {
  /** Parent for the daemon's private directory (a unique one is made inside). Default os.tmpdir(). */
  dir?: string;
  /** Default 30 s. */
  readyTimeoutMs?: number;
}

export interface ContainerdHandle {
  pid: number;
  socket: string;
  paths: ContainerdPaths;
  /** SIGSTOP: every request hangs, like a deadlocked daemon. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** SIGKILL the daemon and wait: its socket file stays behind (a crashed daemon). */
  crash(): Promise<void>;
  /** Stops the daemon and everything it started, unmounts and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** Unix socket paths are limited to 107 bytes; fail with a clear message instead of a bind error. */
export function assertSocketPath(path: string): void {
  if (Buffer.byteLength(path) > 100) throw new Error(`socket path too long for a unix socket (${Buffer.byteLength(path)} bytes): ${path}`);
}

export function containerdPaths(dir: string): ContainerdPaths {
  return {
    dir,
    socket: join(dir, 'containerd.sock'),
    root: join(dir, 'root'),
    state: join(dir, 'state'),
    config: join(dir, 'config.toml'),
    log: join(dir, 'containerd.log'),
  };
}

/**
 * A containerd config that touches nothing of the host's: own root, state, sockets and opt dir,
 * and no CRI plugin (it would look for CNI config and pull sandbox images).
 */
export function containerdConfig(p: ContainerdPaths): string {
  const q = (s: string) => JSON.stringify(s);
  return [
    'version = 2',
    `root = ${q(p.root)}`,
    `state = ${q(p.state)}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '',
    '[grpc]',
    `  address = ${q(p.socket)}`,
    '',
    '[ttrpc]',
    `  address = ${q(`${p.socket}.ttrpc`)}`,
    '',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(join(p.dir, 'opt'))}`,
    '',
  ].join('\n');
}

export function containerdArgv(p: ContainerdPaths): string[] {
  return ['containerd', '--config', p.config, '--log-level', 'info'];
}

/** Quotes one argument for a systemd `ExecStart=` line. */
export function systemdQuote(arg: string): string {
  const escaped = arg.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /[\s"'\\;]/.test(arg) || escaped !== arg ? `"${escaped}"` : arg;
}

/** A `containerd.service` like Debian's (notify, KillMode=process) running this test containerd. */
export function containerdServiceUnit(p: ContainerdPaths): string {
  const argv = containerdArgv(p);
  argv[0] = '/usr/bin/containerd';
  return [
    '[Unit]',
    'Description=containerd for nodemedic tests',
    '',
    '[Service]',
    'Type=notify',
    `ExecStart=${argv.map(systemdQuote).join(' ')}`,
    'Delegate=yes',
    'KillMode=process',
    'Restart=always',
    'RestartSec=1',
    '',
  ].join('\n');
}

/** Makes the private directory and config; returns what is needed to run containerd there (directly or as a unit). */
export async function prepareContainerd(opts: { dir?: string } = {}): Promise<{ paths: ContainerdPaths; argv: string[]; unitText: string }> {
  const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'nm-ctrd-'));
  const paths = containerdPaths(dir);
  assertSocketPath(`${paths.socket}.ttrpc`);
  await mkdir(paths.root, { recursive: true });
  await mkdir(paths.state, { recursive: true });
  await writeFile(paths.config, containerdConfig(paths));
  return { paths, argv: containerdArgv(paths), unitText: containerdServiceUnit(paths) };
}

/** `ctr version` against the socket: readiness judged by containerd's own client, not the code under test. */
async function answers(socket: string): Promise<boolean> {
  const r = await execa('ctr', ['--address', socket, 'version'], { reject: false, timeout: 3000, stdin: 'ignore' });
  return r.exitCode === 0 && /Server:\s*\n\s*Version:/.test(r.stdout);
}

/** Starts a private containerd and waits until it answers. The caller must `stop()` it (t.teardown). */
export async function startContainerd(opts: ContainerdHarnessOptions = {}): Promise<ContainerdHandle> {
  const { paths, argv } = await prepareContainerd(opts);
  let d: ReturnType<typeof spawnDaemon>;
  try {
    d = spawnDaemon(argv, paths.log);
  } catch (e) {
    await removeDir(paths.dir);
    throw e;
  }
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await terminate(d);
      await killLeftovers(paths.dir);
      await removeDir(paths.dir);
    })());
  try {
    await waitReady(d, 'containerd', paths.log, opts.readyTimeoutMs ?? 30_000, () => answers(paths.socket));
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    pid: d.pid,
    socket: paths.socket,
    paths,
    pause: () => pause(d.pid),
    resume: () => resume(d.pid),
    crash: async () => {
      process.kill(d.pid, 'SIGCONT');
      process.kill(d.pid, 'SIGKILL');
      await d.exited;
    },
    stop,
  };
}
