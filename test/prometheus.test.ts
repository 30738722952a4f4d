/**
 * A real Prometheus (Debian's package) scraping a real agent: `nodemedic_check_status` over the
 * HTTP API goes from ok to problem when the disk it watches fills up; the alerting rules load and
 * evaluate against the live series (NodemedicCheckProblem turns pending); every dashboard query
 * runs. The disk is a 4 MiB tmpfs mounted in the agent's own mount namespace (unshare), so the
 * host's mount table never changes and the mount goes away with the agent.
 */
import { type ResultPromise, execa } from 'execa';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import { waitFor } from './harness/systemd-ns.js';
import { CLI_JS, REPO_ROOT, requireBuilt } from './helpers/built.js';
import { dashboardQueries } from './helpers/dashboard.js';
import { requireComponent } from './helpers/require.js';
import { freePort } from './helpers/agent.js';

interface PromVector {
  metric: Record<string, string>;
  value: [number, string];
}

async function promApi<T>(base: string, path: string, params: Record<string, string> = {}): Promise<T> {
  const url = new URL(path, base);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = (await r.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`${url.pathname}?${url.searchParams}: ${body.error ?? r.status}`);
  return body.data;
}

const query = (base: string, q: string): Promise<{ resultType: string; result: PromVector[] }> => promApi(base, '/api/v1/query', { query: q });

