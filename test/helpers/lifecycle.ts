/**
 * A real `nodemedic run` process for lifecycle tests: every stdout line is kept and must be JSON
 * (`nonJson()` lists those that are not), log records can be awaited, signals sent, and its exit
 * timed. Its config and state live in a temp dir the test removes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { fileURLToPath } from 'node:url';
import { freePort } from './agent.js';
import { untapped } from './cli.js';
import { CHECK_DEFINITIONS } from '../../checks/index.js';

/** The built executable (package.json `bin`): it catches signals before it loads the program. */
export const MAIN = fileURLToPath(new URL('../../dist/agent/main.js', import.meta.url));

export { freePort };

export type LogRecord = Record<string, unknown> & { msg?: string; level?: number };

/** Every check off; a test turns on the ones it needs. */
export function allChecksOff(): Record<string, Record<string, unknown>> {
  // From the registry, so a check added later is off here too.
  return Object.fromEntries(CHECK_DEFINITIONS.map((d) => [d.id, { enabled: false }]));
}

export class RunProcess {
  readonly records: LogRecord[] = [];
  /** stdout lines that are not JSON objects. */
  readonly nonJsonLines: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.on('data', (b: Buffer) => {
      buf += b.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const rec = JSON.parse(line) as unknown;
          if (rec && typeof rec === 'object' && !Array.isArray(rec)) this.records.push(rec as LogRecord);
          else this.nonJsonLines.push(line);
        } catch {
          this.nonJsonLines.push(line);
        }
      }
      for (const w of [...this.waiters]) w();
    });
    child.stderr!.on('data', (b: Buffer) => {
      this.stderr += b.toString('utf8');
      for (const w of [...this.waiters]) w();
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        resolve({ code, signal, at: performance.now() });
        for (const w of [...this.waiters]) w();
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Records whose message matches. */
  logs(re: RegExp): LogRecord[] {
    return this.records.filter((r) => typeof r.msg === 'string' && re.test(r.msg));
  }

  /** Resolves with the `n`th record (1-based) whose message matches; rejects on exit or after `timeoutMs`. */
  waitLog(re: RegExp, timeoutMs = 90_000, n = 1): Promise<LogRecord> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hits = this.logs(re);
        if (hits.length >= n) {
          done();
          resolve(hits[n - 1]!);
        } else if (!this.alive) {
          done();
          reject(new Error(`agent exited (code ${this.child.exitCode}, signal ${this.child.signalCode}) before logging ${re}:\n${this.dump()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no log matching ${re} within ${timeoutMs} ms:\n${this.dump()}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  dump(): string {
    return [...this.records.slice(-40).map((r) => JSON.stringify(r).slice(0, 400)), ...this.nonJsonLines.slice(-10), this.stderr.slice(-2000)].join('\n');
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) process.kill(this.pid, sig);
  }

  /** SIGTERM (if alive), then SIGKILL after `killAfterMs`. */
  async stop(killAfterMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) {
      this.signal('SIGTERM');
      const timer = setTimeout(() => this.signal('SIGKILL'), killAfterMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }
}

export interface AgentDir {
  dir: string;
  configPath: string;
  stateDir: string;
  port: number;
  url: string;
  /** The config as written (YAML); `write` replaces it. */
  config: Record<string, unknown>;
  write(config: Record<string, unknown>): void;
  spawn(opts?: { env?: NodeJS.ProcessEnv }): RunProcess;
}

type Tap = { teardown(fn: () => unknown): void };

/** A temp dir with a config (loopback port, 1 s schedule, every check off unless given) and a state dir. */
export async function agentDir(t: Tap, config: Record<string, unknown> = {}): Promise<AgentDir> {
  const dir = mkdtempSync(join(tmpdir(), 'nm-lifecycle-'));
  const port = await freePort();
  const stateDir = join(dir, 'state');
  const configPath = join(dir, 'config.yaml');
  const procs: RunProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) await p.stop(5000);
    rmSync(dir, { recursive: true, force: true });
  });
  const base = {
    nodeName: 'lifecycle-node',
    http: { listen: `127.0.0.1:${port}` },
    stateDir,
    schedule: '*/1 * * * * *',
    log: { level: 'debug' },
    remediation: { mode: 'dry-run' },
  };
  const a: AgentDir = {
    dir,
    configPath,
    stateDir,
    port,
    url: `http://127.0.0.1:${port}`,
    config: {},
    write(c) {
      a.config = c;
      writeFileSync(configPath, stringify(c));
    },
    spawn(opts = {}) {
      // Without tap's hooks (`untapped`: env execs node, same PID): tap's process-info hook preloads
      // itself into every child with signal-exit, which re-raises a signal that nothing else handles
      // yet. The agent must run as it does on a node.
      const [cmd, ...args] = untapped([process.execPath, MAIN, 'run', '--config', configPath]);
      const child = spawn(cmd!, args, {
        env: { ...process.env, NODEMEDIC_CONFIG: '', ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const p = new RunProcess(child);
      procs.push(p);
      return p;
    },
  };
  a.write({ ...base, ...config, checks: { ...allChecksOff(), ...((config.checks as Record<string, unknown>) ?? {}) } });
  return a;
}

/** GET a JSON document from a running agent. */
export async function getJson<T = Record<string, any>>(url: string, timeoutMs = 5000): Promise<T> {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return (await r.json()) as T;
}

/** Process ids of every descendant of `pid` (children, their children, ...), from /proc. */
export function descendants(pid: number): { pid: number; comm: string }[] {
  const parent = new Map<number, number>();
  const comm = new Map<number, string>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
      const close = stat.lastIndexOf(')');
      comm.set(Number(name), stat.slice(stat.indexOf('(') + 1, close));
      parent.set(Number(name), Number(stat.slice(close + 2).split(' ')[1]));
    } catch {
      // exited while we looked
    }
  }
  const out: { pid: number; comm: string }[] = [];
  for (const [p] of parent) {
    for (let q = parent.get(p); q !== undefined && q > 1; q = parent.get(q)) {
      if (q === pid) {
        out.push({ pid: p, comm: comm.get(p) ?? '' });
        break;
      }
    }
  }
  return out;
}

/**
 * Whether `pid` catches `signal` now (its SigCgt mask in /proc/<pid>/status), once it runs
 * `program` (before its exec, a just-forked child still shows its parent's handlers).
 */
export function catches(pid: number, signal: number, program: string): boolean {
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(program)) return false;
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return !!m && (BigInt(`0x${m[1]}`) & (1n << BigInt(signal - 1))) !== 0n;
  } catch {
    return false;
  }
}
