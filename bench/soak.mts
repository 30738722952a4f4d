/**
 * Footprint with real units, and the soak (issue 15). A real systemd as PID 1 of a namespace runs
 * units named like a node's: `kubelet.service` (the fake kubelet, healthz answering), `docker.service`
 * (a real dockerd, with its own containerd) and `containerd.service` (a running process; the
 * containerd check talks to dockerd's containerd). `nodemedic run --dry-run` with the default config
 * reaches it through `hostCommandPrefix`, as the DaemonSet reaches a node, so every `systemctl` and
 * `journalctl` answers as on a node instead of failing fast as on this machine (bench/footprint.ts).
 * A bare Node.js process (one timer) runs beside it over the same window: the baseline.
 *
 * - `footprint-units`: CPU (agent and the commands it starts) and RSS at the default 15 s schedule.
 * - `soak`: the agent at a 1 s schedule for 60 min (`--quick`: 3 min; `NM_SOAK_MINUTES` overrides),
 *   RSS sampled every 10 s; growth is the least-squares slope after a warm-up, beside bare Node.js's.
 *
 * Run by bench/run.ts under tap's TypeScript loader: `node --import=@tapjs/typescript/import bench/soak.mts --result F --only soak`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { prepareDockerd, sweepDockerd } from '../test/harness/dockerd.js';
import { FakeKubelet } from '../test/harness/fake-kubelet.js';
import { startSystemdNs, systemdNsAvailable, waitFor, type SystemdNs } from '../test/harness/systemd-ns.js';
import {
  CLI,
  CLK_TCK,
  envWithNodeOptions,
  fmt,
  freePort,
  harnessMain,
  httpGet,
  loadAverage,
  marginBelow,
  median,
  onCleanup,
  readRss,
  runs,
  sleep,
  stopChild,
  summarizeProfile,
  UNIT_NODE_OPTIONS,
  FIRST_PARTY_FILE,
  PACKAGE,
  type ProfileSummary,
  table,
  treeCpuTicks,
  waitFor200,
  type StepOptions,
  type StepReport,
} from './lib.js';

const BARE_SCRIPT = 'setInterval(() => {}, 1000);';
/** Where the profiled agent's wrapper logs each host command (in the replica's directory). */
const COMMANDS_LOG = 'commands.log';

