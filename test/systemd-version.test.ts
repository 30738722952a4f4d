import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { Ajv } from 'ajv';
import { pino } from 'pino';
import t from 'tap';
import { ManualClock } from '../platform/clock.js';
import { RealHost, type CommandResult, type Host, type RunOptions } from '../platform/host.js';
import { compareEVR } from '../checks/rpm-version.js';
import { systemdVersionCheck, type SystemdVersionOptions } from '../checks/systemd-version.js';
import type { Finding } from '../checks/types.js';
import { requireComponent } from './helpers/require.js';

const corpus = new URL('./fixtures/corpus/', import.meta.url);
const versionsDir = new URL('systemd/systemctl-version/', corpus);
const logger = pino({ level: 'silent' });

/** What one scripted command does: print and exit, be absent, or hang until killed. */
type Script = { stdout?: string; stderr?: string; exitCode?: number } | 'notFound' | 'timeout';

/** A Host whose commands are scripted; only `run` is used by this check. */
class ScriptedHost implements Host {
  readonly clock = new ManualClock();
  readonly calls: { argv: readonly string[]; opts: RunOptions }[] = [];
  constructor(private readonly scripts: Record<string, Script>) {}

  async run(argv: readonly string[], opts: RunOptions): Promise<CommandResult> {
    this.calls.push({ argv, opts });
    const s = this.scripts[argv.join(' ')];
    if (s === undefined) throw new Error(`unexpected command ${argv.join(' ')}`);
    const base = { argv, stdout: '', stderr: '', timedOut: false, notFound: false, outputCapped: false };
    if (s === 'notFound') return { ...base, exitCode: undefined, notFound: true, error: `spawn ${argv[0]} ENOENT` };
    if (s === 'timeout') return { ...base, exitCode: undefined, timedOut: true, error: `timed out after ${opts.timeoutMs}ms` };
    const exitCode = s.exitCode ?? 0;
    return { ...base, stdout: s.stdout ?? '', stderr: s.stderr ?? '', exitCode, ...(exitCode ? { error: `exit ${exitCode}` } : {}) };
  }
  spawnLines(): never {
    throw new Error('not used by systemd-version');
  }
  async readFile(): Promise<string> {
    throw new Error('not used by systemd-version');
  }
  async statfs(): Promise<never> {
    throw new Error('not used by systemd-version');
  }
}

async function runCheck(host: Host, options: Partial<SystemdVersionOptions> = {}): Promise<Finding> {
  const check = systemdVersionCheck.create({ ...systemdVersionCheck.defaults, ...options }, { host, logger, nodeName: 'test' });
  return check.run(new AbortController().signal);
}

const RPM = 'rpm -q systemd';
const SYSTEMCTL = 'systemctl --version';
const outFile = (name: string): string => readFileSync(new URL(name, versionsDir), 'utf8');

t.test('rpm -q systemd below the minimum: problem with the runbook fix', async (t) => {
  // systemd/systemd#11800 reports the cookie overflow on exactly this build.
  const host = new ScriptedHost({ [RPM]: { stdout: 'systemd-219-62.el7_6.2.x86_64\n' } });
  const f = await runCheck(host);
  t.equal(f.status, 'problem');
  t.equal(f.reason, 'SystemdTooOld');
  t.match(f.message, 'yum update -y systemd && systemctl daemon-reexec');
  t.match(f.message, /sd-bus cookie/);
  t.match(f.message, /PLEG/);
  t.match(f.evidence, { version: '219-62.el7_6.2', minimum: '219-67.el7', source: RPM, el7: true });
  t.same(host.calls.map((c) => c.argv.join(' ')), [RPM], 'systemctl is not asked when rpm answered');
  t.ok(host.calls.every((c) => c.opts.timeoutMs > 0 && c.opts.onHost === true), 'every command has a timeout and runs on the host');
});

