/**
 * A real systemd as PID 1 of a throwaway PID/mount/cgroup namespace, for integration tests
 * (recipe: the comments in test/harness/systemd/init.sh and below).
 *
 * ```ts
 * import { requireSystemdNs, startSystemdNs } from './harness/systemd-ns.js';
 *
 * t.test('kubelet restarts', async (t) => {
 *   if (!(await requireSystemdNs(t))) return;
 *   const ns = await startSystemdNs({ t, units: { 'kubelet.service': '[Service]\nExecStart=/bin/sleep infinity\n' } });
 *   const host = new RealHost({ commandPrefix: ns.prefix });   // the agent reaches the namespace like a node
 *   await ns.systemctl('restart', 'kubelet');
 *   const events = await ns.unitEvents('kubelet.service');
 * });
 * ```
 *
 * What the namespace's systemd can see and touch:
 * - units: only those given here, plus copies of the handful of /lib/systemd/system units it needs
 *   to boot and shut down (`COPIED_UNITS`), plus a private, empty /etc/systemd/system (so
 *   `systemctl enable/mask/edit` inside write to a tmpfs, never to the host's /etc). It never sees
 *   the host's unit directories and never starts `multi-user.target`.
 * - a private /run, /dev, /etc/systemd, /var/log/journal and /var/lib/systemd (tmpfs); /proc/sys
 *   and /sys read-only; its own cgroup subtree (`nodemedic-ns-*` under the host's cgroup2 mount).
 * - the host's network namespace and the rest of the host's filesystem (units may run any host
 *   binary, e.g. `node test/fixtures/fake-kubelet.mjs`). Units must therefore not do anything to the
 *   host a test would not do itself.
 *
 * `systemctl reboot`, `poweroff`, `halt` inside end only the namespace (reboot(2) in a child PID
 * namespace kills that namespace's init); `exited` tells which it was.
 *
 * Cleanup: `stop()` (register it with `t.teardown`, or pass `t` and it is registered for you). If
 * the test process dies without it, even by SIGKILL, a detached watchdog (systemd/watchdog.sh)
 * notices its stdin pipe closing, kills the namespace's cgroup and removes its directories.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, rmdir, readdir, symlink, writeFile, access } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { integrationRequired, requireComponent } from '../helpers/require.js';

export interface CommandOutput {
  /** Undefined when the command was killed (timeout) or could not start. */
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

/** One journald record about a unit (`journalctl -u UNIT -o json`), for asserting starts and restarts. */
export interface UnitEvent {
  /** MESSAGE, decoded as UTF-8 even when journald stored it as a byte array. */
  message: string;
  /** `__REALTIME_TIMESTAMP`: microseconds since the Unix epoch. */
  realtimeUs: number;
  /** `JOB_TYPE` of systemd's own job messages (`start`, `stop`, `restart`, ...). */
  jobType?: string;
  /** `JOB_RESULT` of systemd's own job messages (`done`, `failed`, `canceled`, ...). */
  result?: string;
  /** `MESSAGE_ID` (systemd's catalog ids, e.g. `UNIT_STARTED` 39f53479d3a045ac8e11786248231fbf). */
  messageId?: string;
  /** True for messages written by the namespace's systemd (PID 1) about the unit, false for the unit's own output. */
  fromSystemd: boolean;
  /** `_PID` of the writer (as seen inside the namespace). */
  pid?: number;
}

/** How the namespace ended. */
export interface NsExit {
  /** `reboot`/`poweroff` (also `halt`): systemd ended it; `killed`: SIGKILL (stop() fallback, watchdog); `other`: anything else. */
  how: 'reboot' | 'poweroff' | 'killed' | 'other';
  /** script(1)'s exit status: 128 + the signal that ended the namespace's init. */
  exitCode: number | null;
}

