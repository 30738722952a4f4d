/**
 * Soak against a hostile cluster (issue 14): `nodemedic run` for 30 minutes at a 1 s schedule, every
 * check enabled, with a Kubernetes API server that accepts connections and never answers. What is
 * judged is whether memory keeps growing: RSS (from /proc) and the V8 heap (the agent's own
 * `nodejs_heap_size_used_bytes` on /metrics), sampled every 10 s, and the slope of a least-squares line
 * through the samples after a warm-up.
 *
 * The agent runs from a copy of dist/ taken at the start, so that rebuilding the tree while the soak
 * runs does not change the code being measured; the report names the commit the copy came from.
 *
 * A full run also writes its section into bench/RESULTS.md between soak-hostile markers (the rest of
 * that file is left as it is), because a partial run of run.ts only writes RESULTS.partial.md.
 */
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmt, freePort, httpGet, loadAverage, readRss, REPO_ROOT, sleep, stopChild, table, waitFor200, type StepOptions, type StepReport } from './lib.js';

const SAMPLE_MS = 10_000;

interface Sample {
  /** Seconds since the agent answered /healthz first. */
  t: number;
  rssKiB: number;
  heapUsedBytes: number | undefined;
  healthz: number | undefined;
}

/** Least-squares slope of y over x (per unit of x); NaN for fewer than two points. */
export function slope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** An API server that accepts every connection and never says a word (a hung kube-apiserver). */
async function hangingApiServer(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let total = 0;
  const server = createServer((s) => {
    total++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    // Read and drop what the client sends, never answer.
    s.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    connections: () => total,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function headCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 10_000 }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'agent', 'checks', 'remediations', 'platform'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 10_000 }).trim();
    return dirty ? `${sha} (with uncommitted changes in the measured code)` : sha;
  } catch {
    return 'unknown';
  }
}

function heapUsed(metrics: string): number | undefined {
  const m = /^nodejs_heap_size_used_bytes (\S+)/m.exec(metrics);
  return m ? Number(m[1]) : undefined;
}

const MARK_BEGIN = '<!-- soak-hostile:begin (written by bench/soak-hostile.ts) -->';
const MARK_END = '<!-- soak-hostile:end -->';

