import { existsSync, readdirSync } from 'node:fs';
import http from 'node:http';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertSocketPath, startContainerd, systemdQuote, type ContainerdHandle } from './containerd.js';
import { killLeftovers, pause, removeDir, resume, spawnDaemon, terminate, waitReady } from './daemon-process.js';
import { buildBusyboxTar } from './rootfs.js';

/** Files of one test dockerd, all under its private directory. */
export interface DockerdPaths {
  dir: string;
  /** API socket (what `checks.docker.socket` points at). */
  socket: string;
  dataRoot: string;
  execRoot: string;
  pidfile: string;
  /** daemon.json: keeps dockerd from reading /etc/docker/daemon.json and writing /etc/docker/key.json. */
  configFile: string;
  log: string;
}

export interface DockerdFlags {
  liveRestore?: boolean;
  /** Use this containerd socket instead of the one dockerd starts itself. */
  containerd?: string;
}

export interface DockerdHarnessOptions extends DockerdFlags {
  /** Parent for the daemon's private directory (a unique one is made inside). Default os.tmpdir(). */
  dir?: string;
  /** Default 60 s (dockerd starts its own containerd first). */
  readyTimeoutMs?: number;
}

export interface DockerdHandle extends DockerClient {
  pid: number;
  socket: string;
  dataRoot: string;
  paths: DockerdPaths;
  liveRestore: boolean;
  /** SIGSTOP dockerd (only dockerd, not its containerd): every API request hangs. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** SIGKILL dockerd and wait: its socket file stays behind, like a crashed daemon. */
  crash(): Promise<void>;
  /** Removes containers, stops dockerd and whatever it started, unmounts and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

export const BUSYBOX_IMAGE = 'nodemedic-busybox:latest';
const SYSTEM_CONTAINERD = '/run/containerd/containerd.sock';

export function dockerdPaths(dir: string): DockerdPaths {
  return {
    dir,
    socket: join(dir, 'docker.sock'),
    dataRoot: join(dir, 'data'),
    execRoot: join(dir, 'exec'),
    pidfile: join(dir, 'dockerd.pid'),
    configFile: join(dir, 'daemon.json'),
    log: join(dir, 'dockerd.log'),
  };
}

/** dockerd's argv for a test daemon (TESTING.md): no iptables, no bridge, vfs, everything private. */
export function dockerdArgv(p: DockerdPaths, flags: DockerdFlags = {}): string[] {
  return [
    'dockerd',
    '--config-file', p.configFile,
    '--iptables=false',
    '--ip-masq=false',
    '--bridge=none',
    '--storage-driver=vfs',
    '--data-root', p.dataRoot,
    '--exec-root', p.execRoot,
    '--pidfile', p.pidfile,
    '-H', `unix://${p.socket}`,
    ...(flags.liveRestore ? ['--live-restore'] : []),
    ...(flags.containerd ? ['--containerd', flags.containerd] : []),
  ];
}

/**
 * daemon.json. `deprecated-key-path` exists only as a config key (Docker 20.10); without it dockerd
 * creates /etc/docker/key.json on the host.
 */
export function dockerdConfig(p: DockerdPaths): Record<string, unknown> {
  return { 'deprecated-key-path': join(p.dir, 'key.json') };
}

/**
 * A `docker.service` shaped like Debian's (Type=notify, Delegate, KillMode=process so containers
 * survive a restart with live-restore) running this test dockerd, for a systemd in a PID namespace.
 */
export function dockerServiceUnit(p: DockerdPaths, flags: DockerdFlags = {}): string {
  const argv = dockerdArgv(p, flags);
  argv[0] = '/usr/sbin/dockerd';
  return [
    '[Unit]',
    'Description=dockerd for nodemedic tests',
    ...(flags.containerd ? ['After=containerd.service', 'Wants=containerd.service'] : []),
    '',
    '[Service]',
    'Type=notify',
    `ExecStart=${argv.map(systemdQuote).join(' ')}`,
    'ExecReload=/bin/kill -s HUP $MAINPID',
    'TimeoutStartSec=60',
    'Delegate=yes',
    'KillMode=process',
    'Restart=on-failure',
    '',
  ].join('\n');
}

/** Makes the private directory and daemon.json; returns what is needed to run dockerd (directly or as a unit). */
export async function prepareDockerd(opts: { dir?: string } & DockerdFlags = {}): Promise<{ paths: DockerdPaths; argv: string[]; unitText: string }> {
  const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'nm-dockerd-'));
  const paths = dockerdPaths(dir);
  // dockerd's own containerd listens deepest: <exec-root>/containerd/containerd.sock.ttrpc
  assertSocketPath(join(paths.execRoot, 'containerd', 'containerd.sock.ttrpc'));
  await mkdir(paths.dataRoot, { recursive: true });
  await mkdir(paths.execRoot, { recursive: true });
  await writeFile(paths.configFile, JSON.stringify(dockerdConfig(paths), null, 2));
  return { paths, argv: dockerdArgv(paths, opts), unitText: dockerServiceUnit(paths, opts) };
}

/** Ids of the containers a dockerd knows, read from its data root (works while it is stopped or gone). */
export function containerIds(p: DockerdPaths): string[] {
  try {
    return readdirSync(join(p.dataRoot, 'containers')).filter((n) => /^[0-9a-f]{64}$/.test(n));
  } catch {
    return [];
  }
}

/**
 * Kills every process left by a dockerd that ran from `p` (its containerd, shims, container
 * processes, found by directory and by container cgroup), unmounts and removes the directory.
 * For a dockerd run as a unit elsewhere: call after that unit is stopped.
 */
export async function sweepDockerd(p: DockerdPaths): Promise<void> {
  await killLeftovers(p.dir, containerIds(p));
  await removeDir(p.dir);
}