t.test('every el7 string of the corpus, as rpm -q prints it, judged by rpm order', async (t) => {
  const lines = readFileSync(new URL('systemd/systemd-el7-versions.txt', corpus), 'utf8').split('\n');
  let section = '';
  let judged = 0;
  for (const line of lines) {
    const h = /^# ([A-Z][0-9]*)\./.exec(line);
    if (h) {
      section = h[1] as string;
      continue;
    }
    if (!line || !['A', 'A2', 'C'].includes(section)) continue;
    const nvra = section === 'C' ? line.replace(/\.rpm$/, '') : `systemd-${line}.x86_64`;
    if (!nvra.startsWith('systemd-219')) continue; // systemd-libs is not what `rpm -q systemd` prints
    const f = await runCheck(new ScriptedHost({ [RPM]: { stdout: `${nvra}\n` } }));
    judged++;
    if (section === 'A2') {
      t.match(f, { status: 'unknown', reason: 'UnreadableVersion' }, `${nvra}: mangled, not guessed`);
      continue;
    }
    const vr = nvra.slice('systemd-'.length, -'.x86_64'.length);
    const below = compareEVR(vr, '219-67.el7') < 0;
    t.match(f, below ? { status: 'problem', reason: 'SystemdTooOld' } : { status: 'ok', reason: 'SystemdUpToDate' }, `${nvra}`);
    t.equal(f.evidence?.version, vr, `${nvra}: version in evidence`);
  }
  t.ok(judged >= 11, `${judged} strings judged`);
  // Spot checks that do not depend on compareEVR, so a wrong comparison cannot pass unnoticed.
  const verdict = async (nvra: string): Promise<string> => (await runCheck(new ScriptedHost({ [RPM]: { stdout: `${nvra}\n` } }))).reason;
  t.equal(await verdict('systemd-219-62.el7_6.5.x86_64'), 'SystemdTooOld');
  t.equal(await verdict('systemd-219-42.el7_4.4.x86_64'), 'SystemdTooOld');
  t.equal(await verdict('systemd-219-67.el7.x86_64'), 'SystemdUpToDate');
  t.equal(await verdict('systemd-219-73.el7.1.x86_64'), 'SystemdUpToDate');
  t.equal(await verdict('systemd-219-78.el7_9.9.x86_64'), 'SystemdUpToDate');
  t.equal(await verdict('systemd-219-67.el7.centos.x86_64'), 'SystemdUpToDate');
});

t.test('a non-el7 rpm distribution: NotApplicable', async (t) => {
  const f = await runCheck(new ScriptedHost({ [RPM]: { stdout: 'systemd-253.14-1.fc38.x86_64\n' } }));
  t.match(f, { status: 'ok', reason: 'NotApplicable', evidence: { version: '253.14-1.fc38', el7: false } });
});

t.test('several installed systemd packages: same version is fine, different versions are not guessed', async (t) => {
  const same = await runCheck(new ScriptedHost({ [RPM]: { stdout: 'systemd-219-78.el7.x86_64\nsystemd-219-78.el7.i686\n' } }));
  t.match(same, { status: 'ok', reason: 'SystemdUpToDate' });
  const diff = await runCheck(new ScriptedHost({ [RPM]: { stdout: 'systemd-219-62.el7_6.2.x86_64\nsystemd-219-78.el7.x86_64\n' } }));
  t.match(diff, { status: 'unknown', reason: 'UnreadableVersion' });
  t.match(diff.message, /several systemd versions/);
  const other = await runCheck(new ScriptedHost({ [RPM]: { stdout: 'systemd-libs-219-78.el7.x86_64\n' } }));
  t.match(other, { status: 'unknown', reason: 'UnreadableVersion' });
  const empty = await runCheck(new ScriptedHost({ [RPM]: { stdout: '' } }));
  t.match(empty, { status: 'unknown', reason: 'UnreadableVersion' });
});

t.test('no rpm: every systemctl-version/*.out, byte-exact', async (t) => {
  const files = readdirSync(versionsDir).filter((f) => f.endsWith('.out'));
  t.ok(files.length >= 9);
  for (const file of files) {
    const out = outFile(file);
    const host = new ScriptedHost({ [RPM]: 'notFound', [SYSTEMCTL]: { stdout: out } });
    const f = await runCheck(host);
    const first = out.split('\n')[0] as string;
    const build = /\((.*)\)$/.exec(first)?.[1];
    if (build === undefined) {
      // RHEL/CentOS/Oracle 7 print a bare `systemd 219`: the fix is in the release we cannot see.
      t.match(f, { status: 'unknown', reason: 'ReleaseUnknown', evidence: { version: '219' } }, file);
    } else {
      t.match(f, { status: 'ok', reason: 'NotApplicable', evidence: { version: build, source: SYSTEMCTL, rpm: 'rpm not found' } }, file);
    }
    t.same(host.calls.map((c) => c.argv.join(' ')), [RPM, SYSTEMCTL], `${file}: rpm first, then systemctl`);
  }
});

