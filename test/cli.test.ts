import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'nodemedic-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

// Each invalid config, and the key path its message must name.
const invalid: [string, string, RegExp][] = [
  ['bad YAML', 'checks:\n  disk: [\n', /YAML syntax/],
  ['wrong type', 'checks:\n  load:\n    maxLoadPerCpu: lots\n', /checks\.load\.maxLoadPerCpu: must be a number/],
  ['unknown key', 'checks:\n  disk:\n    maxUsedPercnt: 80\n', /checks\.disk\.maxUsedPercnt: unknown key/],
  ['percent over 100', 'checks:\n  disk:\n    maxUsedPercent: 120\n', /checks\.disk\.maxUsedPercent: must be <= 100/],
  ['negative duration', 'remediation:\n  settle: -2m\n', /remediation\.settle: must be a duration/],
];

// Every command that reads a config; `run` and `status` must refuse before doing anything.
const commands: [string, (f: string) => string[]][] = [
  ['check', (f) => ['check', '--config', f]],
  ['run', (f) => ['run', '--config', f]],
  ['status', (f) => ['status', '--config', f]],
  ['config validate', (f) => ['config', 'validate', f]],
  ['config show', (f) => ['config', 'show', f]],
];

t.test('an invalid config makes every command exit 78 naming the key path', async (t) => {
  for (const [what, text, re] of invalid) {
    const f = file(`${what.replace(/ /g, '-')}.yaml`, text);
    await Promise.all(
      commands.map(async ([name, argv]) => {
        const r = await runCli(argv(f));
        t.equal(r.code, 78, `${name} / ${what}: exit 78`);
        t.match(r.stderr, re, `${name} / ${what}: names the problem`);
      }),
    );
  }
  const viaEnv = await runCli(['check'], { env: { NODEMEDIC_CONFIG: file('env.yaml', 'checks: {disk: {maxUsedPercent: 101}}\n') } });
  t.equal(viaEnv.code, 78, '$NODEMEDIC_CONFIG is validated too');
});

t.test('usage errors exit 64 and name the flag', async (t) => {
  const cases: [string[], RegExp][] = [
    [['check', '--jsn'], /--jsn/],
    [['check', '--only', 'pleg,nope'], /--only: unknown check "nope"/],
    [['check', '--only', ''], /--only/],
    [['run', '--dry-run=yes'], /dry-run/],
    [['status', '--url'], /--url/],
    [['status', '--url', 'not a url'], /--url: not a URL/],
    [['config', 'frobnicate'], /unknown subcommand "frobnicate"/],
    [['config'], /missing argument/],
    [['version', 'extra'], /unexpected argument "extra"/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [[], /usage: nodemedic <command>/],
  ];
  for (const [argv, re] of cases) {
    const r = await runCli(argv);
    t.equal(r.code, 64, `${argv.join(' ') || '(nothing)'}: exit 64`);
    t.match(r.stderr + r.stdout, re, `${argv.join(' ') || '(nothing)'}: message`);
  }
});

t.test('config validate and show accept a valid file', async (t) => {
  const f = file('ok.yaml', 'nodeName: n1\nchecks:\n  disk:\n    maxUsedPercent: 80\n');
  const v = await runCli(['config', 'validate', f]);
  t.equal(v.code, 0);
  t.match(v.stdout, /valid/);
  const s = await runCli(['config', 'show', '--config', f]);
  t.equal(s.code, 0);
  const shown = JSON.parse(s.stdout);
  t.equal(shown.nodeName, 'n1');
  t.equal(shown.checks.disk.maxUsedPercent, 80);
  t.equal(shown.checks.disk.maxInodesUsedPercent, 90, 'defaults merged');
});

t.test('version', async (t) => {
  const r = await runCli(['version']);
  t.equal(r.code, 0);
  t.match(r.stdout, /^nodemedic \d+\.\d+\.\d+/);
});

t.test('check --json on this machine: exit code matches the results, missing daemons are unknown', async (t) => {
  // This build machine has no kubelet and (outside the tests' own daemons) no docker at the default socket.
  const r = await runCli(['check', '--json']);
  const out = JSON.parse(r.stdout) as { node: string; time: string; results: { check: string; status: string; reason: string; message: string }[] };
  t.ok(out.node, 'names the node');
  t.ok(!Number.isNaN(Date.parse(out.time)), 'has a time');
  const ids = out.results.map((x) => x.check);
  t.same(ids, ['disk', 'load', 'resources', 'kernel', 'pleg', 'kubelet', 'docker', 'containerd', 'systemd-version', 'systemd']);
  const expected = out.results.some((x) => x.status === 'problem') ? 1 : out.results.some((x) => x.status === 'unknown') ? 2 : 0;
  t.equal(r.code, expected, `exit ${expected} matches ${JSON.stringify(out.results.map((x) => `${x.check}=${x.status}`))}`);
  for (const x of out.results) {
    t.ok(['ok', 'problem', 'unknown'].includes(x.status), `${x.check} has a status`);
    t.match(x.reason, /^[A-Z][A-Za-z]+$/, `${x.check} reason is UpperCamelCase`);
    t.ok(x.message.length > 0, `${x.check} has a message`);
  }
  const kubelet = out.results.find((x) => x.check === 'kubelet')!;
  t.equal(kubelet.status, 'unknown', 'no kubelet here: unknown, not a failure');
  t.not(kubelet.reason, 'NotImplemented');
});

t.test('check --only runs just those checks', async (t) => {
  const r = await runCli(['check', '--json', '--only', 'disk,load']);
  const out = JSON.parse(r.stdout) as { results: { check: string }[] };
  t.same(out.results.map((x) => x.check), ['disk', 'load']);
});

t.test('the table names each check, its status, reason and message', async (t) => {
  const r = await runCli(['check', '--only', 'disk']);
  t.match(r.stdout, /^CHECK\s+STATUS\s+REASON\s+MESSAGE\n/);
  t.match(r.stdout, /\ndisk\s+(OK|PROBLEM|UNKNOWN)\s+[A-Z]\w+\s+\S/);
});