/** Every metric name an expression mentions (identifiers followed by `{`, or bare before an operator). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:nodemedic|process|nodejs)_[a-z0-9_]+|up)\b(?=\s*\{|\s*[)\s=<>*+-]|$)/g)].map((m) => m[1]!);
}

t.test('a real Prometheus sees nodemedic_check_status go from ok to problem', async (t) => {
  if (!(await requireComponent(t, 'prometheus (Debian package prometheus)', ['prometheus', 'promtool', 'unshare', 'nsenter', 'mount']))) return;
  if (!requireBuilt(t)) return;
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-prometheus-'));
  const procs: ResultPromise[] = [];
  t.teardown(async () => {
    for (const p of procs) {
      p.kill('SIGTERM');
      await Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
      p.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  });

  // The agent: only the disk check, on a path that exists once the tmpfs is mounted.
  const mnt = join(dir, 'mnt');
  const watched = join(mnt, 'data');
  await mkdir(mnt);
  const agentPort = await freePort();
  const checks: Record<string, unknown> = {};
  for (const def of CHECK_DEFINITIONS) checks[def.id] = { enabled: false };
  checks.disk = { enabled: true, paths: [watched], maxUsedPercent: 50, maxInodesUsedPercent: 90, timeout: '2s' };
  const config = join(dir, 'nodemedic.json');
  await writeFile(
    config,
    JSON.stringify({ http: { listen: `127.0.0.1:${agentPort}` }, schedule: '*/1 * * * * *', stateDir: join(dir, 'state'), checks, remediation: { mode: 'dry-run' } }),
  );
  // unshare execs node: the agent's PID is the child's, and its mount namespace is its own.
  const agent = execa('unshare', ['--mount', '--propagation', 'private', '--', process.execPath, CLI_JS, 'run', '--config', config], {
    reject: false,
    stdin: 'ignore',
    env: { NODEMEDIC_CONFIG: '' },
  });
  procs.push(agent);
  const pid = agent.pid!;
  const self = await readlink('/proc/self/ns/mnt');
  await waitFor(async () => (await readlink(`/proc/${pid}/ns/mnt`)) !== self, { timeoutMs: 10_000, what: "the agent's own mount namespace" });
  const mount = await execa('nsenter', ['-t', String(pid), '-m', '--', 'mount', '-t', 'tmpfs', '-o', 'size=4m,mode=0755', 'nodemedic-test', mnt], { reject: false, timeout: 10_000, all: true });
  t.equal(mount.exitCode, 0, `tmpfs mounted in the agent's namespace: ${mount.all}`);
  // Through the agent's root, so the directory is made on its tmpfs, not on the host's disk.
  await mkdir(`/proc/${pid}/root${watched}`);
  await waitFor(
    async () => {
      const r = await fetch(`http://127.0.0.1:${agentPort}/status`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
      const body = r && ((await r.json()) as { results: Array<{ check: string; status: string }> });
      return body?.results.find((x) => x.check === 'disk')?.status === 'ok';
    },
    { timeoutMs: 20_000, what: 'the agent to see the empty tmpfs as ok' },
  );

  // Prometheus, scraping every second and evaluating our rules.
  const promPort = await freePort();
  const prom = `http://127.0.0.1:${promPort}`;
  await writeFile(
    join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: [${JSON.stringify(join(REPO_ROOT, 'monitoring', 'alerts.yaml'))}]`,
      'scrape_configs:',
      '  - job_name: nodemedic',
      `    static_configs: [{ targets: ["127.0.0.1:${agentPort}"] }]`,
      '',
    ].join('\n'),
  );
  const prometheus = execa(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
    { reject: false, stdin: 'ignore', all: true },
  );
  procs.push(prometheus);
  await waitFor(async () => (await fetch(`${prom}/-/ready`).catch(() => undefined))?.status === 200, { timeoutMs: 20_000, what: 'Prometheus ready' });

  const okSeen = await waitFor(
    async () => (await query(prom, 'nodemedic_check_status{job="nodemedic", check="disk", status="ok"} == 1')).result[0],
    { timeoutMs: 30_000, intervalMs: 500, what: 'Prometheus to have scraped disk ok' },
  );
  t.equal(okSeen.metric.instance, `127.0.0.1:${agentPort}`);
  t.same((await query(prom, 'up{job="nodemedic"}')).result.map((v) => v.value[1]), ['1'], 'the target is up');

  // Fill the tmpfs past maxUsedPercent (50%): 3 MiB of 4.
  await writeFile(`/proc/${pid}/root${watched}/fill`, Buffer.alloc(3 * 1024 * 1024, 1));
  const filledAt = Date.now() / 1000;
  const problem = await waitFor(
    async () => (await query(prom, 'nodemedic_check_status{job="nodemedic", check="disk", status="problem"} == 1')).result[0],
    { timeoutMs: 30_000, intervalMs: 500, what: 'Prometheus to see disk in problem' },
  );
  t.equal(problem.metric.instance, `127.0.0.1:${agentPort}`);
  t.same((await query(prom, 'nodemedic_check_status{check="disk", status="ok"}')).result.map((v) => v.value[1]), ['0'], 'ok is now 0');

  // The history, as a range query: ok before the fill, problem after, never both at once.
  const range = await promApi<{ result: Array<{ values: Array<[number, string]> }> }>(prom, '/api/v1/query_range', {
    query: 'nodemedic_check_status{check="disk", status="problem"} - ignoring (status) nodemedic_check_status{check="disk", status="ok"}',
    start: String(Math.floor(okSeen.value[0])),
    end: String(Math.ceil(problem.value[0])),
    step: '1',
  });
  const points = range.result[0]?.values ?? [];
  const series = points.map(([, v]) => Number(v));
  t.equal(series[0], -1, 'starts ok');
  t.equal(series.at(-1), 1, 'ends problem');
  t.same(series.filter((v) => v !== 1 && v !== -1), [], 'exactly one of ok/problem at every step');
  const flip = series.findIndex((v) => v === 1);
  t.equal(flip, series.lastIndexOf(-1) + 1, 'one transition, ok -> problem');
  t.ok((points[flip]?.[0] ?? 0) >= filledAt - 1, 'the transition follows the fill');

  // Our alerting rules on the live series: all evaluate cleanly; the problem alert waits out its `for`.
  type RuleState = { name: string; health: string; lastError?: string; state?: string; alerts?: Array<{ labels: Record<string, string>; state: string }> };
  const evaluated = await waitFor(
    async () => {
      const data = await promApi<{ groups: Array<{ rules: RuleState[] }> }>(prom, '/api/v1/rules');
      const all = data.groups.flatMap((g) => g.rules);
      return all.length > 0 && all.every((r) => r.health !== 'unknown') ? all : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 500, what: 'every rule evaluated' },
  );
  const expected = (parseYaml(readFileSync(join(REPO_ROOT, 'monitoring', 'alerts.yaml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string }> }> }).groups.flatMap((g) => g.rules.map((r) => r.alert));
  t.same(evaluated.map((r) => r.name).sort(), [...expected].sort(), 'Prometheus loaded every rule of alerts.yaml');
  for (const r of evaluated) t.equal(r.health, 'ok', `${r.name} evaluates: ${r.lastError ?? ''}`);
  const pending = await waitFor(
    async () =>
      (await promApi<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>(prom, '/api/v1/alerts')).alerts.find(
        (a) => a.labels.alertname === 'NodemedicCheckProblem' && a.labels.check === 'disk',
      ),
    { timeoutMs: 15_000, intervalMs: 500, what: 'NodemedicCheckProblem for disk' },
  );
  t.equal(pending.state, 'pending', 'NodemedicCheckProblem is pending (for: 15m)');
  t.equal(pending.labels.instance, `127.0.0.1:${agentPort}`);

  // The dashboard's queries run on this Prometheus; those over the agent's own metrics return data.
  const scraped = await (await fetch(`http://127.0.0.1:${agentPort}/metrics`)).text();
  const exported = new Set([...scraped.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
  // A labelled counter nobody incremented yet has a TYPE line but no series.
  const withSeries = new Set([...scraped.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1]!));
  for (const q of dashboardQueries()) {
    const names = metricNames(q.expr).filter((n) => n !== 'up');
    const r = await query(prom, q.expr).catch((e: Error) => e);
    if (r instanceof Error) {
      t.fail(`dashboard "${q.panel}" ${q.refId}: ${r.message}`);
      continue;
    }
    if (names.length && names.every((n) => withSeries.has(n))) {
      t.ok(r.result.length > 0 || /> 0$|== 1$/.test(q.expr.trim()), `dashboard "${q.panel}" ${q.refId} returns data`);
    }
  }

  // Every metric the rules and panels use is one the agent defines.
  const wanted = new Set([...dashboardQueries().flatMap((q) => metricNames(q.expr)), ...evaluated.flatMap((r) => metricNames(JSON.stringify(r)))]);
  wanted.delete('up');
  for (const name of [...wanted].sort()) {
    const present = exported.has(name) || exported.has(name.replace(/_total$/, ''));
    t.ok(present, `the agent exports ${name}`);
  }
});
