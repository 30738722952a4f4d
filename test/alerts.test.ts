/**
 * monitoring/: the alerting rules pass `promtool check rules` and their own unit tests
 * (`promtool test rules`), and those tests can fail; the Grafana dashboard is valid JSON with the
 * data source as a variable and PromQL that promtool accepts. The rules and queries against a
 * real Prometheus scraping a real agent are in prometheus.test.ts.
 */
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import t from 'tap';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { REPO_ROOT } from './helpers/built.js';
import { dashboardQueries, loadDashboard } from './helpers/dashboard.js';
import { requireComponent } from './helpers/require.js';

const RULES = join(REPO_ROOT, 'monitoring', 'alerts.yaml');
const RULE_TESTS = join(REPO_ROOT, 'monitoring', 'alerts.test.yaml');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function promtool(args: string[], cwd?: string) {
  return execa('promtool', args, { reject: false, timeout: 60_000, all: true, ...(cwd ? { cwd } : {}) });
}

const alertsText = readFileSync(RULES, 'utf8');
const testsText = readFileSync(RULE_TESTS, 'utf8');
const rules = (): Rule[] => (parseYaml(alertsText) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);

t.test('promtool check rules monitoring/alerts.yaml', async (t) => {
  if (!(await requireComponent(t, 'promtool (Debian package prometheus)', ['promtool'], false))) return;
  const r = await promtool(['check', 'rules', RULES]);
  t.equal(r.exitCode, 0, r.all);
  t.match(r.all, new RegExp(`SUCCESS: ${rules().length} rules found`));
});

t.test('promtool test rules monitoring/alerts.test.yaml', async (t) => {
  if (!(await requireComponent(t, 'promtool (Debian package prometheus)', ['promtool'], false))) return;
  const r = await promtool(['test', 'rules', 'alerts.test.yaml'], join(REPO_ROOT, 'monitoring'));
  t.equal(r.exitCode, 0, r.all);
  t.match(r.all, /SUCCESS/);
});

t.test('the rule tests fail when a rule is loosened', async (t) => {
  if (!(await requireComponent(t, 'promtool (Debian package prometheus)', ['promtool'], false))) return;
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-alerts-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await copyFile(RULE_TESTS, join(dir, 'alerts.test.yaml'));
  const mutations: Array<[string, (s: string) => string]> = [
    ['NodemedicCheckProblem fires after 5m instead of 15m', (s) => s.replace(/for: 15m/, 'for: 5m')],
    ['NodemedicRemediationExhausted ignores whether a problem remains', (s) => s.replace(/\n\s*and on \(job, instance\)\n\s*max by \(job, instance\) \(nodemedic_check_status\{status="problem"\}\) == 1/, '')],
    ['NodemedicRebootDidNotRecover counts every exhausted episode', (s) => s.replace(', step="drain-reboot"', '')],
    [
      'NodemedicRebootDidNotRecover misses a counter that first appears at 1',
      (s) => s.replace(/\n\s*or\n\s*sum by \(job, instance\) \(\n\s*nodemedic_remediation_episodes_total[^\n]*\n\s*unless[^\n]*\n\s*\) > 0/, ''),
    ],
  ];
  for (const [what, mutate] of mutations) {
    const mutated = mutate(alertsText);
    t.not(mutated, alertsText, `mutation applies: ${what}`);
    await writeFile(join(dir, 'alerts.yaml'), mutated);
    const r = await promtool(['test', 'rules', 'alerts.test.yaml'], dir);
    t.not(r.exitCode, 0, `caught: ${what}`);
  }
});

t.test('every alert is tested firing, and says what happened and how bad it is', async (t) => {
  const tests = parseYaml(testsText) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
  const firing = new Set(tests.tests.flatMap((c) => (c.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
  const quiet = new Set(tests.tests.flatMap((c) => (c.alert_rule_test ?? []).filter((a) => a.exp_alerts.length === 0).map((a) => a.alertname)));
  const alerts = rules().filter((r) => r.alert);
  t.ok(alerts.length >= 6);
  for (const r of alerts) {
    t.ok(firing.has(r.alert!), `${r.alert}: a test where it fires`);
    t.ok(quiet.has(r.alert!), `${r.alert}: a test where it stays quiet`);
    t.match(r.labels?.severity, /^(critical|warning|info)$/, `${r.alert}: severity`);
    t.ok(r.annotations?.summary && r.annotations?.description, `${r.alert}: summary and description`);
  }
  const exprs = alerts.map((r) => r.expr).join('\n');
  for (const [metric, why] of <Array<[string, string]>>[
    ['nodemedic_check_status{status="problem"}', 'a check in problem for a while'],
    ['nodemedic_remediation_episode_state{state="exhausted"}', 'an exhausted episode'],
    ['nodemedic_remediation_budget_remaining{kind="reboot"}', 'a spent reboot budget'],
    ['up{job="nodemedic"}', 'the agent down or not scraped'],
    ['step="drain-reboot"', 'a reboot that did not recover'],
  ]) {
    t.ok(exprs.includes(metric), `covers ${why}`);
  }
});

t.test('the dashboard: valid JSON, data source as a variable, PromQL promtool accepts', async (t) => {
  const d = loadDashboard();
  t.equal(d.uid, 'nodemedic');
  const ds = d.templating.list.find((v) => v.type === 'datasource');
  t.same(ds && { name: ds.name, query: ds.query }, { name: 'datasource', query: 'prometheus' }, 'a Prometheus data source variable');
  const ids = d.panels.map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const p of d.panels) {
    if (p.type === 'row') continue;
    t.equal(p.datasource?.uid, '${datasource}', `panel "${p.title}" uses the variable`);
    for (const target of p.targets ?? []) t.equal(target.datasource?.uid, '${datasource}', `panel "${p.title}" ${target.refId} uses the variable`);
  }
  for (const v of d.templating.list.filter((v) => v.type === 'query')) t.equal(v.datasource?.uid, '${datasource}', `variable ${v.name} uses the variable`);
  t.notMatch(JSON.stringify(d), /"uid":\s*"(?!\$\{datasource\}|nodemedic")[^"]*"/, 'no hard-coded data source uid anywhere');

  const queries = dashboardQueries(d);
  const all = queries.map((q) => q.expr).join('\n');
  for (const [metric, area] of <Array<[string, string]>>[
    ['nodemedic_check_status', 'check status per node'],
    ['nodemedic_remediation_actions_total', 'remediation actions over time'],
    ['nodemedic_remediation_episode_state', 'episodes'],
    ['nodemedic_last_sweep_timestamp_seconds', 'agent health'],
    ['up{', 'agents up'],
  ]) {
    t.ok(all.includes(metric), `shows ${area}`);
  }

  if (!(await requireComponent(t, 'promtool (Debian package prometheus)', ['promtool'], false))) return;
  // promtool has no "check query"; recording rules carry the expressions through its PromQL parser.
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-dashboard-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const asRules = { groups: [{ name: 'dashboard', rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: q.expr })) }] };
  await writeFile(join(dir, 'dashboard-queries.yaml'), toYaml(asRules));
  const r = await promtool(['check', 'rules', join(dir, 'dashboard-queries.yaml')]);
  t.equal(r.exitCode, 0, `every panel query parses: ${r.all}`);
  t.match(r.all, `SUCCESS: ${queries.length} rules found`);
});