t.test('rpm present but systemd not in its database (Debian with rpm): falls back to systemctl', async (t) => {
  const host = new ScriptedHost({
    [RPM]: { stdout: 'package systemd is not installed\n', exitCode: 1 },
    [SYSTEMCTL]: { stdout: outFile('ezrizhu-cs497-debian.out') },
  });
  const f = await runCheck(host);
  t.match(f, { status: 'ok', reason: 'NotApplicable', evidence: { version: '252.19-1~deb12u1', rpm: 'systemd not installed per rpm' } });
});

t.test('a broken rpm database falls back to systemctl and keeps rpm\'s error', async (t) => {
  const host = new ScriptedHost({
    [RPM]: { stderr: 'error: rpmdb: BDB0113 Thread/process 1234/0 failed\n', exitCode: 1 },
    [SYSTEMCTL]: { stdout: outFile('ezrizhu-cs497-centos.out') },
  });
  const f = await runCheck(host);
  t.match(f, { status: 'unknown', reason: 'ReleaseUnknown', evidence: { rpm: /rpm failed: error: rpmdb/ } });
});

t.test('a bare upstream version newer than the minimum is fine anywhere', async (t) => {
  const f = await runCheck(new ScriptedHost({ [RPM]: 'notFound', [SYSTEMCTL]: { stdout: 'systemd 229\n+PAM\n' } }));
  t.match(f, { status: 'ok', reason: 'NotApplicable', evidence: { version: '229' } });
  const old = await runCheck(new ScriptedHost({ [RPM]: 'notFound', [SYSTEMCTL]: { stdout: 'systemd 208\n' } }));
  t.match(old, { status: 'unknown', reason: 'ReleaseUnknown' }, 'RHEL 7.0 shipped 208: not guessed');
});

t.test('missing tools, timeouts, failures and garbage are unknown with a reason', async (t) => {
  const cases: [string, Record<string, Script>, string][] = [
    ['nothing installed', { [RPM]: 'notFound', [SYSTEMCTL]: 'notFound' }, 'NotInstalled'],
    ['rpm says not installed, no systemctl', { [RPM]: { stdout: 'package systemd is not installed\n', exitCode: 1 }, [SYSTEMCTL]: 'notFound' }, 'NotInstalled'],
    ['rpm hangs', { [RPM]: 'timeout' }, 'CommandTimeout'],
    ['systemctl hangs', { [RPM]: 'notFound', [SYSTEMCTL]: 'timeout' }, 'CommandTimeout'],
    ['systemctl fails', { [RPM]: 'notFound', [SYSTEMCTL]: { stderr: 'Failed to connect to bus\n', exitCode: 1 } }, 'CommandFailed'],
    ['systemctl prints garbage', { [RPM]: 'notFound', [SYSTEMCTL]: { stdout: 'bash: systemctl: something odd\n' } }, 'UnreadableVersion'],
    ['systemctl prints a mangled el7 build', { [RPM]: 'notFound', [SYSTEMCTL]: { stdout: 'systemd 219 (219-78.el7~9.7)\n' } }, 'UnreadableVersion'],
    ['rpm prints a mangled release', { [RPM]: { stdout: 'systemd-219-78.el7~9.7.x86_64\n' } }, 'UnreadableVersion'],
  ];
  for (const [what, scripts, reason] of cases) {
    const f = await runCheck(new ScriptedHost(scripts));
    t.match(f, { status: 'unknown', reason }, what);
    t.ok(f.message.length > 10, `${what}: ${f.message}`);
  }
});