export interface SystemdNs {
  /** Unique name (also the `container=` value systemd sees and the cgroup's name). */
  readonly name: string;
  /** Host path of the namespace's cgroup (cgroup2); systemd's slices and services are below it. */
  readonly cgroup: string;
  /** Host PID of the namespace's PID 1 (systemd). */
  readonly pid: number;
  /** `hostCommandPrefix` reaching the namespace: `['nsenter', '-t', pid, '-m', '-p', '--']`. */
  readonly prefix: string[];
  /** Host directory of the test's units (plus the copied ones). Write more there and `daemon-reload`, or use `addUnit`. */
  readonly unitsDir: string;
  /** Host path of the namespace's volatile journal, for `journalctl --directory` (valid while it runs). */
  readonly journalDir: string;
  /** Host path of the namespace's console output (systemd's boot and shutdown messages), for debugging. */
  readonly consoleLog: string;
  /**
   * Resolves once the namespace has ended, however it ended (poweroff, reboot inside, stop()).
   * Reading it keeps the test process alive until then; a namespace nobody waits for does not.
   */
  readonly exited: Promise<NsExit>;
  /** True until the namespace's PID 1 has exited. */
  running(): boolean;
  /** `systemctl ARGS` inside (10 s timeout). Never rejects. */
  systemctl(...args: string[]): Promise<CommandOutput>;
  /** `journalctl --no-pager ARGS` inside (10 s timeout). Never rejects. */
  journalctl(...args: string[]): Promise<CommandOutput>;
  /**
   * Writes a unit (or a drop-in: `kubelet.service.d/override.conf`) into `unitsDir` and runs
   * `daemon-reload`. Rejects if the reload fails.
   */
  addUnit(name: string, contents: string): Promise<void>;
  /**
   * The unit's journal records, oldest first: its own output and what systemd logged about it
   * (`journalctl -u`). Rejects if journalctl fails.
   */
  unitEvents(unit: string): Promise<UnitEvent[]>;
  /**
   * Ends the namespace: `systemctl poweroff` inside, bounded (3 s), then SIGKILL of its whole cgroup;
   * removes its cgroup and directories. Idempotent; never rejects.
   */
  stop(): Promise<void>;
}

export interface StartSystemdNsOptions {
  /** Unit files by name (`kubelet.service`, drop-ins as `kubelet.service.d/x.conf`). */
  units?: Record<string, string>;
  /**
   * Units the boot target pulls in (`Wants=`). Default: every non-template `.service`, `.socket`,
   * `.timer` and `.path` unit in `units`. Pass `[]` to boot with nothing of yours running.
   */
  start?: string[];
  /** A readable part of the unique name (letters, digits, `-`). */
  name?: string;
  /** Default 10 s; the namespace normally boots in well under 1 s. */
  bootTimeoutMs?: number;
  /** When given, `stop()` is registered with `t.teardown` before the namespace boots. */
  t?: { teardown(fn: () => unknown): void };
}

/** The units copied from the distribution so that the namespace's systemd can boot, log and shut down. */
export const COPIED_UNITS = [
  'systemd-journald.service',
  'systemd-journald.socket',
  'sysinit.target',
  'basic.target',
  'sockets.target',
  'shutdown.target',
  'umount.target',
  'final.target',
  'poweroff.target',
  'systemd-poweroff.service',
  'reboot.target',
  'systemd-reboot.service',
  'halt.target',
  'systemd-halt.service',
] as const;

/** The target the namespace boots into (never multi-user.target: TESTING.md's DANGER note). */
export const BOOT_TARGET = 'nodemedic-ns.target';

const SYSTEM_UNIT_DIR = '/lib/systemd/system';
const SYSTEMD = '/lib/systemd/systemd';
const HELPERS = join(dirname(fileURLToPath(import.meta.url)), 'systemd');
const NAME_PREFIX = 'nodemedic-ns-';
const COMMAND_TIMEOUT_MS = 10_000;
const POWEROFF_WAIT_MS = 3_000;
const UNIT_NAME = /^[A-Za-z0-9_.@:][A-Za-z0-9_.@:-]*\.(service|socket|target|timer|path|mount|slice|scope)$/;
const DROPIN_NAME = /^([A-Za-z0-9_.@:][A-Za-z0-9_.@:-]*\.(service|socket|target|timer|path|mount|slice|scope))\.d\/[A-Za-z0-9_.-]+\.conf$/;

/** journald: volatile, everything kept (tests count lines), nothing forwarded to the host's consoles or kmsg. */
const JOURNALD_CONF = `[Journal]
Storage=volatile
RateLimitIntervalSec=0
RateLimitBurst=0
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
`;

/** PID 1: quiet console, and a bounded stop so that a unit ignoring SIGTERM cannot stall a test's poweroff. */
const SYSTEM_CONF = `[Manager]
ShowStatus=no
DefaultTimeoutStartSec=20s
DefaultTimeoutStopSec=3s
`;

/** Commands the harness runs (util-linux and systemd). */
export const NS_TOOLS = ['script', 'unshare', 'nsenter', 'systemctl', 'journalctl'] as const;

let seq = 0;

/** The host's cgroup2 mount: `/sys/fs/cgroup/unified` on a hybrid host, `/sys/fs/cgroup` on a unified one. */
function cgroup2Root(): string | undefined {
  let mountinfo: string;
  try {
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  const points = mountinfo
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[f.indexOf('-') + 1] === 'cgroup2')
    .map((f) => f[4] ?? '');
  return ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((p) => points.includes(p));
}

