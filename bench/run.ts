/**
 * `npm run bench`: runs the benchmarks of issue 7 and writes bench/RESULTS.md (figures, machine,
 * date, command) and bench/RESULTS.json (the same, with the raw runs).
 *
 *   node dist/bench/run.js [--only a,b] [--quick] [--out FILE]
 *
 * `--only` takes step ids (see STEP_IDS). `--quick` makes every step short (fewer runs, shorter
 * windows): a smoke run whose figures are not for the record. A partial or quick run writes
 * bench/RESULTS.partial.md unless `--out` says otherwise, so it never replaces the full results.
 *
 * Steps that need the test harnesses (a systemd namespace, a real dockerd, the fake API server) are
 * .mts scripts run under tap's TypeScript loader in a child process with a hard time limit; the
 * others run in this process. Nothing here is a test: a step that cannot measure says why in the
 * report, and the exit code is 0 unless the benchmark itself could not run.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, release, tmpdir, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { footprint } from './footprint.js';
import { fmt, loadAverage, REPO_ROOT, STEP_IDS, table, type Goal, type StepId, type StepOptions, type StepReport } from './lib.js';
import { plegThroughput } from './pleg-throughput.js';
import { soakHostile } from './soak-hostile.js';
import { startup } from './startup.js';

interface StepSpec {
  ids: StepId[];
  /** In-process steps. */
  run?: (o: StepOptions) => Promise<StepReport>;
  /** A harness step: bench/<script>, run under tap's TypeScript loader. */
  script?: string;
  /** Hard limit for a script step (full run; a quick run gets half). */
  limitS?: number;
}

const SPECS: StepSpec[] = [
  { ids: ['footprint'], run: footprint },
  { ids: ['startup'], run: startup },
  { ids: ['pleg-throughput'], run: plegThroughput },
  { ids: ['pleg-latency'], script: 'pleg-latency.mts', limitS: 240 },
  { ids: ['docker-hang', 'metrics-load'], script: 'docker.mts', limitS: 240 },
  { ids: ['drain'], script: 'drain.mts', limitS: 240 },
  { ids: ['soak-hostile'], run: soakHostile },
  // The soak is an hour at full length (issue 15); footprint-units a few minutes.
  { ids: ['footprint-units', 'soak'], script: 'soak.mts', limitS: 4200 },
  { ids: ['api-load'], script: 'api-load.mts', limitS: 900 },
];

const TITLES: Record<StepId, string> = {
  footprint: 'Footprint: RSS and CPU of `nodemedic run`',
  startup: 'Start-up: launch to /healthz 200',
  'pleg-throughput': 'PLEG classification throughput',
  'pleg-latency': 'PLEG detection latency through a real journal',
  'docker-hang': 'Hung-docker detection',
  'metrics-load': '/metrics under load while a check hangs',
  drain: 'Drain of 110 pods against the fake API server',
  'soak-hostile': 'Soak: 30 min, 1 s schedule, hung API server',
  'footprint-units': 'Footprint with real units: CPU and RSS at the default schedule',
  soak: 'Soak: RSS of `nodemedic run` at a 1 s schedule with real units',
  'api-load': 'API load per agent, idle and during an episode, against the fake API server',
};

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function notMeasured(id: StepId, why: string, goals: string[] = []): StepReport {
  return {
    id,
    title: TITLES[id],
    measured: false,
    why,
    body: `Not measured: ${why}`,
    goals: goals.map((g) => ({ goal: g, measured: 'not measured', met: undefined, margin: '' })),
  };
}

