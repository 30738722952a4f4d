/**
 * Adding a check is one file (issue 12): test/fixtures/checks/trivial.mjs, which nothing else in the
 * tree names, loaded with NODEMEDIC_EXTRA_CHECKS, shows up in `check`, `config show`, `/status`,
 * `/metrics`, config validation, the Node conditions and the README table check. Without the
 * variable it is nowhere, so none of this passes by accident.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { CHECK_DEFINITIONS, EXTRA_CHECKS_ENV, loadExtraChecks, neverTriggers } from '../checks/index.js';
import { conditionSources, desiredConditions } from '../remediations/kubernetes/conditions.js';
import { startAgent } from './helpers/agent.js';
import { runCli } from './helpers/cli.js';
import { readmeChecksTableProblems } from './helpers/readme-checks.js';

const TRIVIAL = fileURLToPath(new URL('./fixtures/checks/trivial.mjs', import.meta.url));
const env = { [EXTRA_CHECKS_ENV]: TRIVIAL };

t.test('check: the new check runs and sets the exit code', async (t) => {
  const ok = await runCli(['check', '--json', '--only', 'trivial'], { env });
  t.equal(ok.code, 0, ok.stderr);
  t.match(JSON.parse(ok.stdout), { results: [{ check: 'trivial', status: 'ok', reason: 'TrivialFine' }] });
  const table = await runCli(['check', '--only', 'trivial'], { env });
  t.match(table.stdout, /^trivial +OK +TrivialFine +the trivial check is fine$/m, 'and in the table');
  const without = await runCli(['check', '--only', 'trivial']);
  t.equal(without.code, 64, 'without the variable it is an unknown check');
});

t.test('config show and validation know its options', async (t) => {
  const show = await runCli(['config', 'show'], { env });
  t.equal(show.code, 0, show.stderr);
  t.match(JSON.parse(show.stdout), { checks: { trivial: { enabled: true, verdict: 'ok' } } });
  t.notMatch((await runCli(['config', 'show'])).stdout, /trivial/);
  const dir = t.testdir({
    'bad.yaml': 'checks: { trivial: { verdict: maybe } }\n',
    'trigger.yaml': 'remediation: { triggers: [trivial] }\n',
  });
  const bad = await runCli(['config', 'validate', `${dir}/bad.yaml`], { env });
  t.equal(bad.code, 78);
  t.match(bad.stderr + bad.stdout, /checks\.trivial\.verdict: must be one of "ok", "problem"/);
  const trigger = await runCli(['config', 'validate', `${dir}/trigger.yaml`], { env });
  t.equal(trigger.code, 78, 'no restart cures it (restartCures: false), so it cannot be a trigger');
  t.match(trigger.stderr + trigger.stdout, /"trivial" cannot be a trigger/);
});

t.test('a running agent: /status and /metrics', async (t) => {
  const agent = await startAgent({ checks: { disk: { paths: ['/'] }, trivial: { verdict: 'problem' } } }, { env, readyTimeoutMs: 60_000 });
  t.teardown(() => agent.stop());
  // /healthz may answer before the first sweep finished: wait for the sweep's result itself.
  type Status = { lastSweep: string | null; results: { check: string; status: string; reason: string }[] };
  let status: Status | undefined;
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
    status = (await (await fetch(`${agent.url}/status`)).json()) as Status;
    if (status.lastSweep !== null) break;
  }
  t.match(status?.results.find((r) => r.check === 'trivial'), { status: 'problem', reason: 'TrivialBroken' }, JSON.stringify(status?.results));
  const metrics = await (await fetch(`${agent.url}/metrics`)).text();
  t.match(metrics, /^nodemedic_check_status\{check="trivial",status="problem"\} 1$/m);
  t.match(metrics, /^nodemedic_check_duration_seconds\{check="trivial"\} /m);
});

t.test('the registry, Node conditions and the README table check see it', async (t) => {
  t.notOk(CHECK_DEFINITIONS.some((d) => d.id === 'trivial'), 'this process did not load it');
  const defs = [...CHECK_DEFINITIONS, ...(await loadExtraChecks(TRIVIAL))];
  t.ok(neverTriggers(defs).includes('trivial'));
  const sources = conditionSources(defs);
  t.match(sources.at(-1), { type: 'TrivialUnhealthy', checks: ['trivial'] });
  const now = new Date().toISOString();
  const conds = desiredConditions([{ check: 'trivial', status: 'problem', reason: 'TrivialBroken', message: 'm', evidence: {}, observedAt: now, durationSeconds: 0 }], undefined, sources);
  t.match(conds, [{ type: 'TrivialUnhealthy', status: 'True', reason: 'TrivialBroken' }, { type: 'RebootRequired', status: 'False' }]);
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  t.same(readmeChecksTableProblems(readme, defs), [
    "check trivial is registered but has no row in README.md's checks table (reasons: TrivialFine, TrivialBroken)",
  ], 'the README check asks for its row');
  const row = '| `trivial` | told to | `TrivialFine`, `TrivialBroken` |';
  // After the last built-in check's row: extra checks come after the built-in ones.
  const withRow = readme.replace(new RegExp(`^(\\| \`${CHECK_DEFINITIONS.at(-1)!.id}\` .*)$`, 'm'), `$1\n${row}`);
  t.same(readmeChecksTableProblems(withRow, defs), [], 'and is satisfied by it');
  await t.rejects(loadExtraChecks('relative/path.mjs'), /not an absolute path/);
});