/** Why a systemd namespace cannot run here, or undefined when it can. */
export async function systemdNsAvailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `a systemd namespace needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'a systemd namespace needs root (unshare, mount, cgroups)';
  const path = (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter(Boolean);
  for (const tool of NS_TOOLS) {
    const found = await Promise.all(path.map((dir) => access(join(dir, tool), fsConstants.X_OK).then(() => true, () => false)));
    if (!found.includes(true)) return `a systemd namespace needs ${tool}, not installed (util-linux / systemd packages)`;
  }
  for (const file of [SYSTEMD, '/lib/systemd/systemd-journald', ...COPIED_UNITS.map((u) => join(SYSTEM_UNIT_DIR, u))]) {
    try {
      await access(file, fsConstants.R_OK);
    } catch {
      return `a systemd namespace needs ${file}, missing (install Debian's systemd package)`;
    }
  }
  if (!cgroup2Root()) return 'a systemd namespace needs a cgroup2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup';
  if (tmpdir().includes(':')) return `the temporary directory ${tmpdir()} contains ':', which SYSTEMD_UNIT_PATH cannot hold`;
  return undefined;
}

/** The part of a tap test that `requireComponent` uses. */
type Tap = Parameters<typeof requireComponent>[0];

/**
 * Like `requireComponent` (which it calls for the tools): true when a systemd namespace can run
 * here; otherwise skips the test (naming `npm run test:setup`), or fails it when integration tests
 * are required (CI).
 */
export async function requireSystemdNs(t: Tap): Promise<boolean> {
  if (!(await requireComponent(t, 'systemd namespace', NS_TOOLS))) return false;
  const why = await systemdNsAvailable();
  if (!why) return true;
  const msg = `${why}; run \`npm run test:setup\` (as root) to install what is missing`;
  if (integrationRequired) t.fail(`${msg} (CI=true or NODEMEDIC_REQUIRE_INTEGRATION=1: absent components fail)`);
  else t.skip(msg);
  return false;
}

/** Polls `check` every `intervalMs` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs: number; intervalMs?: number; what: string },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${why}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function checkUnitName(name: string): void {
  if (!UNIT_NAME.test(name) && !DROPIN_NAME.test(name)) {
    throw new Error(
      `invalid unit file name ${JSON.stringify(name)}: expected NAME.service (or .socket, .target, ...) or NAME.service.d/FILE.conf`,
    );
  }
  if ((COPIED_UNITS as readonly string[]).includes(name) || name === BOOT_TARGET) {
    throw new Error(`unit ${name} is provided by the harness and cannot be replaced`);
  }
}

async function writeUnit(unitsDir: string, name: string, contents: string): Promise<void> {
  checkUnitName(name);
  const path = join(unitsDir, name);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, contents);
}

async function exec(argv: string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<CommandOutput> {
  const [file, ...args] = argv as [string, ...string[]];
  const r = await execa(file, args, {
    reject: false,
    stdin: 'ignore',
    timeout: timeoutMs,
    forceKillAfterDelay: 1000,
    env: { LC_ALL: 'C', SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0' },
  });
  return {
    exitCode: r.timedOut ? undefined : r.exitCode,
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: typeof r.stderr === 'string' ? r.stderr : (r.shortMessage ?? ''),
  };
}

/** The host PID whose innermost PID is 1, among the processes of the namespace's cgroup tree. */
async function findInit(cgroup: string): Promise<number | undefined> {
  for (const dir of [cgroup, join(cgroup, 'init.scope')]) {
    let procs: string;
    try {
      procs = await readFile(join(dir, 'cgroup.procs'), 'utf8');
    } catch {
      continue;
    }
    for (const pid of procs.split('\n').filter(Boolean)) {
      try {
        const status = await readFile(`/proc/${pid}/status`, 'utf8');
        const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/);
        if (nspid && nspid.length === 2 && nspid[1] === '1') return Number(pid);
      } catch {
        // The process exited between the two reads.
      }
    }
  }
  return undefined;
}

async function removeCgroup(cgroup: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await rmTree(cgroup);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      if (Date.now() >= deadline) throw e;
      await sleep(50);
    }
  }
}

/** rmdir depth-first: cgroupfs directories cannot be removed recursively with rm. */
async function rmTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries) if (e.isDirectory()) await rmTree(join(dir, e.name));
  await rmdir(dir);
}

