/**
 * Shared plumbing for the benchmarks: statistics, /proc readers, HTTP polling and the report types.
 * Used by the compiled steps (bench/*.ts, run from dist/bench/) and by the steps that need the test
 * harnesses (bench/*.mts, run under tap's TypeScript loader), so it imports nothing from test/.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The step ids, in the order `npm run bench` runs them (also the names `--only` accepts). */
export const STEP_IDS = ['footprint', 'startup', 'pleg-throughput', 'pleg-latency', 'docker-hang', 'metrics-load', 'drain', 'api-load', 'soak-hostile', 'footprint-units', 'soak'] as const;
export type StepId = (typeof STEP_IDS)[number];

/** One goal of issue 7, judged against a figure of this run. */
export interface Goal {
  /** What is promised, e.g. "RSS at most 1.6x bare Node.js". */
  goal: string;
  /** The figure it was judged on, with its unit. */
  measured: string;
  /** undefined: could not be judged (not measured). */
  met: boolean | undefined;
  /** How far inside or outside the goal, e.g. "0.21x under" or "missed by 38 %". */
  margin: string;
  /** For a missed goal: what would close it. */
  close?: string;
}

/** What a step hands to the report. */
export interface StepReport {
  id: StepId;
  title: string;
  /** False when the step could not measure (its `why` says why); its goals are then `met: undefined`. */
  measured: boolean;
  why?: string;
  /** Markdown: method, table of figures (medians, with the individual runs), notes. */
  body: string;
  goals: Goal[];
  /** Raw figures, for results.json. */
  data?: unknown;
}

export interface StepOptions {
  /** Fewer runs and shorter windows: a smoke run of the benchmark, its figures not for the record. */
  quick: boolean;
  /** Progress on stderr. */
  log(msg: string): void;
}

/** The repository root (bench/lib.ts and dist/bench/lib.js both find it by walking up to package.json). */
export const REPO_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'nodemedic') return dir;
    } catch {
      // not here
    }
    dir = dirname(dir);
  }
  throw new Error(`cannot find the nodemedic package root above ${fileURLToPath(import.meta.url)}`);
})();

/** The built CLI, as `npm run bench` builds it first. */
export const CLI = resolve(REPO_ROOT, 'dist/agent/cli.js');
/** The corpus in the repository (test/fixtures/corpus; provenance in its SOURCES.md). */
export const CORPUS = resolve(REPO_ROOT, 'test/fixtures/corpus');

/**
 * The V8 flags the agent runs with in production: the NODE_OPTIONS that systemd-units/nodemedic.service
 * sets (deploy/Containerfile sets the same), so that benchmarks measure the agent as it ships.
 */
export const UNIT_NODE_OPTIONS = (() => {
  const m = /^Environment="NODE_OPTIONS=([^"]*)"$/m.exec(readFileSync(resolve(REPO_ROOT, 'systemd-units/nodemedic.service'), 'utf8'));
  if (!m) throw new Error('systemd-units/nodemedic.service sets no NODE_OPTIONS');
  return m[1]!;
})();

/** This process's environment for a child node, with `nodeOptions` as its NODE_OPTIONS (none if undefined) instead of ours. */
export function envWithNodeOptions(nodeOptions: string | undefined): NodeJS.ProcessEnv {
  const { NODE_OPTIONS: _, ...env } = process.env;
  return nodeOptions === undefined ? env : { ...env, NODE_OPTIONS: nodeOptions };
}

// ---------------------------------------------------------------------------------------------
// statistics

/** Median (mean of the two middle values for an even count). NaN for no values. */
export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100): with n samples, p99 is the max unless n >= 100. */
export function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

export function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

/** Rounds for display: 3 significant digits, no exponent for ordinary magnitudes. */
export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const mag = Math.floor(Math.log10(Math.abs(x)));
  const decimals = Math.max(0, digits - 1 - mag);
  return x.toLocaleString('en-US', { maximumFractionDigits: decimals, minimumFractionDigits: 0 });
}

/** `a, b, c` of individual runs, for the tables ("median of: ..."). */
export function runs(xs: readonly number[], digits = 3): string {
  return xs.map((x) => fmt(x, digits)).join(', ');
}

/** A markdown table. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `| ${headers.map(esc).join(' | ')} |`,
    `|${headers.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** "0.62x under the 1.6x goal" style margins: how far a value is from a limit it must stay below. */
export function marginBelow(value: number, limit: number, unit: string): string {
  const d = limit - value;
  const pct = (Math.abs(d) / limit) * 100;
  return d >= 0 ? `${fmt(d)}${unit} inside (${fmt(pct, 2)} % below the limit)` : `missed by ${fmt(-d)}${unit} (${fmt(pct, 2)} % over the limit)`;
}