/** The goals each step is judged on, so that a step that could not run still lists them as not judged. */
const STEP_GOALS: Partial<Record<StepId, string[]>> = {
  footprint: ['RSS at most 1.6x bare Node.js', 'average CPU at most 0.3 % of one core at the default schedule'],
  'pleg-throughput': ["classifier at least half of grep's line rate"],
  'pleg-latency': ['PLEG detection p99 under 1 s'],
  'docker-hang': ['hung-docker detection within timeout + 1 s'],
  'metrics-load': ['/metrics p99 under 5 ms while a check hangs'],
  'footprint-units': ['idle CPU with real units at most 0.3 % of one core at the default schedule', 'peak RSS at most 80 MiB (real units, default schedule)'],
  soak: ['no RSS growth over the soak at a 1 s schedule', 'peak RSS at most 80 MiB (1 s schedule, real units)'],
  'api-load': ['at idle at most 1 request per agent per minute besides the watches'],
};

async function runScript(spec: StepSpec, ids: StepId[], quick: boolean): Promise<StepReport[]> {
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-step-'));
  const resultFile = join(dir, 'result.json');
  const limitMs = (quick ? 0.5 : 1) * (spec.limitS ?? 300) * 1000;
  const args = ['--import=@tapjs/typescript/import', join('bench', spec.script!), '--result', resultFile, '--only', ids.join(',')];
  if (quick) args.push('--quick');
  log(`${ids.join(', ')}: node ${args.join(' ')} (limit ${limitMs / 1000} s)`);
  try {
    const child = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
      // Type-checking is `npm run typecheck`'s job; the loader only strips types (as tap does by default).
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1', NODEMEDIC_CONFIG: '' },
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      log(`${ids.join(', ')}: over the ${limitMs / 1000} s limit, stopping it (SIGTERM, it cleans up)`);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 30_000).unref();
    }, limitMs);
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    clearTimeout(timer);
    let reports: StepReport[] = [];
    try {
      reports = JSON.parse(readFileSync(resultFile, 'utf8')) as StepReport[];
    } catch {
      // no result file: reported below
    }
    const why = timedOut ? `the step ran over its ${limitMs / 1000} s limit and was stopped` : `bench/${spec.script} exited with ${code} without a result (see its output above)`;
    return ids.map((id) => {
      const r = reports.find((x) => x.id === id);
      if (!r) return notMeasured(id, why, STEP_GOALS[id]);
      return r.measured ? r : { ...notMeasured(id, r.why ?? 'no reason given', STEP_GOALS[id]), ...(r.body ? { body: r.body } : {}), data: r.data };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0]!.trim();
  } catch {
    return 'not installed';
  }
}

function machine(): string[][] {
  let os = 'unknown';
  try {
    os = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch {
    // not Linux
  }
  const c = cpus();
  let virt = 'unknown';
  try {
    virt = /hypervisor/.test(readFileSync('/proc/cpuinfo', 'utf8')) ? 'virtual machine (cpuinfo: hypervisor flag)' : 'no hypervisor flag';
  } catch {
    // not Linux
  }
  return [
    ['host', hostname()],
    ['CPU', `${c.length} x ${c[0]?.model ?? 'unknown'}`],
    ['memory', `${fmt(totalmem() / 2 ** 30)} GiB`],
    ['virtualisation', virt],
    ['OS / kernel', `${os}, Linux ${release()}`],
    ['Node.js', process.version],
    ['grep', firstLine('grep', ['--version'])],
    ['systemd', firstLine('/lib/systemd/systemd', ['--version'])],
    ['dockerd', firstLine('dockerd', ['--version'])],
    ['autocannon', (JSON.parse(readFileSync(resolve(REPO_ROOT, 'node_modules/autocannon/package.json'), 'utf8')) as { version: string }).version],
  ];
}

function commit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 10_000 }).trim();
    // The tree is shared and others' work in progress is compiled too: name what differs from the commit.
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'agent', 'checks', 'remediations'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 10_000 })
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(3));
    if (!dirty.length) return sha;
    const shown = dirty.slice(0, 12).map((f) => `\`${f}\``).join(', ');
    return `${sha}, plus uncommitted changes in the measured code: ${shown}${dirty.length > 12 ? ` and ${dirty.length - 12} more` : ''}`;
  } catch {
    return 'unknown';
  }
}