/** Host commands as they were started, counted by shape: `systemctl show … kubelet` ×12. */
function commandShapes(lines: readonly string[], prefix: readonly string[]): [string, number][] {
  const counts = new Map<string, number>();
  const lead = prefix.join(' ');
  for (const line of lines) {
    let rest = line.startsWith(lead) ? line.slice(lead.length).trim() : line;
    rest = rest.replace(/^timeout -k \S+ \S+ /, '').replace(/^env TZ=UTC /, '');
    const words = rest.split(' ');
    const shape = words.length > 3 ? `${words.slice(0, 2).join(' ')} … ${words.at(-1)}` : rest;
    counts.set(shape, (counts.get(shape) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]);
}
const RSS_LIMIT_MIB = 80;
const CPU_LIMIT_PCT = 0.3;
/** "No growth": at most this slope over the soak, after warm-up. */
const SLOPE_LIMIT_MIB_PER_H = 1;

interface Node {
  ns: SystemdNs;
  healthzUrl: string;
  dockerSocket: string;
  containerdSocket: string;
}

/** The namespace with node-like units; torn down by the registered cleanups. */
async function startNode(log: (m: string) => void): Promise<Node> {
  const kubelet = await FakeKubelet.create();
  onCleanup(() => rmSync(kubelet.controlDir, { recursive: true, force: true }));
  await kubelet.configure({});
  const docker = await prepareDockerd({ liveRestore: true });
  onCleanup(() => sweepDockerd(docker.paths));
  const ns = await startSystemdNs({
    name: 'bench-units',
    units: {
      'kubelet.service': kubelet.unit(),
      'docker.service': docker.unitText,
      'containerd.service': '[Unit]\nDescription=containerd stand-in (a running unit)\n[Service]\nExecStart=/bin/sleep infinity\n',
    },
  });
  onCleanup(() => ns.stop());
  const active = async (u: string) => (await ns.systemctl('show', '--property=ActiveState', '--value', u)).stdout.trim() === 'active';
  await waitFor(async () => (await active('kubelet')) && (await active('docker')) && (await active('containerd')), { timeoutMs: 90_000, what: 'kubelet, docker, containerd active' });
  const containerdSocket = join(docker.paths.execRoot, 'containerd', 'containerd.sock');
  log(`units up in namespace ${ns.name} (PID 1 = host pid ${ns.pid})`);
  return { ns, healthzUrl: kubelet.healthzUrl, dockerSocket: docker.paths.socket, containerdSocket };
}

interface Proc {
  /** `agent` and `agent-prof` run with the unit's NODE_OPTIONS (as shipped), `agent-jit` with V8's defaults. */
  kind: 'bare' | 'agent' | 'agent-jit' | 'agent-prof';
  child: ChildProcess;
  pid: number;
  dir: string;
  url?: string;
}

async function startProc(kind: Proc['kind'], node: Node, schedule?: string, profileDir?: string): Promise<Proc> {
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-soak-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  let argv: string[];
  let url: string | undefined;
  if (kind === 'bare') argv = ['-e', BARE_SCRIPT];
  else {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // Only the profiled agent (not in the table) logs every host command it starts, so that the report
    // can name the commands; a shell in front of every command of the measured agents would cost CPU.
    let prefix = node.ns.prefix;
    if (kind === 'agent-prof') {
      const wrapper = join(dir, 'log-and-run.sh');
      writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${join(dir, COMMANDS_LOG)}'\nexec "$@"\n`, { mode: 0o755 });
      prefix = [wrapper, ...prefix];
    }
    // The default config, changed only where the node differs: the prefix into the namespace, where
    // kubelet's healthz and the runtimes' sockets are, a loopback port, a temp state dir.
    const config = {
      http: { listen: `127.0.0.1:${port}` },
      stateDir: join(dir, 'state'),
      hostCommandPrefix: prefix,
      ...(schedule ? { schedule } : {}),
      checks: {
        kubelet: { healthzUrl: node.healthzUrl },
        docker: { socket: node.dockerSocket },
        containerd: { socket: node.containerdSocket },
      },
    };
    writeFileSync(join(dir, 'config.yaml'), stringify(config));
    const v8 = kind === 'agent-prof' ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
    argv = [...v8, CLI, 'run', '--dry-run', '--config', join(dir, 'config.yaml')];
  }
  const env = envWithNodeOptions(kind === 'agent' || kind === 'agent-prof' ? UNIT_NODE_OPTIONS : undefined);
  const out = openSync(join(dir, 'out.log'), 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, argv, { stdio: ['ignore', out, out], env: { ...env, NODEMEDIC_CONFIG: '' } });
  } finally {
    closeSync(out);
  }
  if (!child.pid) throw new Error(`could not start ${kind}`);
  onCleanup(() => stopChild(child));
  if (url) await waitFor200(`${url}/healthz`, { timeoutMs: 30_000, intervalMs: 50, child, what: 'nodemedic run' });
  return { kind, child, pid: child.pid, dir, ...(url ? { url } : {}) };
}

async function statuses(url: string): Promise<string> {
  const r = await httpGet(`${url}/status`, 5000);
  const body = JSON.parse(r.body) as { results: { check: string; status: string; reason: string }[] };
  return body.results.map((x) => `${x.check} ${x.status} (${x.reason})`).join(', ');
}

/** V8's heap by space and external memory, MiB, from the agent's own /metrics (prom-client's defaults). */
async function heap(url: string): Promise<Record<string, number>> {
  const body = (await httpGet(`${url}/metrics`, 5000)).body;
  const out: Record<string, number> = {};
  for (const m of body.matchAll(/^nodejs_heap_space_size_total_bytes\{space="([a-z_]+)"\} (\d+)/gm)) if (Number(m[2])) out[m[1]!] = Number(m[2]) / 2 ** 20;
  const ext = /^nodejs_external_memory_bytes (\d+)/m.exec(body);
  if (ext) out.external = Number(ext[1]) / 2 ** 20;
  return out;
}

