/**
 * Footprint: resident memory and CPU of `nodemedic run` (the default config; the 15 s default
 * schedule, and a 1 s schedule) against a bare Node.js process that only keeps a timer, the floor
 * for any agent written for Node.js. All replicas of all three kinds run side by side over the same
 * window, so machine noise hits them alike.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CLI,
  CLK_TCK,
  descendants,
  descendantsRssKiB,
  fmt,
  freePort,
  loadAverage,
  marginBelow,
  median,
  runs,
  readRss,
  REPO_ROOT,
  summarizeProfile,
  FIRST_PARTY_FILE,
  PACKAGE,
  type ProfileSummary,
  sleep,
  stopChild,
  table,
  treeCpuTicks,
  waitFor200,
  type Goal,
  type StepOptions,
  type StepReport,
} from './lib.js';

type Kind = 'bare' | 'agent-default' | 'agent-1s';

interface Replica {
  kind: Kind;
  child: ChildProcess;
  pid: number;
  dir: string;
  rssSamples: number[];
  childRssSamples: number[];
  cpu0?: { own: number; tree: number };
  cpuOwnPct?: number;
  cpuTreePct?: number;
  hwmKiB?: number;
  maxLiveChildren: number;
  /** performance.now() at spawn. */
  spawnedAt: number;
}

/** A bare Node.js process that keeps one timer: what any Node.js daemon costs before doing anything. */
const BARE_SCRIPT = 'setInterval(() => {}, 1000);';

async function startReplica(kind: Kind, profileDir?: string): Promise<Replica> {
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-footprint-'));
  let argv: string[];
  let url: string | undefined;
  if (kind === 'bare') {
    argv = ['-e', BARE_SCRIPT];
  } else {
    const port = await freePort();
    url = `http://127.0.0.1:${port}/healthz`;
    // The default config, changed only where a benchmark must: a free loopback port and a temp state dir
    // (and, for agent-1s, the schedule).
    const lines = [`http:\n  listen: "127.0.0.1:${port}"`, `stateDir: ${JSON.stringify(join(dir, 'state'))}`];
    if (kind === 'agent-1s') lines.push(`schedule: "*/1 * * * * *"`);
    writeFileSync(join(dir, 'config.yaml'), lines.join('\n') + '\n');
    argv = [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), CLI, 'run', '--dry-run', '--config', join(dir, 'config.yaml')];
  }
  // Logs go to a file: a pipe read by this process would bill its reading to the benchmark, not the agent.
  const out = openSync(join(dir, 'out.log'), 'a');
  let child: ChildProcess;
  const spawnedAt = performance.now();
  try {
    child = spawn(process.execPath, argv, { stdio: ['ignore', out, out], env: { ...process.env, NODEMEDIC_CONFIG: '' } });
  } finally {
    closeSync(out);
  }
  if (!child.pid) throw new Error(`could not start ${kind}`);
  const r: Replica = { kind, child, pid: child.pid, dir, rssSamples: [], childRssSamples: [], maxLiveChildren: 0, spawnedAt };
  if (url) await waitFor200(url, { timeoutMs: 30_000, intervalMs: 50, child, what: `nodemedic run (${kind})` });
  return r;
}


/**
 * An ESM resolve hook (registered through `--import data:...`) that appends the package name of every
 * module resolved under node_modules to $NM_BENCH_MODULES: which dependencies `nodemedic run` loads.
 */
const RESOLVE_HOOK = `import { appendFileSync } from 'node:fs';
export async function resolve(s, c, next) {
  const r = await next(s, c);
  const m = /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(r.url);
  if (m && process.env.NM_BENCH_MODULES) appendFileSync(process.env.NM_BENCH_MODULES, m[1] + '\\n');
  return r;
}`;
const REGISTER_HOOK = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(RESOLVE_HOOK)}));`;

/** The runtime dependencies a default-config `nodemedic run` imports by the end of its first sweep. */
async function loadedPackages(): Promise<Set<string>> {
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-modules-'));
  try {
    const port = await freePort();
    writeFileSync(join(dir, 'config.yaml'), `http:\n  listen: "127.0.0.1:${port}"\nstateDir: ${JSON.stringify(join(dir, 'state'))}\n`);
    const list = join(dir, 'modules.txt');
    const child = spawn(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REGISTER_HOOK)}`, CLI, 'run', '--dry-run', '--config', join(dir, 'config.yaml')], {
      stdio: 'ignore',
      env: { ...process.env, NODEMEDIC_CONFIG: '', NM_BENCH_MODULES: list },
    });
    try {
      await waitFor200(`http://127.0.0.1:${port}/healthz`, { timeoutMs: 30_000, intervalMs: 50, child, what: 'nodemedic run (module list)' });
      // The first sweep (and its lazy imports) runs right after the server listens.
      await sleep(3000);
    } finally {
      await stopChild(child);
    }
    let text = '';
    try {
      text = readFileSync(list, 'utf8');
    } catch {
      // nothing resolved under node_modules
    }
    return new Set(text.split('\n').filter(Boolean));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** RSS a runtime dependency adds to a bare Node.js process that imports it alone (MiB, median of 3). */