/** Replaces (or appends) this step's section of bench/RESULTS.md, leaving every other line as it is. */
function writeIntoResults(section: string): void {
  const file = join(REPO_ROOT, 'bench', 'RESULTS.md');
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# nodemedic benchmarks\n';
  const block = `${MARK_BEGIN}\n${section.trim()}\n${MARK_END}`;
  const b = old.indexOf(MARK_BEGIN);
  const e = old.indexOf(MARK_END);
  const next = b >= 0 && e > b ? old.slice(0, b) + block + old.slice(e + MARK_END.length) : `${old.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next);
}

export async function soakHostile(opts: StepOptions): Promise<StepReport> {
  const durationS = Number(process.env.NODEMEDIC_SOAK_SECONDS) || (opts.quick ? 120 : 1800);
  const warmupS = Math.min(300, Math.round(durationS / 6));
  const commit = headCommit();
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-soak-hostile-'));
  const api = await hangingApiServer();
  let child: ReturnType<typeof spawn> | undefined;
  try {
    // A frozen copy of the compiled code; node_modules resolves through a symlink beside it.
    cpSync(join(REPO_ROOT, 'dist'), join(dir, 'app', 'dist'), { recursive: true });
    cpSync(join(REPO_ROOT, 'package.json'), join(dir, 'app', 'package.json'));
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'app', 'node_modules'));
    const port = await freePort();
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{ name: hang, cluster: { server: "http://127.0.0.1:' + api.port + '", insecure-skip-tls-verify: true } }]',
        'users: [{ name: u, user: { token: soak } }]',
        'contexts: [{ name: c, context: { cluster: hang, user: u } }]',
        'current-context: c',
        '',
      ].join('\n'),
    );
    const cfg = join(dir, 'config.yaml');
    const { CHECK_DEFINITIONS } = (await import(join(dir, 'app', 'dist', 'checks', 'index.js'))) as { CHECK_DEFINITIONS: { id: string }[] };
    const checks = CHECK_DEFINITIONS.map((d) => `  ${d.id}: { enabled: true }`).join('\n');
    writeFileSync(
      cfg,
      [
        `nodeName: soak-node`,
        `http: { listen: "127.0.0.1:${port}" }`,
        `schedule: "* * * * * *"`,
        `stateDir: ${JSON.stringify(join(dir, 'state'))}`,
        `log: { level: warn }`,
        `kubernetes: { kubeconfig: ${JSON.stringify(kubeconfig)} }`,
        `checks:`,
        checks,
        '',
      ].join('\n'),
    );
    const logFile = join(dir, 'agent.log');
    const { openSync, closeSync } = await import('node:fs');
    const fd = openSync(logFile, 'w');
    child = spawn(process.execPath, [join(dir, 'app', 'dist', 'agent', 'cli.js'), 'run', '--config', cfg], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, NODEMEDIC_CONFIG: '' },
    });
    closeSync(fd);
    await waitFor200(`http://127.0.0.1:${port}/healthz`, { timeoutMs: 60_000, intervalMs: 100, child, what: 'nodemedic run' });
    const t0 = performance.now();
    opts.log(`soak-hostile: agent up (pid ${child.pid}), ${durationS} s at a 1 s schedule, API server at 127.0.0.1:${api.port} never answers`);
    const samples: Sample[] = [];
    let metricFailures = 0;
    for (;;) {
      const t = (performance.now() - t0) / 1000;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the agent exited (${child.exitCode ?? child.signalCode}) after ${fmt(t)} s; see its log`);
      const rss = readRss(child.pid!);
      let heap: number | undefined;
      let healthz: number | undefined;
      try {
        heap = heapUsed((await httpGet(`http://127.0.0.1:${port}/metrics`, 5000)).body);
      } catch {
        metricFailures++;
      }
      try {
        healthz = (await httpGet(`http://127.0.0.1:${port}/healthz`, 5000)).status;
      } catch {
        healthz = undefined;
      }
      if (rss) samples.push({ t, rssKiB: rss.rssKiB, heapUsedBytes: heap, healthz });
      if (samples.length % 18 === 0) opts.log(`soak-hostile: ${fmt(t, 4)} s, RSS ${fmt((rss?.rssKiB ?? NaN) / 1024)} MiB, heap ${fmt((heap ?? NaN) / 2 ** 20)} MiB`);
      if (t >= durationS) break;
      await sleep(Math.min(SAMPLE_MS, Math.max(0, (durationS - t) * 1000)));
    }
    const finalStatus = await httpGet(`http://127.0.0.1:${port}/status`, 5000).catch((e: Error) => ({ status: 0, body: e.message }));
    let sweeps = 'unknown';
    let statuses = '';
    try {
      const st = JSON.parse(finalStatus.body) as { lastSweep?: unknown; results?: { check: string; status: string; reason: string }[] };
      sweeps = JSON.stringify(st.lastSweep ?? null);
      statuses = (st.results ?? []).map((r) => `\`${r.check}\` ${r.status} (${r.reason})`).join(', ');
    } catch {
      statuses = `(no /status: ${finalStatus.body.slice(0, 200)})`;
    }
    const after = samples.filter((s) => s.t >= warmupS);
    const rssSlope = slope(after.map((s) => [s.t / 60, s.rssKiB / 1024])); // MiB per minute
    const heapPts = after.filter((s) => s.heapUsedBytes !== undefined).map((s) => [s.t / 60, s.heapUsedBytes! / 2 ** 20] as const);
    const heapSlope = slope(heapPts);
    const first = after[0];
    const last = samples[samples.length - 1];
    const maxRss = Math.max(...samples.map((s) => s.rssKiB));
    const healthzBad = samples.filter((s) => s.healthz !== 200).length;
    const perHour = (x: number) => fmt(x * 60);
    const body = [
      `Method: \`nodemedic run\` (a frozen copy of dist/ from commit ${commit}) for ${fmt(durationS / 60)} min at \`schedule: "* * * * * *"\` ` +
        `with every check enabled (${CHECK_DEFINITIONS.map((d) => `\`${d.id}\``).join(', ')}), \`remediation.mode\` at its default, and ` +
        '`kubernetes.kubeconfig` pointing at a loopback API server that accepts every connection and never answers. ' +
        `Every ${SAMPLE_MS / 1000} s: RSS from /proc/<pid>/status and \`nodejs_heap_size_used_bytes\` from the agent's /metrics, ` +
        `and /healthz. Slopes are least-squares lines through the samples after a ${warmupS} s warm-up.`,
      '',
      table(
        ['figure', 'value'],
        [
          ['samples (after warm-up)', `${samples.length} (${after.length})`],
          ['RSS at warm-up end / at the end / max', `${fmt((first?.rssKiB ?? NaN) / 1024)} / ${fmt((last?.rssKiB ?? NaN) / 1024)} / ${fmt(maxRss / 1024)} MiB`],
          ['RSS slope', `${fmt(rssSlope)} MiB/min (${perHour(rssSlope)} MiB/h)`],
          ['heap used at warm-up end / at the end', `${fmt((first?.heapUsedBytes ?? NaN) / 2 ** 20)} / ${fmt((last?.heapUsedBytes ?? NaN) / 2 ** 20)} MiB`],
          ['heap slope', `${fmt(heapSlope)} MiB/min (${perHour(heapSlope)} MiB/h)`],
          ['/metrics scrapes that failed', String(metricFailures)],
          ['/healthz samples not 200', `${healthzBad} of ${samples.length}`],
          ['connections the hung API server accepted', String(api.connections())],
          ['last sweep', sweeps],
          ['check results at the end', statuses || '(none)'],
        ],
      ),
      '',
      `No pass/fail goal: a flat line (a slope near 0 with RSS well under its max) is what "bounded" looks like. Load average at the end: ${loadAverage()}.`,
    ].join('\n');
    if (!opts.quick && !process.env.NODEMEDIC_SOAK_SECONDS) writeIntoResults(`## Soak: 30 min, 1 s schedule, hung API server (issue 14)\n\nWritten on ${new Date().toISOString()}.\n\n${body}`);
    return {
      id: 'soak-hostile',
      title: 'Soak: 30 min, 1 s schedule, hung API server',
      measured: true,
      body,
      goals: [],
      data: { durationS, warmupS, commit, samples, rssSlopeMiBPerMin: rssSlope, heapSlopeMiBPerMin: heapSlope },
    };
  } finally {
    if (child) await stopChild(child);
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