function verdict(g: Goal): string {
  return g.met === undefined ? 'not judged' : g.met ? '**met**' : '**missed**';
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { only: { type: 'string' }, quick: { type: 'boolean', default: false }, out: { type: 'string' }, help: { type: 'boolean' } },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`usage: node dist/bench/run.js [--only ${STEP_IDS.join(',')}] [--quick] [--out FILE]\n`);
    return 0;
  }
  let only: StepId[] = [...STEP_IDS];
  if (values.only !== undefined) {
    const asked = values.only.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = asked.filter((a) => !(STEP_IDS as readonly string[]).includes(a));
    if (!asked.length || bad.length) {
      process.stderr.write(`--only: unknown step ${bad.map((b) => JSON.stringify(b)).join(', ') || '(none given)'}; steps: ${STEP_IDS.join(', ')}\n`);
      return 64;
    }
    only = asked as StepId[];
  }
  const quick = !!values.quick;
  const partial = quick || only.length !== STEP_IDS.length;
  const out = resolve(values.out ?? join(REPO_ROOT, 'bench', partial ? 'RESULTS.partial.md' : 'RESULTS.md'));
  const started = new Date();
  const t0 = performance.now();
  const loadStart = loadAverage();
  const reports: StepReport[] = [];
  const seconds: Partial<Record<StepId, number>> = {};
  const opts: StepOptions = { quick, log };

  for (const spec of SPECS) {
    const ids = spec.ids.filter((id) => only.includes(id));
    if (!ids.length) continue;
    const s0 = performance.now();
    log(`${ids.join(', ')}: start`);
    let got: StepReport[];
    try {
      got = spec.run ? [await spec.run(opts)] : await runScript(spec, ids, quick);
    } catch (e) {
      log(`${ids.join(', ')}: failed: ${(e as Error).stack ?? String(e)}`);
      got = ids.map((id) => notMeasured(id, `the step failed: ${(e as Error).message}`, STEP_GOALS[id]));
    }
    const took = (performance.now() - s0) / 1000;
    for (const r of got) seconds[r.id] = took / got.length;
    log(`${ids.join(', ')}: done in ${fmt(took)} s`);
    reports.push(...got);
  }
  const totalS = (performance.now() - t0) / 1000;

  const npm = process.env.npm_lifecycle_event === 'bench';
  const argv = process.argv.slice(2);
  const command = npm
    ? `\`npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}\` (the package.json script: \`${process.env.npm_lifecycle_script ?? 'npm run build --silent && node dist/bench/run.js'}\`)`
    : `\`node ${relative(REPO_ROOT, process.argv[1] ?? 'dist/bench/run.js')}${argv.length ? ` ${argv.join(' ')}` : ''}\``;
  const goals = reports.flatMap((r) => r.goals.map((g) => ({ step: r.id, ...g })));
  const md = [
    '# nodemedic benchmarks',
    '',
    `Written by ${command} on ${started.toISOString()} (took ${fmt(totalS / 60, 2)} min), commit ${commit()}.` +
      (quick ? ' **Quick run: fewer runs and shorter windows; not the figures of record.**' : '') +
      (only.length !== STEP_IDS.length ? ` **Only: ${only.join(', ')}.**` : ''),
    '',
    'Each figure is the median of several runs (the individual runs are listed beside it); each comparison is a ratio ' +
      'against a baseline measured in the same run. Benchmarks are not tests: nothing here fails CI. Re-run one step with ' +
      '`npm run bench -- --only <step>` (steps: ' +
      STEP_IDS.map((s) => `\`${s}\``).join(', ') +
      '); `--quick` for a short smoke run.',
    '',
    '## Machine',
    '',
    table(['', ''], [...machine(), ['load average (1, 5, 15 min)', `${loadStart} at the start, ${loadAverage()} at the end`]]),
    '',
    'The machine is shared: other engineers\' test suites may run during a benchmark (see the load averages), which is why ' +
      'every comparison is against a baseline taken in the same run.',
    '',
    '## Goals',
    '',
    table(
      ['goal', 'measured', 'verdict', 'margin', 'what would close it'],
      goals.map((g) => [g.goal, g.measured, verdict(g), g.margin, g.close ?? '']),
    ),
    '',
    ...reports.flatMap((r, i) => [`## ${i + 1}. ${r.title}`, '', r.measured ? '' : `**Not measured:** ${r.why ?? ''}`, r.body, '', `_Step time: ${fmt(seconds[r.id] ?? 0)} s._`, '']),
  ]
    .filter((l, i, a) => !(l === '' && a[i - 1] === ''))
    .join('\n');
  writeFileSync(out, md);
  // A full-length run of some steps (`--only`, not `--quick`) also updates those steps' sections of the
  // record (bench/RESULTS.md), so one step can be re-measured without re-running the others.
  if (partial && !quick && values.out === undefined) spliceIntoRecord(reports, seconds, command, started);
  const jsonOut = out.endsWith('.md') ? `${out.slice(0, -3)}.json` : `${out}.json`;
  writeFileSync(jsonOut, JSON.stringify({ started: started.toISOString(), command, quick, only, totalS, machine: Object.fromEntries(machine()), reports }, null, 2) + '\n');
  log(`wrote ${relative(REPO_ROOT, out)} in ${fmt(totalS / 60, 2)} min`);
  for (const g of goals) log(`${verdict(g).replace(/\*/g, '')}: ${g.goal}: ${g.measured}`);
  return 0;
}