/** One Engine API call over the socket with a hard timeout (independent of the code under test). */
export function dockerApi(socket: string, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {};
    if (payload) headers['content-type'] = Buffer.isBuffer(body) ? 'application/x-tar' : 'application/json';
    const req = http.request({ socketPath: socket, method, path, headers, agent: false, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const code = res.statusCode ?? 0;
        if (code < 200 || code >= 300) return reject(new Error(`${method} ${path}: HTTP ${code}: ${text.slice(0, 500)}`));
        try {
          resolve(text ? JSON.parse(text) : undefined);
        } catch {
          resolve(text);
        }
      });
    });
    req.on('error', (e) => reject(new Error(`${method} ${path}: ${e.message}`)));
    req.end(payload);
  });
}

/** What tests do with a running dockerd, whoever started it (`startDockerd`, or systemd from `prepareDockerd`'s unit). */
export interface DockerClient {
  /** Imports the busybox-static rootfs as an image; returns its reference. Cached. */
  importBusybox(): Promise<string>;
  /** Creates and starts a container (default `sleep 3600`, no network); returns its id. */
  runContainer(cmd?: string[]): Promise<string>;
  containerRunning(id: string): Promise<boolean>;
  /** The container's init process on the host (0 when not running). */
  containerPid(id: string): Promise<number>;
  /** One Engine API call, for anything else a test needs. Rejects on timeout or a non-2xx answer. */
  api(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<unknown>;
}

export function dockerClient(paths: DockerdPaths): DockerClient {
  const api = (method: string, path: string, body?: unknown, timeoutMs?: number) => dockerApi(paths.socket, method, path, body, timeoutMs);
  let image: Promise<string> | undefined;
  const importBusybox = () =>
    (image ??= (async () => {
      const tar = await readFile(await buildBusyboxTar(paths.dir));
      const [repo, tag] = BUSYBOX_IMAGE.split(':') as [string, string];
      const out = await api('POST', `/images/create?fromSrc=-&repo=${repo}&tag=${tag}`, tar, 60_000);
      if (typeof out === 'object' && out && 'error' in out) throw new Error(`docker import failed: ${JSON.stringify(out)}`);
      return BUSYBOX_IMAGE;
    })().catch((e: unknown) => {
      image = undefined;
      throw e;
    }));
  const inspect = async (id: string) => (await api('GET', `/containers/${id}/json`, undefined, 10_000)) as { State?: { Running?: boolean; Pid?: number } };
  return {
    importBusybox,
    async runContainer(cmd = ['sleep', '3600']) {
      const img = await importBusybox();
      const created = (await api('POST', '/containers/create', { Image: img, Cmd: cmd, HostConfig: { NetworkMode: 'none' } }, 30_000)) as { Id: string };
      await api('POST', `/containers/${created.Id}/start`, undefined, 30_000);
      return created.Id;
    },
    containerRunning: async (id) => (await inspect(id)).State?.Running === true,
    containerPid: async (id) => (await inspect(id)).State?.Pid ?? 0,
    api,
  };
}

/**
 * Starts a private dockerd and waits until `GET /_ping` answers. The caller must `stop()` it
 * (t.teardown). If a system containerd is running at /run/containerd, dockerd would silently use
 * it; a private containerd is started instead so that nothing of the host's is touched.
 */
export async function startDockerd(opts: DockerdHarnessOptions = {}): Promise<DockerdHandle> {
  let ownContainerd: ContainerdHandle | undefined;
  if (!opts.containerd && existsSync(SYSTEM_CONTAINERD)) ownContainerd = await startContainerd(opts.dir ? { dir: opts.dir } : {});
  const flags: DockerdFlags = { liveRestore: !!opts.liveRestore, ...(opts.containerd || ownContainerd ? { containerd: opts.containerd ?? ownContainerd!.socket } : {}) };
  let prepared: Awaited<ReturnType<typeof prepareDockerd>>;
  try {
    prepared = await prepareDockerd({ ...flags, ...(opts.dir ? { dir: opts.dir } : {}) });
  } catch (e) {
    await ownContainerd?.stop();
    throw e;
  }
  const { paths, argv } = prepared;
  const socket = paths.socket;
  const api = (method: string, path: string, body?: unknown, timeoutMs?: number) => dockerApi(socket, method, path, body, timeoutMs);
  let d: ReturnType<typeof spawnDaemon>;
  try {
    d = spawnDaemon(argv, paths.log);
  } catch (e) {
    await removeDir(paths.dir);
    await ownContainerd?.stop();
    throw e;
  }

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (!d.hasExited()) {
        resume(d.pid);
        // Containers first, through the API while dockerd still runs: with live-restore they would outlive it.
        for (const id of containerIds(paths)) {
          await api('DELETE', `/containers/${id}?force=1`, undefined, 10_000).catch(() => undefined);
        }
        await terminate(d, 15_000);
      }
      await killLeftovers(paths.dir, containerIds(paths));
      await removeDir(paths.dir);
      await ownContainerd?.stop();
    })());

  try {
    await waitReady(d, 'dockerd', paths.log, opts.readyTimeoutMs ?? 60_000, async () => {
      try {
        return (await api('GET', '/_ping', undefined, 2000)) === 'OK';
      } catch {
        return false;
      }
    });
  } catch (e) {
    await stop();
    throw e;
  }

  const client = dockerClient(paths);

  return {
    pid: d.pid,
    socket,
    dataRoot: paths.dataRoot,
    paths,
    liveRestore: !!opts.liveRestore,
    pause: () => pause(d.pid),
    resume: () => resume(d.pid),
    crash: async () => {
      resume(d.pid);
      process.kill(d.pid, 'SIGKILL');
      await d.exited;
    },
    ...client,
    stop,
  };
}