t.test('minimum: rpm semantics, schema validation, and robustness when validation is bypassed', async (t) => {
  const rpm = (nvra: string): ScriptedHost => new ScriptedHost({ [RPM]: { stdout: `${nvra}\n` } });
  t.match(await runCheck(rpm('systemd-219-73.el7.1.x86_64'), { minimum: '219-78.el7' }), { reason: 'SystemdTooOld' });
  t.match(await runCheck(rpm('systemd-219-62.el7_6.2.x86_64'), { minimum: '219' }), { reason: 'SystemdUpToDate' }, 'no release in minimum: any 219 build passes (rpmverCmp)');
  t.match(await runCheck(rpm('systemd-219-62.el7_6.2.x86_64'), { minimum: '219-62.el7_6.2' }), { reason: 'SystemdUpToDate' }, 'equal is enough');
  t.match(await runCheck(rpm('systemd-219-78.el7.x86_64'), { minimum: '1:219-1.el7' }), { reason: 'SystemdTooOld' }, 'epoch counts');

  const host = rpm('systemd-219-78.el7.x86_64');
  const bad = await runCheck(host, { minimum: '219_67.el7' });
  t.match(bad, { status: 'unknown', reason: 'InvalidConfig' });
  t.match(bad.message, /checks\.systemd-version\.minimum/);
  t.equal(host.calls.length, 0, 'nothing is run with an unusable minimum');

  const validate = new Ajv({ strict: true, allErrors: true }).compile(systemdVersionCheck.schema);
  t.ok(validate(systemdVersionCheck.defaults), 'defaults are valid');
  for (const m of ['219-67.el7', '219', '1:219-67.el7_7.1']) t.ok(validate({ enabled: true, minimum: m }), `minimum ${m} accepted`);
  for (const m of ['', '219_67.el7', '219-78.el7~9.7', '219 -67', 'x-y-z']) t.notOk(validate({ enabled: true, minimum: m }), `minimum ${JSON.stringify(m)} rejected`);
  t.notOk(validate({ enabled: true, minimum: '219', extra: 1 }), 'unknown keys rejected');
});

t.test('real run on this machine', async (t) => {
  if (!(await requireComponent(t, 'systemd-version (systemctl)', ['systemctl'], false))) return;
  const f = await runCheck(new RealHost());
  const first = execFileSync('systemctl', ['--version'], { encoding: 'utf8', env: { LC_ALL: 'C' } }).split('\n')[0] as string;
  const build = /^systemd (\d+)(?: \((.*)\))?$/.exec(first);
  t.ok(build, `systemctl --version says ${first}`);
  if (f.evidence?.source === RPM) {
    // An rpm-based machine: rpm answered, which is what the check must prefer.
    t.match(f, { status: /^(ok|problem)$/ });
    return;
  }
  t.match(f.evidence, { source: SYSTEMCTL, version: build?.[2] ?? build?.[1] }, 'the version systemctl reports');
  if (build?.[2]) t.match(f, { status: 'ok', reason: 'NotApplicable' }, f.message);
  t.ok((f.evidence?.version as string).startsWith(build?.[1] ?? '?'), `version ${f.evidence?.version}`);
});

t.test('a definite answer is reused for RECHECK_MS, an unknown one is not', async (t) => {
  const { RECHECK_MS } = await import('../checks/systemd-version.js');
  const host = new ScriptedHost({ [RPM]: { stdout: 'systemd-219-62.el7_6.2.x86_64\n' } });
  const check = systemdVersionCheck.create(systemdVersionCheck.defaults, { host, logger, nodeName: 'test' });
  const first = await check.run(new AbortController().signal);
  t.equal(first.reason, 'SystemdTooOld');
  host.clock.advance(RECHECK_MS - 1);
  const again = await check.run(new AbortController().signal);
  t.equal(again.reason, 'SystemdTooOld');
  t.equal(host.calls.length, 1, 'rpm not asked again within RECHECK_MS');
  t.match(again.evidence, { checkedAt: /^\d{4}-/ }, 'says when it was read');
  host.clock.advance(1);
  await check.run(new AbortController().signal);
  t.equal(host.calls.length, 2, 'asked again after RECHECK_MS');

  const flaky = new ScriptedHost({ [RPM]: 'timeout' });
  const c2 = systemdVersionCheck.create(systemdVersionCheck.defaults, { host: flaky, logger, nodeName: 'test' });
  t.equal((await c2.run(new AbortController().signal)).reason, 'CommandTimeout');
  await c2.run(new AbortController().signal);
  t.equal(flaky.calls.length, 2, 'an unknown answer is retried at once');
});