function heapText(h: Record<string, number>): string {
  const v8 = Object.entries(h).filter(([k]) => k !== 'external').reduce((a, [, v]) => a + v, 0);
  return `V8 heap ${fmt(v8)} MiB (${Object.entries(h).filter(([k]) => k !== 'external').map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}), external ${fmt(h.external ?? 0)} MiB`;
}

/** Least-squares slope of y over x. */
function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den ? num / den : 0;
}

async function footprintUnits(opts: StepOptions): Promise<StepReport> {
  const title = 'Footprint with real units: CPU and RSS at the default schedule';
  const why = await systemdNsAvailable();
  if (why) return { id: 'footprint-units', title, measured: false, why, body: '', goals: [] };
  const node = await startNode(opts.log);
  const replicas = opts.quick ? 1 : 2;
  const windowS = opts.quick ? 60 : 180;
  const procs: Proc[] = [];
  for (let i = 0; i < replicas; i++) procs.push(await startProc('bare', node), await startProc('agent', node));
  // One agent with V8's defaults (what do the unit's flags buy?), and one under --cpu-prof, only to
  // say where the CPU goes (the profiler's cost keeps it out of the table).
  procs.push(await startProc('agent-jit', node));
  const profileDir = mkdtempSync(join(tmpdir(), 'nm-bench-soak-prof-'));
  onCleanup(() => rmSync(profileDir, { recursive: true, force: true }));
  const profiled = await startProc('agent-prof', node, undefined, profileDir);
  const profiledSpawnedAt = performance.now();
  const commandLines = (): string[] => {
    try {
      return readFileSync(join(profiled.dir, COMMANDS_LOG), 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  // Start-up and the first sweeps (module loading, the journal follower) are not steady state.
  await sleep(20_000);
  const loadBefore = loadAverage();
  const commandsBefore = commandLines().length;
  const c0 = new Map(procs.map((p) => [p.pid, treeCpuTicks(p.pid)!]));
  const rss = new Map<number, number[]>(procs.map((p) => [p.pid, []]));
  const t0 = performance.now();
  const profileWindow: [number, number] = [t0 - profiledSpawnedAt, t0 - profiledSpawnedAt + windowS * 1000];
  for (let s = 0; s < windowS; s++) {
    await sleep(t0 + (s + 1) * 1000 - performance.now());
    for (const p of procs) rss.get(p.pid)!.push(readRss(p.pid)!.rssKiB / 1024);
  }
  const wallS = (performance.now() - t0) / 1000;
  const shapes = commandShapes(commandLines().slice(commandsBefore), node.ns.prefix);
  const cpu = procs.map((p) => {
    const c = treeCpuTicks(p.pid)!;
    const a = c0.get(p.pid)!;
    return { p, own: ((c.own - a.own) / CLK_TCK / wallS) * 100, tree: ((c.tree - a.tree) / CLK_TCK / wallS) * 100, hwm: readRss(p.pid)!.hwmKiB / 1024 };
  });
  const agentUrl = procs.find((p) => p.kind === 'agent')!.url!;
  const seen = await statuses(agentUrl);
  const heapAgent = await heap(agentUrl);
  const heapJit = await heap(procs.find((p) => p.kind === 'agent-jit')!.url!);
  await stopChild(profiled.child);
  let profile: ProfileSummary | undefined;
  try {
    const f = readdirSync(profileDir).find((n) => n.endsWith('.cpuprofile'));
    if (f) profile = summarizeProfile(join(profileDir, f), { fromMs: profileWindow[0], toMs: profileWindow[1], groups: { file: FIRST_PARTY_FILE, pkg: PACKAGE } });
    // For a closer look (e.g. in Chrome DevTools): NM_BENCH_PROFILE_OUT=FILE keeps the raw profile.
    if (f && process.env.NM_BENCH_PROFILE_OUT) copyFileSync(join(profileDir, f), process.env.NM_BENCH_PROFILE_OUT);
  } catch (e) {
    opts.log(`footprint-units: no CPU profile: ${(e as Error).message}`);
  }
  const of = (k: Proc['kind']) => cpu.filter((c) => c.p.kind === k);
  const tree = median(of('agent').map((c) => c.tree));
  const own = median(of('agent').map((c) => c.own));
  const bareTree = median(of('bare').map((c) => c.tree));
  const rssAgent = median(of('agent').map((c) => median(rss.get(c.p.pid)!)));
  const rssBare = median(of('bare').map((c) => median(rss.get(c.p.pid)!)));
  const peak = Math.max(...of('agent').map((c) => c.hwm));
  const childShare = tree > 0 ? (tree - own) / tree : 0;
  const rows = (['bare', 'agent', 'agent-jit'] as const).map((k) => [
    k === 'bare'
      ? 'bare Node.js (one timer)'
      : k === 'agent'
        ? `\`nodemedic run --dry-run\`, default config (15 s schedule), real units, the unit's \`NODE_OPTIONS=${UNIT_NODE_OPTIONS}\``
        : 'the same with V8\'s defaults (no `NODE_OPTIONS`)',
    `${fmt(median(of(k).map((c) => median(rss.get(c.p.pid)!))))} (${runs(of(k).map((c) => median(rss.get(c.p.pid)!)))})`,
    fmt(Math.max(...of(k).map((c) => c.hwm))),
    `${fmt(median(of(k).map((c) => c.own)), 3)} (${runs(of(k).map((c) => c.own), 3)})`,
    `${fmt(median(of(k).map((c) => c.tree)), 3)} (${runs(of(k).map((c) => c.tree), 3)})`,
  ]);
  const pct = (x: number, of: number) => `${fmt((x / of) * 100, 2)} %`;
  const execaMs = profile?.groups.pkg?.find(([k]) => k === 'execa')?.[1] ?? 0;
  const cause =
    `${fmt(childShare * 100, 1)} % of the agent's CPU (${fmt(tree - own, 3)} of ${fmt(tree, 3)} points) is the commands it starts ` +
    `(over the window the profiled agent started ${shapes.length ? shapes.map(([c, n]) => `\`${c}\` x${n}`).join(', ') : 'none'}, ` +
    `in ${Math.floor(windowS / 15)} sweeps, each through \`${node.ns.prefix[0]}\` and timeout(1)), ` +
    `the rest (${fmt(own, 3)} points) the agent process itself` +
    (profile
      ? `; a CPU profile of one more agent over the same window: ${fmt(profile.busyMs)} ms busy in ${fmt(profile.totalS)} s, ` +
        `${pct(execaMs, profile.busyMs)} in execa (${pct(profile.spawnMs, profile.busyMs)} in child_process.spawn itself), ` +
        `${pct(profile.gcMs, profile.busyMs)} GC; by package: ${(profile.groups.pkg ?? []).slice(0, 5).map(([k, v]) => `${k} ${pct(v, profile!.busyMs)}`).join(', ')}; ` +
        `by file: ${(profile.groups.file ?? []).slice(0, 5).map(([k, v]) => `${k} ${pct(v, profile!.busyMs)}`).join(', ')}`
      : '');
  const jitRss = median(rss.get(procs.find((p) => p.kind === 'agent-jit')!.pid)!);
  const jitPeak = of('agent-jit')[0]!.hwm;
  const jitTree = of('agent-jit')[0]!.tree;
  const rssCause =
    `the agent's ${fmt(rssAgent)} MiB (median) are bare Node.js's ${fmt(rssBare)} MiB plus ${fmt(rssAgent - rssBare)} MiB; of its memory, ${heapText(heapAgent)} ` +
    `at the end of the window. With V8's defaults (JIT on, young generation free to grow) the same agent had median ${fmt(jitRss)} MiB, peak ${fmt(jitPeak)} MiB, ` +
    `CPU ${fmt(jitTree, 3)} % (${heapText(heapJit)}): the unit's flags ${peak <= jitPeak ? 'lower' : 'raise'} the peak by ${fmt(Math.abs(jitPeak - peak))} MiB ` +
    `and ${tree <= jitTree ? 'lower' : 'raise'} the CPU by ${fmt(Math.abs(jitTree - tree), 3)} points`;
  const goals = [
    {
      goal: 'idle CPU with real units at most 0.3 % of one core at the default schedule',
      measured: `${fmt(tree, 3)} % (agent and its commands; the agent alone ${fmt(own, 3)} %; bare Node.js ${fmt(bareTree, 3)} %)`,
      met: tree <= CPU_LIMIT_PCT,
      margin: marginBelow(tree, CPU_LIMIT_PCT, ' points'),
      ...(tree > CPU_LIMIT_PCT ? { close: `measured cause: ${cause}` } : {}),
    },
    {
      goal: 'peak RSS at most 80 MiB (real units, default schedule)',
      measured: `${fmt(peak)} MiB peak (VmHWM); median ${fmt(rssAgent)} MiB against bare Node.js ${fmt(rssBare)} MiB (${fmt(rssAgent / rssBare, 2)}x)`,
      met: peak <= RSS_LIMIT_MIB,
      margin: marginBelow(peak, RSS_LIMIT_MIB, ' MiB'),
      ...(peak > RSS_LIMIT_MIB ? { close: `measured: ${rssCause}` } : {}),
    },
  ];
  const body = [
    `Method: a real systemd (PID 1 of a namespace) runs kubelet.service (the fake kubelet, /healthz answering), docker.service ` +
      '(a real dockerd and its containerd) and containerd.service; the agent runs `node dist/agent/cli.js run --dry-run`, ' +
      `with \`NODE_OPTIONS=${UNIT_NODE_OPTIONS}\` as systemd-units/nodemedic.service sets it, and the ` +
      'default config, changed only in `hostCommandPrefix` (nsenter into the namespace), the kubelet healthz URL, the docker and ' +
      `containerd sockets, a loopback port and a temp state dir. ${replicas} agent(s) and ${replicas} bare Node.js process(es) ` +
      `(\`node -e '${BARE_SCRIPT}'\`) side by side; 20 s after start, a ${windowS} s window. CPU: utime+stime of the process and of ` +
      'every command it started (reaped and live), as % of one core. RSS: VmRSS every second (median), peak VmHWM.',
    '',
    table(['process', 'RSS MiB, median (replicas)', 'peak RSS MiB', 'CPU % of one core, process (replicas)', 'CPU % with children (replicas)'], rows),
    '',
    `What the agent reported at the end: ${seen}.`,
    '',
    `Load average before the window: ${loadBefore}; after: ${loadAverage()}. One clock tick over ${windowS} s is ${fmt(100 / CLK_TCK / windowS, 3)} % of a core.`,
    '',
    `Where the CPU goes (measured): ${cause}.`,
    '',
    `Where the memory goes (measured): ${rssCause}.`,
  ].join('\n');
  return { id: 'footprint-units', title, measured: true, body, goals, data: { windowS, replicas, commands: shapes, cpu: cpu.map((c) => ({ kind: c.p.kind, own: c.own, tree: c.tree, hwmMiB: c.hwm })), rssAgent, rssBare, seen, heapAgent, heapJit, nodeOptions: UNIT_NODE_OPTIONS, profile } };
}

async function soak(opts: StepOptions): Promise<StepReport> {
  const title = 'Soak: RSS of `nodemedic run` at a 1 s schedule with real units';
  const why = await systemdNsAvailable();
  if (why) return { id: 'soak', title, measured: false, why, body: '', goals: [] };
  const minutes = Number(process.env.NM_SOAK_MINUTES) || (opts.quick ? 3 : 60);
  const everyS = 10;
  const node = await startNode(opts.log);
  const bare = await startProc('bare', node);
  const agent = await startProc('agent', node, '*/1 * * * * *');
  opts.log(`soak: ${minutes} min, RSS every ${everyS} s`);
  const samples: { tS: number; agent: number; bare: number }[] = [];
  const c0 = treeCpuTicks(agent.pid)!;
  const t0 = performance.now();
  const n = Math.floor((minutes * 60) / everyS);
  for (let i = 1; i <= n; i++) {
    await sleep(t0 + i * everyS * 1000 - performance.now());
    const a = readRss(agent.pid);
    const b = readRss(bare.pid);
    if (!a || !b) throw new Error(`${a ? 'bare Node.js' : 'the agent'} exited during the soak; see ${a ? bare.dir : agent.dir}/out.log`);
    samples.push({ tS: (performance.now() - t0) / 1000, agent: a.rssKiB / 1024, bare: b.rssKiB / 1024 });
    if (i % 30 === 0) opts.log(`soak: ${fmt(samples.at(-1)!.tS / 60, 2)} min, agent ${fmt(samples.at(-1)!.agent)} MiB, bare ${fmt(samples.at(-1)!.bare)} MiB`);
  }
  const wallS = (performance.now() - t0) / 1000;
  const c1 = treeCpuTicks(agent.pid)!;
  const cpuTree = ((c1.tree - c0.tree) / CLK_TCK / wallS) * 100;
  const seen = await statuses(agent.url!);
  const sweeps = /nodemedic_sweeps_total (\d+)/.exec((await httpGet(`${agent.url}/metrics`, 5000)).body)?.[1];
  const hwm = readRss(agent.pid)!.hwmKiB / 1024;
  const heapEnd = await heap(agent.url!);
  const bareHwm = readRss(bare.pid)!.hwmKiB / 1024;
  // The first tenth (at least 1 min) is warm-up: the JIT, the journal follower's buffers, first GCs.
  const warm = samples.filter((s) => s.tS >= Math.max(60, wallS / 10));
  const perH = (k: 'agent' | 'bare') => slope(warm.map((s) => s.tS / 3600), warm.map((s) => s[k]));
  const sa = perH('agent');
  const sb = perH('bare');
  const quarter = Math.max(1, Math.floor(warm.length / 4));
  const firstQ = median(warm.slice(0, quarter).map((s) => s.agent));
  const lastQ = median(warm.slice(-quarter).map((s) => s.agent));
  const goals = [
    {
      goal: `no RSS growth over the ${minutes}-min soak at a 1 s schedule (slope at most ${SLOPE_LIMIT_MIB_PER_H} MiB/h)`,
      measured: `${fmt(sa, 3)} MiB/h (bare Node.js ${fmt(sb, 3)} MiB/h); median of the first quarter ${fmt(firstQ)} MiB, last quarter ${fmt(lastQ)} MiB`,
      met: sa <= SLOPE_LIMIT_MIB_PER_H,
      margin: marginBelow(sa, SLOPE_LIMIT_MIB_PER_H, ' MiB/h'),
    },
    {
      goal: 'peak RSS at most 80 MiB (1 s schedule, real units)',
      measured: `${fmt(hwm)} MiB (VmHWM over the soak; bare Node.js ${fmt(bareHwm)} MiB)`,
      met: hwm <= RSS_LIMIT_MIB,
      margin: marginBelow(hwm, RSS_LIMIT_MIB, ' MiB'),
      ...(hwm > RSS_LIMIT_MIB ? { close: `measured at the end of the soak: ${heapText(heapEnd)}, against bare Node.js's ${fmt(bareHwm)} MiB for everything; the rest is Node.js and the dependencies' code` } : {}),
    },
  ];
  const rows = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const s = samples[Math.min(samples.length - 1, Math.round(f * (samples.length - 1)))]!;
    return [`${fmt(s.tS / 60, 2)}`, fmt(s.agent), fmt(s.bare)];
  });
  const body = [
    `Method: the namespace and agent of "footprint with real units", at \`schedule: "*/1 * * * * *"\`, for ${minutes} min ` +
      `(${sweeps ?? '?'} sweeps), with a bare Node.js process beside it. VmRSS every ${everyS} s; the slope is a least-squares fit ` +
      `after the first ${fmt(Math.max(60, wallS / 10) / 60, 2)} min (warm-up), over ${warm.length} samples.`,
    '',
    table(['minute', 'agent RSS MiB', 'bare Node.js RSS MiB'], rows),
    '',
    `CPU over the soak (agent and its commands): ${fmt(cpuTree, 2)} % of one core at the 1 s schedule. What the agent reported at the end: ${seen}.`,
    '',
    `The agent's memory at the end (its /metrics): ${heapText(heapEnd)}.`,
  ].join('\n');
  return { id: 'soak', title, measured: true, body, goals, data: { minutes, everyS, samples, slopeAgent: sa, slopeBare: sb, hwm, bareHwm, cpuTree, sweeps, heapEnd } };
}

await harnessMain({ 'footprint-units': footprintUnits, soak });