/** Margin for a value that must stay at or above a floor. */
export function marginAbove(value: number, floor: number, unit: string): string {
  const d = value - floor;
  const pct = (Math.abs(d) / floor) * 100;
  return d >= 0 ? `${fmt(d)}${unit} inside (${fmt(pct, 2)} % above the floor)` : `missed by ${fmt(-d)}${unit} (${fmt(pct, 2)} % under the floor)`;
}

// ---------------------------------------------------------------------------------------------
// /proc

/** Clock ticks per second for /proc/<pid>/stat times (`getconf CLK_TCK`, 100 on Linux/x86 and arm64). */
export const CLK_TCK = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim());
    if (Number.isInteger(n) && n > 0) return n;
  } catch {
    // fall through
  }
  return 100;
})();

/** The CPU fields of /proc/<pid>/stat, in clock ticks. */
export interface ProcCpu {
  ppid: number;
  /** utime + stime of the process itself. */
  own: number;
  /** cutime + cstime: children it has waited for. */
  reaped: number;
}

/** Parses /proc/<pid>/stat; undefined when the process is gone. */
export function readProcCpu(pid: number): ProcCpu | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: fields start after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state); utime is field 14 -> f[11].
  const n = (i: number) => Number(f[i]);
  return { ppid: n(1), own: n(11) + n(12), reaped: n(13) + n(14) };
}

/** VmRSS and VmHWM of /proc/<pid>/status in KiB; undefined when the process is gone. */
export function readRss(pid: number): { rssKiB: number; hwmKiB: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(text);
  const hwm = /^VmHWM:\s+(\d+) kB/m.exec(text);
  if (!rss) return undefined;
  return { rssKiB: Number(rss[1]), hwmKiB: Number(hwm?.[1] ?? rss[1]) };
}

/** Live descendants of `pid` (children, grandchildren, ...), from the ppid fields of /proc. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const c = readProcCpu(Number(name));
    if (!c) continue;
    const list = children.get(c.ppid) ?? [];
    list.push(Number(name));
    children.set(c.ppid, list);
  }
  const out: number[] = [];
  const stack = [...(children.get(pid) ?? [])];
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

/**
 * CPU ticks of a process tree: the process's own time, its reaped children's, and every live
 * descendant's own and reaped time. The difference of two readings is what the tree spent in between
 * (a child alive at the first reading and reaped before the second moves from the live sum into its
 * parent's `reaped`, so it is neither lost nor counted twice).
 */
export function treeCpuTicks(pid: number): { own: number; tree: number; liveChildren: number } | undefined {
  const root = readProcCpu(pid);
  if (!root) return undefined;
  let tree = root.own + root.reaped;
  const kids = descendants(pid);
  for (const k of kids) {
    const c = readProcCpu(k);
    if (c) tree += c.own + c.reaped;
  }
  return { own: root.own, tree, liveChildren: kids.length };
}

/** RSS of a process's live descendants, KiB (e.g. a long-running journalctl). */
export function descendantsRssKiB(pid: number): number {
  return descendants(pid).reduce((sum, p) => sum + (readRss(p)?.rssKiB ?? 0), 0);
}