function bootTargetUnit(start: readonly string[]): string {
  return [
    '[Unit]',
    'Description=nodemedic test namespace',
    'Requires=basic.target',
    'After=basic.target',
    ...(start.length ? [`Wants=${start.join(' ')}`] : []),
    'AllowIsolate=yes',
    '',
  ].join('\n');
}

/** Boots a systemd namespace; resolves once `systemctl is-system-running` says `running` or `degraded`. */
export async function startSystemdNs(opts: StartSystemdNsOptions = {}): Promise<SystemdNs> {
  const why = await systemdNsAvailable();
  if (why) throw new Error(`cannot start a systemd namespace: ${why}`);
  const units = opts.units ?? {};
  for (const name of Object.keys(units)) checkUnitName(name);
  const start =
    opts.start ?? Object.keys(units).filter((n) => /\.(service|socket|timer|path)$/.test(n) && !n.includes('@'));
  for (const name of start) {
    if (!UNIT_NAME.test(name)) throw new Error(`invalid unit name in start: ${JSON.stringify(name)}`);
  }
  const label = (opts.name ?? 'test').replace(/[^A-Za-z0-9-]/g, '-').slice(0, 40);
  const name = `${NAME_PREFIX}${label}-${process.pid}-${++seq}`;
  const cgroupRoot = cgroup2Root() as string;
  const cgroup = join(cgroupRoot, name);
  const base = await mkdtemp(join(tmpdir(), `${name}-`));
  const unitsDir = join(base, 'units');
  const consoleLog = join(base, 'console.log');

  // Detached, so that it outlives us; its stdin is the pipe whose closing tells it we are gone
  // (or, below, that setup failed).
  const watchdog = spawn('/bin/sh', [join(HELPERS, 'watchdog.sh'), cgroup, base], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.unref();
  (watchdog.stdin as unknown as Socket | null)?.unref();

  try {
    await mkdir(unitsDir);
    for (const u of COPIED_UNITS) await copyFile(join(SYSTEM_UNIT_DIR, u), join(unitsDir, u));
    // The distribution enables journald through .wants symlinks; recreate only those two.
    await mkdir(join(unitsDir, 'sysinit.target.wants'));
    await mkdir(join(unitsDir, 'sockets.target.wants'));
    await symlink('../systemd-journald.service', join(unitsDir, 'sysinit.target.wants', 'systemd-journald.service'));
    await symlink('../systemd-journald.socket', join(unitsDir, 'sockets.target.wants', 'systemd-journald.socket'));
    await writeFile(join(unitsDir, BOOT_TARGET), bootTargetUnit(start));
    for (const [n, contents] of Object.entries(units)) await writeUnit(unitsDir, n, contents);
    await writeFile(join(base, 'journald.conf'), JOURNALD_CONF);
    await writeFile(join(base, 'system.conf'), SYSTEM_CONF);
    await mkdir(cgroup);
  } catch (e) {
    await rm(base, { recursive: true, force: true });
    await rmdir(cgroup).catch(() => undefined);
    watchdog.stdin?.end();
    throw e;
  }

  let stopping: Promise<void> | undefined;
  let initPid: number | undefined;
  let ended = false;

  // script(1) provides the pty for /dev/console. Its -c takes a shell command string, so it gets a
  // fixed one (a quoted path) and every parameter travels in the environment.
  const console_ = spawn('script', ['-qfec', `/bin/sh '${join(HELPERS, 'enter.sh').replace(/'/g, `'\\''`)}'`, consoleLog], {
    stdio: 'ignore',
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      SHELL: '/bin/sh',
      NM_NS_CGROUP: cgroup,
      NM_NS_BASE: base,
      NM_NS_NAME: name,
    },
  });
  // A test that forgets stop() must not keep its process alive; the watchdog cleans up after it.
  console_.unref();
  const exited = new Promise<NsExit>((resolve) => {
    const done = (code: number | null, signal: NodeJS.Signals | null): void => {
      ended = true;
      const how =
        code === 128 + 1 ? 'reboot' : code === 128 + 2 ? 'poweroff' : code === 128 + 9 || signal === 'SIGKILL' ? 'killed' : 'other';
      resolve({ how, exitCode: code });
    };
    console_.once('exit', done);
    console_.once('error', () => done(null, null));
  });
  // Every exit path below resolves `exited`; keep an unobserved rejection from ever existing.
  void exited.then(() => undefined);

  const cleanup = async (): Promise<void> => {
    if (initPid !== undefined && !ended) {
      await exec(['nsenter', '-t', String(initPid), '-m', '-p', '--', 'systemctl', 'poweroff', '--no-block'], 5000);
      await Promise.race([exited, sleep(POWEROFF_WAIT_MS)]);
    }
    if (!ended) {
      try {
        await writeFile(join(cgroup, 'cgroup.kill'), '1');
      } catch {
        // Already gone.
      }
      await Promise.race([exited, sleep(3000)]);
      if (!ended) console_.kill('SIGKILL');
    }
    try {
      await removeCgroup(cgroup, 5000);
    } finally {
      await rm(base, { recursive: true, force: true });
      watchdog.stdin?.end();
    }
  };
  const stop = (): Promise<void> => {
    stopping ??= cleanup().catch(() => {
      // The watchdog retries when our stdin pipe closes; nothing more to do here.
    });
    return stopping;
  };
  opts.t?.teardown(stop);

  try {
    const bootTimeoutMs = opts.bootTimeoutMs ?? 10_000;
    const deadline = Date.now() + bootTimeoutMs;
    const bootFailed = async (what: string): Promise<never> => {
      const log = existsSync(consoleLog) ? (await readFile(consoleLog, 'utf8')).slice(-3000) : '(no console output)';
      throw new Error(`systemd namespace ${name}: ${what}\n--- console ---\n${log}`);
    };
    initPid = await waitFor(
      async () => {
        if (ended) await bootFailed(`ended during boot (${JSON.stringify(await exited)})`);
        return findInit(cgroup);
      },
      { timeoutMs: bootTimeoutMs, intervalMs: 20, what: 'the namespace PID 1' },
    ).catch((e: Error) => bootFailed(e.message));
    const pid = initPid;
    const prefix = ['nsenter', '-t', String(pid), '-m', '-p', '--'];
    let state = '';
    await waitFor(
      async () => {
        if (ended) await bootFailed(`ended during boot (${JSON.stringify(await exited)})`);
        const r = await exec([...prefix, 'systemctl', 'is-system-running'], 5000);
        state = r.stdout.trim();
        return state === 'running' || state === 'degraded';
      },
      { timeoutMs: Math.max(0, deadline - Date.now()), intervalMs: 25, what: 'systemctl is-system-running' },
    ).catch((e: Error) => bootFailed(`${e.message}; last state ${JSON.stringify(state)}`));

    const systemctl = (...args: string[]): Promise<CommandOutput> => exec([...prefix, 'systemctl', ...args]);
    const journalctl = (...args: string[]): Promise<CommandOutput> => exec([...prefix, 'journalctl', '--no-pager', ...args]);
    return {
      name,
      cgroup,
      pid,
      prefix,
      unitsDir,
      journalDir: `/proc/${pid}/root/run/log/journal`,
      consoleLog,
      // Awaiting the end keeps the process alive until it comes; otherwise the namespace does not.
      get exited() {
        console_.ref();
        return exited;
      },
      running: () => !ended,
      systemctl,
      journalctl,
      async addUnit(unitName, contents) {
        await writeUnit(unitsDir, unitName, contents);
        const r = await systemctl('daemon-reload');
        if (r.exitCode !== 0) throw new Error(`daemon-reload after adding ${unitName} failed: ${r.stderr.trim()}`);
      },
      async unitEvents(unit) {
        const r = await journalctl('-u', unit, '-o', 'json');
        if (r.exitCode !== 0) throw new Error(`journalctl -u ${unit} failed (${r.exitCode}): ${r.stderr.trim()}`);
        return r.stdout
          .split('\n')
          .filter(Boolean)
          .map((line) => toUnitEvent(JSON.parse(line) as Record<string, unknown>));
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

function field(rec: Record<string, unknown>, key: string): string | undefined {
  const v = rec[key];
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((b) => typeof b === 'number')) return Buffer.from(v as number[]).toString('utf8');
  return undefined;
}

function toUnitEvent(rec: Record<string, unknown>): UnitEvent {
  const ev: UnitEvent = {
    message: field(rec, 'MESSAGE') ?? '',
    realtimeUs: Number(field(rec, '__REALTIME_TIMESTAMP')),
    fromSystemd: field(rec, '_PID') === '1',
  };
  const jobType = field(rec, 'JOB_TYPE');
  const result = field(rec, 'JOB_RESULT');
  const messageId = field(rec, 'MESSAGE_ID');
  const pid = field(rec, '_PID');
  if (jobType !== undefined) ev.jobType = jobType;
  if (result !== undefined) ev.result = result;
  if (messageId !== undefined) ev.messageId = messageId;
  if (pid !== undefined) ev.pid = Number(pid);
  return ev;
}
