import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { execa } from 'execa';

/**
 * Shared plumbing for test daemons (dockerd, containerd): spawn with a log file, bounded ready
 * waits, and a teardown that cannot leave anything behind: SIGCONT before any kill (a stopped
 * process ignores SIGTERM until continued), SIGKILL after a grace period, then every process that
 * still refers to the daemon's private directory, then mounts under it, then the directory.
 */

const live = new Set<number>();
let exitHookInstalled = false;

/** Last resort if the test process exits without its teardown (e.g. an uncaught exception). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of live) {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export interface SpawnedDaemon {
  child: ChildProcess;
  pid: number;
  /** Resolves with the exit code/signal when the process ends. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
}

export function spawnDaemon(argv: readonly string[], logFile: string): SpawnedDaemon {
  installExitHook();
  const [file, ...args] = argv as [string, ...string[]];
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(file, args, { stdio: ['ignore', fd, fd], env: { ...process.env, LC_ALL: 'C' } });
  } finally {
    closeSync(fd);
  }
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      if (child.pid) live.delete(child.pid);
      resolve({ code, signal });
    });
    child.once('error', () => {
      done = true;
      resolve({ code: null, signal: null });
    });
  });
  if (!child.pid) throw new Error(`could not start ${file}`);
  live.add(child.pid);
  return { child, pid: child.pid, exited, hasExited: () => done };
}

export async function logTail(logFile: string, lines = 30): Promise<string> {
  try {
    return (await readFile(logFile, 'utf8')).split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls `ready()` until it is true, the daemon exits, or `timeoutMs` passes (then throws with the log). */
export async function waitReady(d: SpawnedDaemon, name: string, logFile: string, timeoutMs: number, ready: () => Promise<boolean>): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    if (d.hasExited()) throw new Error(`${name} exited during startup:\n${await logTail(logFile)}`);
    if (await ready()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} was not ready within ${timeoutMs} ms:\n${await logTail(logFile)}`);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * SIGSTOP, then wait (synchronously, at most 2 s) until every thread is really stopped: the signal is
 * only queued by kill(2), and a Go daemon's threads on another CPU can still answer a request that
 * arrives in the next few milliseconds (seen once in CI: a "hung" containerd answered in 19 ms).
 */
export function pause(pid: number): void {
  process.kill(pid, 'SIGSTOP');
  const deadline = Date.now() + 2000;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline) {
    let allStopped = true;
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        // The state follows the parenthesised command name (which may itself contain spaces or parens).
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        if (state !== 'T' && state !== 't') allStopped = false;
      }
    } catch {
      return; // gone: nothing left to answer anyway
    }
    if (allStopped) return;
    Atomics.wait(nap, 0, 0, 5);
  }
  throw new Error(`process ${pid} did not stop within 2 s of SIGSTOP`);
}

export function resume(pid: number): void {
  process.kill(pid, 'SIGCONT');
}

/** SIGCONT, SIGTERM, wait `graceMs`, SIGKILL, wait for the exit. */
export async function terminate(d: SpawnedDaemon, graceMs = 10_000): Promise<void> {
  if (d.hasExited()) return;
  signal(d.pid, 'SIGCONT');
  signal(d.pid, 'SIGTERM');
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
  if ((await Promise.race([d.exited, timer])) === 'timeout') {
    signal(d.pid, 'SIGKILL');
    await Promise.race([d.exited, new Promise((r) => setTimeout(r, 5000).unref())]);
  }
}

/** Pids of processes whose command line mentions `needle`, or whose cgroup path contains one of `cgroupIds`. */
export function findProcesses(needle: string, cgroupIds: readonly string[] = []): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes(needle)) {
        out.push(pid);
        continue;
      }
      if (cgroupIds.length) {
        const cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
        if (cgroupIds.some((id) => cg.includes(id))) out.push(pid);
      }
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** SIGCONT+SIGKILL every leftover process of the daemon (children, shims, container processes). */
export async function killLeftovers(needle: string, cgroupIds: readonly string[] = []): Promise<number[]> {
  const pids = findProcesses(needle, cgroupIds);
  for (const pid of pids) {
    signal(pid, 'SIGCONT');
    signal(pid, 'SIGKILL');
  }
  if (pids.length) await new Promise((r) => setTimeout(r, 200));
  return pids;
}

/** Unmounts everything mounted under `dir` (deepest first), then removes it. */
export async function removeDir(dir: string): Promise<void> {
  // Only directories the harnesses made themselves (mkdtemp with an `nm-` prefix).
  if (!/^\/.+\/nm-[^/]+$/.test(dir)) throw new Error(`refusing to remove ${dir}: not a harness directory`);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\040/g, ' '))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    await execa('umount', ['-l', m], { reject: false, timeout: 10_000, stdin: 'ignore' });
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}