// ---------------------------------------------------------------------------------------------
// processes and HTTP

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A free loopback port (closed again before use, so a small race with other processes remains). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolvePort(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** One GET with a hard timeout; resolves with the status and body, rejects on connection errors. */
export function httpGet(url: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const req = request(url, { method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Polls `url` every `intervalMs` until it answers 200; resolves with performance.now() of the
 * answer. Rejects when `child` exits first or `timeoutMs` passes.
 */
export async function waitFor200(url: string, opts: { timeoutMs: number; intervalMs: number; child?: ChildProcess; what: string }): Promise<number> {
  const deadline = performance.now() + opts.timeoutMs;
  for (;;) {
    if (opts.child && (opts.child.exitCode !== null || opts.child.signalCode !== null)) {
      throw new Error(`${opts.what} exited (${opts.child.exitCode ?? opts.child.signalCode}) before ${url} answered 200`);
    }
    try {
      const r = await httpGet(url, 1000);
      if (r.status === 200) return performance.now();
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) throw new Error(`${opts.what}: ${url} did not answer 200 within ${opts.timeoutMs} ms`);
    await sleep(opts.intervalMs);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** The 1-minute load average now, for the notes (a noisy machine shows in it). */
export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------------------------
// harness steps (bench/*.mts, run by run.ts in a child process)

/** Cleanups a harness step registers; run on SIGTERM/SIGINT (run.ts's time limit) as well as at the end. */
const cleanups: (() => Promise<unknown> | unknown)[] = [];

/** Registers a cleanup (stop a daemon, remove a directory); they run last-registered first. */
export function onCleanup(fn: () => Promise<unknown> | unknown): void {
  cleanups.push(fn);
}

async function runCleanups(log: (m: string) => void): Promise<void> {
  while (cleanups.length) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (e) {
      log(`cleanup failed: ${(e as Error).message}`);
    }
  }
}

/**
 * The main of a harness step script: `--result FILE --only a,b [--quick]`. Runs `steps` (those asked
 * for), writes their reports as JSON to FILE, and always runs the registered cleanups, also when
 * stopped by SIGTERM/SIGINT.
 */
export async function harnessMain(steps: Partial<Record<StepId, (o: StepOptions) => Promise<StepReport>>>): Promise<void> {
  const { parseArgs } = await import('node:util');
  const { writeFileSync } = await import('node:fs');
  const { values } = parseArgs({ options: { result: { type: 'string' }, only: { type: 'string' }, quick: { type: 'boolean', default: false } } });
  if (!values.result) throw new Error('--result FILE is required');
  const ids = (values.only ?? Object.keys(steps).join(',')).split(',').filter(Boolean) as StepId[];
  const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
  let stopping = false;
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      if (stopping) return;
      stopping = true;
      log(`${sig}: cleaning up`);
      void runCleanups(log).finally(() => process.exit(1));
    });
  }
  const reports: StepReport[] = [];
  try {
    for (const id of ids) {
      const step = steps[id];
      if (!step) throw new Error(`this script has no step ${id}`);
      try {
        reports.push(await step({ quick: !!values.quick, log }));
      } catch (e) {
        // One step failing must not cost the others their figures; run.ts fills in the title and goals.
        log(`${id}: failed: ${(e as Error).stack ?? String(e)}`);
        reports.push({ id, title: id, measured: false, why: `the step failed: ${(e as Error).message}`, body: '', goals: [] });
      }
      writeFileSync(values.result, JSON.stringify(reports));
    }
  } finally {
    await runCleanups(log);
  }
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// CPU profiles (`node --cpu-prof`)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** Groups for `summarizeProfile`: the agent's own compiled files, and npm packages. */
export const FIRST_PARTY_FILE = /\/dist\/((?:checks|agent|remediations)\/[^/]+\.js)$/;
export const PACKAGE = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//;

/** Where a profile's busy time went. Times in ms; group entries are inclusive and sorted, largest first. */
export interface ProfileSummary {
  totalS: number;
  busyMs: number;
  /** Inclusive in child_process.spawn (the synchronous part of starting a command). */
  spawnMs: number;
  gcMs: number;
  groups: Record<string, [string, number][]>;
  topSelf: [string, number][];
}

/**
 * Summarizes the samples of a .cpuprofile between `fromMs` and `toMs` after its start. Each group
 * regex's first capture, taken from every frame of a sample's stack, gets that sample's time once.
 */
export function summarizeProfile(file: string, opts: { fromMs?: number; toMs?: number; groups?: Record<string, RegExp> } = {}): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const short = (n: ProfileNode) => {
    const url = n.callFrame.url.replace(/^file:\/\//, '').replace(/.*\/node_modules\//, '').replace(`${REPO_ROOT}/`, '');
    return `${n.callFrame.functionName || '(anonymous)'} ${url}${url ? `:${n.callFrame.lineNumber + 1}` : ''}`.trim();
  };
  const from = (opts.fromMs ?? 0) * 1000;
  const to = (opts.toMs ?? Infinity) * 1000;
  const groups = Object.entries(opts.groups ?? {});
  const acc = new Map<string, Map<string, number>>(groups.map(([g]) => [g, new Map()]));
  let total = 0;
  let idle = 0;
  let spawnUs = 0;
  let gcUs = 0;
  let at = 0;
  const self = new Map<string, number>();
  p.samples.forEach((id, i) => {
    const d = p.timeDeltas[i] ?? 0;
    at += d;
    if (at < from || at > to) return;
    total += d;
    const n = byId.get(id);
    if (!n) return;
    if (n.callFrame.functionName === '(idle)') {
      idle += d;
      return;
    }
    if (n.callFrame.functionName === '(garbage collector)') gcUs += d;
    self.set(short(n), (self.get(short(n)) ?? 0) + d);
    let inSpawn = false;
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (f.functionName === 'spawn' && f.url === 'node:child_process') inSpawn = true;
      for (const [g, re] of groups) {
        const m = re.exec(f.url);
        const key = m?.[1];
        if (key === undefined || seen.has(`${g}\0${key}`)) continue;
        seen.add(`${g}\0${key}`);
        const map = acc.get(g)!;
        map.set(key, (map.get(key) ?? 0) + d);
      }
    }
    if (inSpawn) spawnUs += d;
  });
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / 1000] as [string, number]);
  return {
    totalS: total / 1e6,
    busyMs: (total - idle) / 1000,
    spawnMs: spawnUs / 1000,
    gcMs: gcUs / 1000,
    groups: Object.fromEntries([...acc].map(([g, m]) => [g, sorted(m).slice(0, 10)])),
    topSelf: sorted(self).slice(0, 6),
  };
}