async function moduleCosts(): Promise<{ name: string; mib: number; loaded: boolean }[]> {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  const names = ['(none)', ...Object.keys(pkg.dependencies ?? {})];
  const loaded = await loadedPackages();
  const script =
    "const m = process.argv[1]; if (m !== '(none)') await import(m); await new Promise((r) => setTimeout(r, 300));" +
    "const t = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8'); console.log(/VmRSS:\\s+(\\d+)/.exec(t)[1]);";
  const rss = (name: string) =>
    Number(execFileSync(process.execPath, ['--input-type=module', '-e', script, name], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 }).trim()) / 1024;
  const out: { name: string; mib: number }[] = [];
  for (const name of names) {
    const xs: number[] = [];
    for (let i = 0; i < 3; i++) xs.push(rss(name));
    out.push({ name, mib: median(xs) });
  }
  const base = out[0]!.mib;
  return out
    .slice(1)
    .map((o) => ({ name: o.name, mib: o.mib - base, loaded: loaded.has(o.name) }))
    .sort((a, b) => b.mib - a.mib);
}

export async function footprint(opts: StepOptions): Promise<StepReport> {
  const replicas = opts.quick ? 1 : 3;
  const windowS = opts.quick ? 15 : 60;
  const warmupS = 3;
  const kinds: Kind[] = ['bare', 'agent-default', 'agent-1s'];
  const all: Replica[] = [];
  const profileDir = mkdtempSync(join(tmpdir(), 'nm-bench-profile-'));
  let profiled: Replica | undefined;
  let profile: ProfileSummary | undefined;
  let profileWindow: [number, number] | undefined;
  const loadBefore = loadAverage();
  try {
    for (let i = 0; i < replicas; i++) for (const k of kinds) all.push(await startReplica(k));
    // One more default agent under --cpu-prof, only to say where its CPU goes (the profiler's own cost
    // keeps it out of the figures).
    profiled = await startReplica('agent-default', profileDir);
    opts.log(`footprint: ${all.length + 1} processes up; ${warmupS} s warm-up, then a ${windowS} s window`);
    // Start-up (module loading, JIT, the first sweep) is not steady state; leave it out of the window.
    await sleep(warmupS * 1000);
    const t0 = performance.now();
    profileWindow = [t0 - profiled.spawnedAt, t0 - profiled.spawnedAt + windowS * 1000];
    for (const r of all) {
      const c = treeCpuTicks(r.pid);
      if (!c) throw new Error(`${r.kind} (pid ${r.pid}) exited during warm-up; see ${r.dir}/out.log`);
      r.cpu0 = c;
    }
    for (let s = 0; s < windowS; s++) {
      await sleep(t0 + (s + 1) * 1000 - performance.now());
      for (const r of all) {
        const m = readRss(r.pid);
        if (!m) throw new Error(`${r.kind} (pid ${r.pid}) exited during the window; see ${r.dir}/out.log`);
        r.rssSamples.push(m.rssKiB);
        r.childRssSamples.push(descendantsRssKiB(r.pid));
        r.maxLiveChildren = Math.max(r.maxLiveChildren, descendants(r.pid).length);
      }
    }
    const wallS = (performance.now() - t0) / 1000;
    for (const r of all) {
      const c = treeCpuTicks(r.pid);
      if (!c || !r.cpu0) throw new Error(`${r.kind} (pid ${r.pid}) exited during the window`);
      r.cpuOwnPct = ((c.own - r.cpu0.own) / CLK_TCK / wallS) * 100;
      r.cpuTreePct = ((c.tree - r.cpu0.tree) / CLK_TCK / wallS) * 100;
      r.hwmKiB = readRss(r.pid)?.hwmKiB;
    }
  } finally {
    await Promise.all([...all, ...(profiled ? [profiled] : [])].map((r) => stopChild(r.child)));
    for (const r of [...all, ...(profiled ? [profiled] : [])]) rmSync(r.dir, { recursive: true, force: true });
    try {
      const f = readdirSync(profileDir).find((n) => n.endsWith('.cpuprofile'));
      if (f && profileWindow) profile = summarizeProfile(join(profileDir, f), { fromMs: profileWindow[0], toMs: profileWindow[1], groups: { file: FIRST_PARTY_FILE, pkg: PACKAGE } });
    } catch (e) {
      opts.log(`footprint: could not read the CPU profile: ${(e as Error).message}`);
    }
    rmSync(profileDir, { recursive: true, force: true });
  }
  opts.log('footprint: RSS each runtime dependency adds to bare Node.js');
  const modules = await moduleCosts();

  const by = (k: Kind) => all.filter((r) => r.kind === k);
  const rssMiB = (k: Kind) => by(k).map((r) => median(r.rssSamples) / 1024);
  const peakMiB = (k: Kind) => by(k).map((r) => Math.max(...r.rssSamples) / 1024);
  const childMiB = (k: Kind) => by(k).map((r) => median(r.childRssSamples) / 1024);
  const own = (k: Kind) => by(k).map((r) => r.cpuOwnPct!);
  const tree = (k: Kind) => by(k).map((r) => r.cpuTreePct!);
  const bareRss = median(rssMiB('bare'));
  const rows = kinds.map((k) => [
    k === 'bare' ? 'bare Node.js (one timer)' : k === 'agent-default' ? '`nodemedic run`, default config (15 s schedule)' : '`nodemedic run`, 1 s schedule',
    `${fmt(median(rssMiB(k)))} (${runs(rssMiB(k))})`,
    k === 'bare' ? '1' : fmt(median(rssMiB(k)) / bareRss),
    fmt(median(peakMiB(k))),
    fmt(median(childMiB(k))),
    `${fmt(median(own(k)), 2)} (${runs(own(k), 2)})`,
    `${fmt(median(tree(k)), 2)} (${runs(tree(k), 2)})`,
  ]);

  const ratioDefault = median(rssMiB('agent-default')) / bareRss;
  const ratio1s = median(rssMiB('agent-1s')) / bareRss;
  const worstRatio = Math.max(ratioDefault, ratio1s);
  const cpuDefault = median(tree('agent-default'));
  const cpuDefaultOwn = median(own('agent-default'));
  const agentMiB = median(rssMiB('agent-default'));
  const budgetMiB = 1.6 * bareRss;
  const pct = (x: number, of: number) => `${fmt((x / of) * 100, 2)} %`;
  const spawnShare = profile ? profile.spawnMs / profile.busyMs : undefined;

  const loadedModules = modules.filter((m) => m.loaded);
  const rssClose =
    `the agent is ${fmt(agentMiB - budgetMiB)} MiB over a ${fmt(budgetMiB)} MiB budget; the largest dependencies it loads, ` +
    `by the RSS each adds to bare Node.js alone: ${loadedModules.slice(0, 5).map((m) => `${m.name} +${fmt(m.mib, 2)} MiB`).join(', ')} ` +
    `(all it loads together +${fmt(loadedModules.reduce((a, m) => a + m.mib, 0))} MiB when summed one by one, against the agent's ` +
    `+${fmt(agentMiB - bareRss)} MiB over bare: they share Node.js internals); closing it means keeping at least ` +
    `${fmt(agentMiB - budgetMiB)} MiB of these off the resident path (issue 15: measure, then load rarely used ones lazily)`;
  const cpuClose = profile
    ? `a CPU profile of a default-config agent over the window: ${fmt(profile.busyMs)} ms busy in ${fmt(profile.totalS)} s, ` +
      `${pct(profile.groups.pkg?.find(([k]) => k === 'execa')?.[1] ?? 0, profile.busyMs)} of it in execa (${pct(profile.spawnMs, profile.busyMs)} in child_process.spawn itself), ` +
      `${pct(profile.gcMs, profile.busyMs)} GC; by file (inclusive): ${(profile.groups.file ?? []).slice(0, 5).map(([f, v]) => `${f} ${pct(v, profile!.busyMs)}`).join(', ')}; ` +
      `the commands themselves add ${fmt(cpuDefault - cpuDefaultOwn, 2)} points. The largest of these shares is where the cut must come from`
    : 'profile a sweep (`node --cpu-prof dist/agent/cli.js run`) and cut the per-sweep work';
  const goals: Goal[] = [
    {
      goal: 'RSS at most 1.6x bare Node.js',
      measured: `${fmt(ratioDefault)}x (default schedule), ${fmt(ratio1s)}x (1 s schedule)`,
      met: worstRatio <= 1.6,
      margin: marginBelow(worstRatio, 1.6, 'x'),
      ...(worstRatio > 1.6 ? { close: rssClose } : {}),
    },
    {
      goal: 'average CPU at most 0.3 % of one core at the default schedule',
      measured: `${fmt(cpuDefault, 2)} % (agent and the commands it runs; the agent process alone ${fmt(cpuDefaultOwn, 2)} %)`,
      met: cpuDefault <= 0.3,
      margin: marginBelow(cpuDefault, 0.3, ' points'),
      ...(cpuDefault > 0.3 ? { close: cpuClose } : {}),
    },
  ];

  const body = [
    `Method: ${replicas} replica(s) of each kind run side by side; each is left ${warmupS} s after start-up ` +
      `(after /healthz answers 200 for the agent), then measured over a ${windowS} s window. RSS is VmRSS of ` +
      '/proc/<pid>/status sampled every second (per replica: the median sample; the table shows the median over replicas and, in ' +
      'brackets, each replica). CPU is the change of utime+stime in /proc/<pid>/stat over the window, as % of one core; "with ' +
      'children" adds the commands the agent starts (reaped children\'s cutime+cstime and every live descendant). The agent ' +
      `runs \`node dist/agent/cli.js run --dry-run\` with the default config, changed only in \`http.listen\` (a free loopback ` +
      'port) and `stateDir` (a temp dir), plus `schedule: "*/1 * * * * *"` for the 1 s row. Bare Node.js is ' +
      `\`node -e '${BARE_SCRIPT}'\`. Logs go to a file.`,
    '',
    table(['process', 'RSS MiB, median (replicas)', 'RSS / bare', 'peak RSS MiB', 'RSS of live children MiB', 'CPU % of one core, process (replicas)', 'CPU % with children (replicas)'], rows),
    '',
    `Load average before the window: ${loadBefore}; after: ${loadAverage()}. Clock ticks: ${CLK_TCK}/s, so one tick over ` +
      `${windowS} s is ${fmt(100 / CLK_TCK / windowS, 2)} % of a core.`,
    '',
    'On this machine there is no systemd as PID 1, no kubelet, dockerd or containerd: the default checks find nothing and ' +
      'report `unknown` (the commands they run fail fast, as they would answer fast on a node).',
    '',
    '**Where the memory goes.** RSS each runtime dependency adds to bare Node.js when imported alone (median of 3), and ' +
      'whether a default-config `nodemedic run` imports it by the end of its first sweep (an ESM resolve hook lists what it loads):',
    '',
    table(['dependency', '+MiB alone', 'loaded by `nodemedic run`'], modules.map((m) => [m.name, fmt(m.mib, 2), m.loaded ? 'yes' : 'no'])),
    '',
    profile
      ? `**Where the CPU goes.** One extra default-config agent ran under \`--cpu-prof\` over the same window (not in the figures ` +
        `above): ${fmt(profile.busyMs)} ms busy in ${fmt(profile.totalS)} s. Inclusive: execa ${pct(profile.groups.pkg?.find(([k]) => k === 'execa')?.[1] ?? 0, profile.busyMs)} ` +
        `(child_process.spawn ${pct(profile.spawnMs, profile.busyMs)}), GC ${pct(profile.gcMs, profile.busyMs)}. By file: ` +
        (profile.groups.file ?? []).slice(0, 8).map(([f, v]) => `${f} ${pct(v, profile!.busyMs)}`).join(', ') +
        '. Top self time: ' +
        profile.topSelf.map(([f, v]) => `\`${f}\` ${fmt(v)} ms`).join(', ') +
        '.'
      : '**Where the CPU goes:** the profiled agent left no profile.',
  ].join('\n');
  return {
    id: 'footprint',
    title: 'Footprint: RSS and CPU of `nodemedic run`',
    measured: true,
    body,
    goals,
    data: {
      windowS,
      replicas,
      spawnShare,
      all: all.map((r) => ({ kind: r.kind, rssMiB: median(r.rssSamples) / 1024, cpuOwnPct: r.cpuOwnPct, cpuTreePct: r.cpuTreePct, hwmKiB: r.hwmKiB })),
      modules,
      profile,
    },
  };
}