/** Replaces (or appends) each report's `## N. Title` section in bench/RESULTS.md and its entry in RESULTS.json. */
function spliceIntoRecord(reports: StepReport[], seconds: Partial<Record<StepId, number>>, command: string, started: Date): void {
  const mdPath = join(REPO_ROOT, 'bench', 'RESULTS.md');
  const jsonPath = join(REPO_ROOT, 'bench', 'RESULTS.json');
  let md: string;
  try {
    md = readFileSync(mdPath, 'utf8');
  } catch {
    return;
  }
  for (const r of reports) {
    // A step that keeps its own marked section (soak-hostile) has already written it.
    if (md.includes(`<!-- ${r.id}:begin`)) continue;
    const lines = md.split('\n');
    const start = lines.findIndex((l) => /^## \d+\. /.test(l) && l.replace(/^## \d+\. /, '') === r.title);
    const sections = lines.filter((l) => /^## \d+\. /.test(l)).length;
    const n = start >= 0 ? Number(/^## (\d+)\./.exec(lines[start]!)![1]) : sections + 1;
    const section = [`## ${n}. ${r.title}`, '', `_Measured by ${command} on ${started.toISOString()}, commit ${commit()}._`, '', r.measured ? '' : `**Not measured:** ${r.why ?? ''}`, r.body, '', `_Step time: ${fmt(seconds[r.id] ?? 0)} s._`, ''];
    if (start < 0) {
      md = `${md.replace(/\n*$/, '\n')}\n${section.join('\n')}`;
    } else {
      let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
      if (end < 0) end = lines.length;
      md = [...lines.slice(0, start), ...section, ...lines.slice(end)].join('\n');
    }
  }
  writeFileSync(mdPath, md.replace(/\n{3,}/g, '\n\n'));
  try {
    const json = JSON.parse(readFileSync(jsonPath, 'utf8')) as { reports: StepReport[] };
    for (const r of reports) {
      const i = json.reports.findIndex((x) => x.id === r.id);
      if (i >= 0) json.reports[i] = r;
      else json.reports.push(r);
    }
    writeFileSync(jsonPath, JSON.stringify(json, null, 2) + '\n');
  } catch {
    // No record yet: the partial files have it.
  }
  log(`updated ${reports.map((r) => r.id).join(', ')} in ${relative(REPO_ROOT, mdPath)}`);
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
