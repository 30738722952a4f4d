/**
 * systemd-units/nodemedic.service as systemd itself judges it: `systemd-analyze verify` prints
 * nothing (it only warns, so any output fails), the `systemd-analyze security` score recorded in
 * the README is the current one, and the example production config is valid and complete.
 * The service's behaviour under a real systemd is in install.test.ts and notify.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import t, { type Test } from 'tap';
import { parse as parseYaml } from 'yaml';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import { CLI_JS, REPO_ROOT, requireBuilt } from './helpers/built.js';
import { requireComponent } from './helpers/require.js';

const UNIT = join(REPO_ROOT, 'systemd-units', 'nodemedic.service');
const PROD_CONFIG = join(REPO_ROOT, 'systemd-units', 'config.production.yaml');
const unitText = readFileSync(UNIT, 'utf8');

/** `Key=value` assignments of a unit file, by section, in order (repeated keys kept). */
function parseUnit(text: string): Map<string, Array<[string, string]>> {
  const sections = new Map<string, Array<[string, string]>>();
  let current: Array<[string, string]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      current = [];
      sections.set(sec[1]!, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq < 1) throw new Error(`unit line outside a section or without '=': ${line}`);
    current.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return sections;
}

function values(section: string, key: string): string[] {
  return (parseUnit(unitText).get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

/**
 * Runs `systemd-analyze verify UNIT` in a throwaway mount namespace where /opt is a tmpfs holding an
 * executable /opt/nodemedic/bin/nodemedic: verify checks that ExecStart= exists, and the test must
 * not create anything under the host's /opt.
 */
async function verifyUnit(t: Test, unitPath: string): Promise<{ exitCode: number | undefined; output: string }> {
  const holder: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sleep', '120'], { stdio: 'ignore' });
  t.teardown(() => {
    holder.kill('SIGKILL');
  });
  const pid = holder.pid;
  if (!pid) throw new Error('could not start unshare');
  const self = await readlink('/proc/self/ns/mnt');
  for (let i = 0; ; i++) {
    // unshare execs sleep once the new mount namespace exists.
    const ns = await readlink(`/proc/${pid}/ns/mnt`).catch(() => self);
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (ns !== self && comm === 'sleep') break;
    if (i > 200) throw new Error('unshare did not enter a new mount namespace');
    await new Promise((r) => setTimeout(r, 10));
  }
  const inNs = (argv: string[]) =>
    execa('nsenter', ['-t', String(pid), '-m', '--', ...argv], { reject: false, timeout: 20_000, all: true, env: { LC_ALL: 'C', SYSTEMD_COLORS: '0' } });
  const m = await inNs(['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'nodemedic-verify', '/opt']);
  if (m.exitCode !== 0) throw new Error(`mount tmpfs on /opt in the private namespace failed: ${m.all}`);
  const bin = `/proc/${pid}/root/opt/nodemedic/bin`;
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'nodemedic'), '#!/bin/sh\nexit 0\n');
  await chmod(join(bin, 'nodemedic'), 0o755);
  const r = await inNs(['systemd-analyze', 'verify', '--man=no', unitPath]);
  return { exitCode: r.exitCode, output: (r.all ?? '').trim() };
}

t.test('systemd-analyze verify prints nothing for the unit', async (t) => {
  if (!(await requireComponent(t, 'systemd-analyze', ['systemd-analyze', 'unshare', 'nsenter', 'mount']))) return;
  const r = await verifyUnit(t, UNIT);
  t.equal(r.output, '', 'no output at all (verify only warns, so any line is a finding)');
  t.equal(r.exitCode, 0);

  // The same check must catch a misspelled key, or it proves nothing.
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const bad = join(dir, 'nodemedic.service');
  await writeFile(bad, unitText.replace(/^WatchdogSec=/m, 'WatchdogSecs='));
  const r2 = await verifyUnit(t, bad);
  t.match(r2.output, /Unknown key( name)? 'WatchdogSecs'/, 'a misspelled key is reported');
});

t.test('the README records the current systemd-analyze security score, with its command', async (t) => {
  if (!(await requireComponent(t, 'systemd-analyze', ['systemd-analyze'], false))) return;
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The score line names the file's unit name; analyse a copy under the installed name.
  await copyFile(UNIT, join(dir, 'nodemedic.service'));
  const r = await execa('systemd-analyze', ['security', '--offline=yes', join(dir, 'nodemedic.service')], {
    reject: false,
    timeout: 30_000,
    all: true,
    env: { LC_ALL: 'C', SYSTEMD_COLORS: '0' },
  });
  const m = /Overall exposure level for nodemedic\.service: (\d+\.\d) (\S+)/.exec(r.all ?? '');
  if (!m) return t.fail(`no score in systemd-analyze output: ${(r.all ?? '').slice(-500)}`);
  const version = /systemd (\d+)/.exec((await execa('systemd-analyze', ['--version'], { timeout: 10_000 })).stdout)?.[1];
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  t.match(readme, 'systemd-analyze security --offline=yes', 'the README shows the command');
  const recorded = /exposure level (\d+\.\d) \(\w+\) with systemd (\d+)/.exec(readme);
  if (!recorded) return t.fail('README: no "exposure level N.N (LEVEL) with systemd NNN" sentence');
  if (recorded[2] !== version) {
    t.comment(`README score is for systemd ${recorded[2]}, this is systemd ${version}: ${m[1]} ${m[2]} here`);
    return;
  }
  t.equal(recorded[1], m[1], `README score matches systemd-analyze (${m[1]} ${m[2]})`);
  t.ok(Number(m[1]) <= 3, 'exposure stays at most 3.0');
});

t.test('the unit keeps what the agent needs and what systemd-notify attribution needs', async (t) => {
  t.same(values('Service', 'Type'), ['notify']);
  t.same(values('Service', 'NotifyAccess'), ['main']);
  t.same(values('Service', 'Restart'), ['always']);
  t.same(values('Service', 'ExecReload'), ['/bin/kill -HUP $MAINPID']);
  t.ok(values('Service', 'Environment').includes('UV_THREADPOOL_SIZE=16'), 'a hung statfs pins one libuv thread of 16, not of 4');
  // V8's JIT needs writable+executable memory: MemoryDenyWriteExecute holds only without it.
  const nodeOptions = values('Service', 'Environment').map((v) => /^"?NODE_OPTIONS=([^"]*)"?$/.exec(v)?.[1]).find((v) => v !== undefined);
  t.ok(nodeOptions?.split(/\s+/).includes('--jitless'), 'the agent runs V8 without its JIT');
  t.same(values('Service', 'MemoryDenyWriteExecute'), ['yes'], 'so no memory is writable and executable');
  // deploy/build-image.sh reads them from this unit; deploy/Containerfile has its own copy.
  t.match(readFileSync(join(REPO_ROOT, 'deploy', 'Containerfile'), 'utf8'), `NODE_OPTIONS="${nodeOptions}"`, 'the Containerfile sets the same NODE_OPTIONS');
  const caps = values('Service', 'CapabilityBoundingSet').join(' ').split(/\s+/);
  // Dropping it silently breaks READY=1 under NotifyAccess=main: notify.test.ts shows systemd refusing the message.
  t.ok(caps.includes('CAP_SYS_ADMIN'), 'systemd-notify --pid needs CAP_SYS_ADMIN to send our PID');
  const watchdog = values('Service', 'WatchdogSec')[0] ?? '';
  const start = values('Service', 'TimeoutStartSec')[0] ?? '';
  t.match(watchdog, /^\d+s$/);
  // The pings come from a timer gated on sweep health, so WatchdogSec need not cover a sweep
  // interval; it must ride out event-loop stalls (GC, a CPU-starved node) without a restart.
  t.ok(parseInt(watchdog, 10) >= 30, 'WatchdogSec leaves room for event-loop stalls');
  t.ok(parseInt(start, 10) >= 30, 'TimeoutStartSec leaves room for the first sweep');
  t.same(values('Install', 'WantedBy'), ['multi-user.target']);
});

t.test('the production config is valid, enforces, and enables every check', async (t) => {
  if (!requireBuilt(t)) return;
  const r = await execa('node', [CLI_JS, 'config', 'validate', PROD_CONFIG], { reject: false, timeout: 30_000, all: true });
  t.equal(r.exitCode, 0, `nodemedic config validate: ${r.all}`);
  const cfg = parseYaml(readFileSync(PROD_CONFIG, 'utf8')) as { remediation: { mode: string }; checks: Record<string, { enabled?: boolean }>; stateDir: string };
  t.equal(cfg.remediation.mode, 'enforce');
  t.equal(cfg.stateDir, '/var/lib/nodemedic', 'install.sh rewrites exactly this line for --state-dir');
  for (const def of CHECK_DEFINITIONS) {
    t.equal(cfg.checks[def.id]?.enabled, true, `checks.${def.id}.enabled: true`);
  }
  const shown = await execa('node', [CLI_JS, 'config', 'show', PROD_CONFIG], { reject: false, timeout: 30_000 });
  const effective = JSON.parse(shown.stdout) as { checks: Record<string, { enabled: boolean }> };
  t.same(
    Object.entries(effective.checks).filter(([, c]) => !c.enabled).map(([id]) => id),
    [],
    'no check left disabled in the effective config',
  );
});
