/**
 * The operator's path, end to end, inside a real systemd (test/harness/systemd-ns.ts): `npm pack`,
 * systemd-units/install.sh into a temporary prefix, `systemctl start`, /healthz, `systemctl
 * reload`, a `kill -STOP` that systemd's watchdog answers with a restart, `systemctl stop` within
 * 5 s, and the uninstall that keeps config and state unless asked.
 *
 * Nothing here touches the host's /opt, /etc/nodemedic, /var/lib/nodemedic or systemd: install.sh
 * gets temporary paths and a `--systemctl` that enters the namespace, and a `systemctl` that
 * refuses to run is first on its PATH in case anything still called the host's.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import t from 'tap';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import { requireSystemdNs, startSystemdNs, waitFor, type SystemdNs } from './harness/systemd-ns.js';
import { REPO_ROOT, requireBuilt } from './helpers/built.js';
import { which } from './helpers/require.js';
import { freePort } from './helpers/agent.js';

const INSTALL_SH = join(REPO_ROOT, 'systemd-units', 'install.sh');

/**
 * A config a test can run anywhere: loopback only, dry-run, every check on with short timeouts
 * (they run for real inside the sandbox: systemctl, journalctl, the runtime sockets, statfs).
 * The Kubernetes checks are off: there is no API server.
 */
function testConfig(port: number, stateDir: string, nodeName: string): string {
  const checks: Record<string, unknown> = {};
  for (const def of CHECK_DEFINITIONS) checks[def.id] = { enabled: true };
  for (const id of ['node-ready', 'stuck-pods']) if (id in checks) checks[id] = { enabled: false };
  checks.disk = { enabled: true, paths: ['/', stateDir], timeout: '2s' };
  checks.kubelet = { enabled: true, timeout: '2s' };
  checks.docker = { enabled: true, timeout: '2s' };
  checks.containerd = { enabled: true, timeout: '2s' };
  return [
    '# install.test.ts',
    `nodeName: ${nodeName}`,
    `http: { listen: "127.0.0.1:${port}" }`,
    'schedule: "*/2 * * * * *"',
    `stateDir: ${stateDir}`,
    `checks: ${JSON.stringify(checks)}`,
    'remediation: { mode: dry-run }',
    '',
  ].join('\n');
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> } | undefined> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  } catch {
    return undefined;
  }
}

async function healthz(port: number): Promise<{ status: number; text: string } | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
    return { status: r.status, text: (await r.text()).trim() };
  } catch {
    return undefined;
  }
}

async function show(ns: SystemdNs, ...props: string[]): Promise<Record<string, string>> {
  const r = await ns.systemctl('show', 'nodemedic.service', '-p', props.join(','));
  return Object.fromEntries(r.stdout.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** The agent's own log lines (pino JSON on stdout, kept by journald under the unit). */
async function agentLog(ns: SystemdNs): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for (const e of await ns.unitEvents('nodemedic.service')) {
    if (e.fromSystemd || !e.message.startsWith('{')) continue;
    try {
      out.push(JSON.parse(e.message) as Record<string, unknown>);
    } catch {
      // A line cut by journald's line limit; not ours to judge here.
    }
  }
  return out;
}

t.test('npm pack -> install.sh -> systemctl start/reload/watchdog/stop -> uninstall, in a real systemd', async (t) => {
  if (!(await requireSystemdNs(t))) return;
  if (!requireBuilt(t, ['agent/cli.ts', 'agent/notify.ts', 'agent/agent.ts'])) return;
  const systemctlPath = which('systemctl');
  if (!systemctlPath) return t.fail('systemctl not found');

  // Not under /tmp: the unit's PrivateTmp=yes would hide the installed files from the agent.
  const base = await mkdtemp('/var/lib/nodemedic-install-test-');
  let ns: SystemdNs | undefined;
  t.teardown(async () => {
    await ns?.stop();
    await rm(base, { recursive: true, force: true });
  });
  const prefix = join(base, 'opt');
  const configDir = join(base, 'etc');
  const stateDir = join(base, 'state');
  const guard = join(base, 'guard');
  await mkdir(guard);
  await writeFile(join(guard, 'systemctl'), '#!/bin/sh\necho "install.test: refusing to run the host\'s systemctl $*" >&2\nexit 99\n');
  await chmod(join(guard, 'systemctl'), 0o755);

  const pack = await execa('npm', ['pack', '--pack-destination', base, '--silent'], { cwd: REPO_ROOT, reject: false, timeout: 120_000 });
  t.equal(pack.exitCode, 0, `npm pack: ${pack.stderr}`);
  const tarball = join(base, pack.stdout.trim().split('\n').at(-1) ?? '');
  t.ok(existsSync(tarball), `tarball ${tarball}`);
  const listing = await execa('tar', ['-tzf', tarball], { timeout: 30_000 });
  for (const f of ['package/systemd-units/install.sh', 'package/systemd-units/nodemedic.service', 'package/systemd-units/config.production.yaml', 'package/dist/agent/cli.js', 'package/dist/agent/notify.js']) {
    t.ok(listing.stdout.split('\n').includes(f), `the tarball ships ${f}`);
  }
  t.notOk(listing.stdout.includes('package/node_modules/'), 'no node_modules in the tarball');

  ns = await startSystemdNs({ name: 'install', start: [] });
  const port = await freePort();
  const nsSystemctl = ['nsenter', '-t', String(ns.pid), '-m', '-p', '--', systemctlPath].join(' ');
  const installArgs = ['--prefix', prefix, '--config-dir', configDir, '--state-dir', stateDir, '--unit-dir', ns.unitsDir, '--systemctl', nsSystemctl];
  const env = { PATH: `${guard}:${process.env.PATH ?? '/usr/bin:/bin'}` };

  // An operator's existing config: install.sh must keep it byte for byte.
  await mkdir(configDir);
  const config = join(configDir, 'config.yaml');
  const ourConfig = testConfig(port, stateDir, 'install-test-node');
  await writeFile(config, ourConfig);
  // The test's short watchdog, as an operator would override it: a drop-in next to install.sh's.
  await mkdir(join(ns.unitsDir, 'nodemedic.service.d'));
  await writeFile(join(ns.unitsDir, 'nodemedic.service.d', '50-test.conf'), '[Service]\nWatchdogSec=3s\nRestartSec=1s\n');

  const began = Date.now();
  const inst = await execa(INSTALL_SH, [...installArgs, tarball], { env, reject: false, timeout: 240_000, all: true });
  t.equal(inst.exitCode, 0, `install.sh exits 0:\n${inst.all}`);
  t.comment(`install.sh took ${Date.now() - began} ms`);
  t.match(inst.all, /keeping the existing .*config\.yaml/);
  t.notMatch(inst.all ?? '', /refusing to run the host/, "the host's systemctl was never called");
  t.equal(await readFile(config, 'utf8'), ourConfig, 'the existing config is untouched');
  t.equal(
    await readFile(join(ns.unitsDir, 'nodemedic.service'), 'utf8'),
    readFileSync(join(REPO_ROOT, 'systemd-units', 'nodemedic.service'), 'utf8'),
    'the unit is the shipped one',
  );
  const paths = await readFile(join(ns.unitsDir, 'nodemedic.service.d', '10-install-paths.conf'), 'utf8');
  t.match(paths, `ExecStart=${prefix}/bin/nodemedic run --config ${config}`);
  t.match(paths, `ReadWritePaths=${stateDir}`);
  t.ok(existsSync(join(prefix, 'lib', 'node_modules', 'nodemedic', 'node_modules', 'fastify')), 'production dependencies installed');
  t.notOk(existsSync(join(prefix, 'lib', 'node_modules', 'nodemedic', 'node_modules', 'tap')), 'dev dependencies not installed');
  t.equal((statSync(stateDir).mode & 0o777).toString(8), '700', 'state directory 0700');

  t.equal((await ns.systemctl('is-enabled', 'nodemedic.service')).stdout.trim(), 'enabled');
  const started = await show(ns, 'ActiveState', 'SubState', 'MainPID', 'NRestarts', 'Type');
  t.same([started.ActiveState, started.Type, started.NRestarts], ['active', 'notify', '0'], 'install.sh started it (Type=notify)');
  // install.sh's `systemctl restart` returned after READY=1, which the agent sends after its first sweep.
  const hz = await healthz(port);
  t.same(hz, { status: 200, text: 'ok' }, '/healthz answers');
  const status = await getJson(`http://127.0.0.1:${port}/status`);
  t.equal(status?.body.node, 'install-test-node');
  t.not(status?.body.lastSweep, null, 'a sweep had finished when systemctl start returned');
  t.ok(Array.isArray(status?.body.results) && (status?.body.results as unknown[]).length > 0, 'results for the enabled checks');
  const firstPid = started.MainPID!;

  // --- reload: SIGHUP via ExecReload, same process, new config.
  await writeFile(config, ourConfig.replace('nodeName: install-test-node', 'nodeName: reloaded-node'));
  const rl = await ns.systemctl('reload', 'nodemedic.service');
  t.equal(rl.exitCode, 0, `systemctl reload: ${rl.stderr}`);
  await waitFor(async () => (await getJson(`http://127.0.0.1:${port}/status`))?.body.node === 'reloaded-node', {
    timeoutMs: 10_000,
    what: '/status to show the reloaded nodeName',
  });
  t.equal((await show(ns, 'MainPID')).MainPID, firstPid, 'reloaded in place, not restarted');
  // journald takes the line from the agent's stdout on its own time: /status can be ahead of the journal.
  await waitFor(async () => (await agentLog(ns!)).some((l) => l.msg === 'configuration reloaded'), {
    timeoutMs: 10_000,
    what: "the agent's log to say it reloaded",
  });
  t.pass("the agent's log says it reloaded");
  // An invalid config is rejected by the running agent, which keeps the last good one.
  await writeFile(config, ourConfig.replace('schedule: "*/2 * * * * *"', 'schedule: "every now and then"'));
  t.equal((await ns.systemctl('reload', 'nodemedic.service')).exitCode, 0);
  await waitFor(async () => (await agentLog(ns!)).some((l) => String(l.msg).startsWith('reload rejected')), { timeoutMs: 10_000, what: 'reload rejected in the log' });
  t.same((await healthz(port))?.status, 200, 'still serving after a rejected reload');
  t.equal((await getJson(`http://127.0.0.1:${port}/status`))?.body.node, 'reloaded-node', 'the last good config stays');
  await writeFile(config, ourConfig);

  // --- watchdog: a stopped process sends no WATCHDOG=1; systemd kills and restarts it.
  const stopAt = Date.now();
  const kill = await execa('nsenter', ['-t', String(ns.pid), '-m', '-p', '--', 'kill', '-STOP', firstPid], { reject: false, timeout: 10_000 });
  t.equal(kill.exitCode, 0, `kill -STOP ${firstPid}: ${kill.stderr}`);
  const after = await waitFor(
    async () => {
      const s = await show(ns!, 'ActiveState', 'MainPID', 'NRestarts');
      return s.ActiveState === 'active' && s.MainPID !== firstPid && s.MainPID !== '0' ? s : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, what: 'systemd to restart the stopped agent' },
  );
  t.comment(`restarted ${Date.now() - stopAt} ms after SIGSTOP (WatchdogSec=3s, RestartSec=1s)`);
  t.equal(after.NRestarts, '1', 'one automatic restart');
  const events = await ns.unitEvents('nodemedic.service');
  t.ok(
    events.some((e) => e.fromSystemd && /Watchdog timeout \(limit 3s\)!/.test(e.message)),
    "systemd's journal shows the watchdog timeout",
  );
  t.ok(events.some((e) => e.fromSystemd && /Failed with result 'watchdog'/.test(e.message)), "result 'watchdog'");
  await waitFor(async () => (await healthz(port))?.status === 200, { timeoutMs: 20_000, what: '/healthz after the restart' });

  // --- stop: SIGTERM, clean exit, well within 5 s.
  const stopBegan = Date.now();
  const stop = await ns.systemctl('stop', 'nodemedic.service');
  const took = Date.now() - stopBegan;
  t.equal(stop.exitCode, 0, stop.stderr);
  t.ok(took < 5000, `systemctl stop took ${took} ms`);
  const stopped = await show(ns, 'ActiveState', 'Result', 'ExecMainStatus');
  t.same([stopped.ActiveState, stopped.Result, stopped.ExecMainStatus], ['inactive', 'success', '0'], 'exit status 0, not killed');
  // journald reads the agent's stdout asynchronously: its last lines may land just after the exit.
  const cleanStop = await waitFor(
    async () => {
      const log = await agentLog(ns!);
      return log.some((l) => l.msg === 'stopping' && l.signal === 'SIGTERM') && log.some((l) => l.msg === 'stopped');
    },
    { timeoutMs: 5000, intervalMs: 200, what: "the agent's stop lines in the journal" },
  ).catch(() => false);
  t.ok(cleanStop, 'the agent logged its clean stop');
  t.notOk(
    (await ns.unitEvents('nodemedic.service')).some(
      (e) => e.realtimeUs >= stopBegan * 1000 && e.fromSystemd && /State 'stop-sigterm' timed out|Killing process|SIGKILL/.test(e.message),
    ),
    'nothing had to be killed on stop',
  );
  t.equal(await healthz(port), undefined, 'the port is closed');

  // --- uninstall keeps config and state; --purge removes them.
  await writeFile(join(stateDir, 'state.json'), '{}');
  const un = await execa(INSTALL_SH, ['--uninstall', ...installArgs], { env, reject: false, timeout: 120_000, all: true });
  t.equal(un.exitCode, 0, `install.sh --uninstall:\n${un.all}`);
  t.notMatch(un.all ?? '', /refusing to run the host/);
  t.notOk(existsSync(join(ns.unitsDir, 'nodemedic.service')), 'unit removed');
  t.notOk(existsSync(join(ns.unitsDir, 'nodemedic.service.d', '10-install-paths.conf')), "install.sh's drop-in removed");
  t.ok(existsSync(join(ns.unitsDir, 'nodemedic.service.d', '50-test.conf')), "another drop-in is not install.sh's to remove");
  t.match((await ns.systemctl('show', 'nodemedic.service', '-p', 'LoadState')).stdout, 'LoadState=not-found', 'systemd no longer knows it');
  t.notOk(existsSync(join(prefix, 'lib', 'node_modules', 'nodemedic')), 'package removed');
  t.notOk(existsSync(prefix), 'the emptied prefix is gone');
  t.ok(existsSync(config) && existsSync(join(stateDir, 'state.json')), 'config and state kept');

  const purge = await execa(INSTALL_SH, ['--uninstall', '--purge', ...installArgs], { env, reject: false, timeout: 120_000, all: true });
  t.equal(purge.exitCode, 0, `install.sh --uninstall --purge:\n${purge.all}`);
  t.notOk(existsSync(config), 'config removed');
  t.notOk(existsSync(stateDir), 'state removed');
});

t.test('install.sh refuses bad input before touching anything', async (t) => {
  const run = (args: string[]) => execa(INSTALL_SH, args, { reject: false, timeout: 30_000, all: true, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  const cases: Array<[string[], number, RegExp]> = [
    [['--prefix'], 64, /--prefix: needs a value/],
    [['--prefix', 'relative/dir', 'x.tgz'], 64, /--prefix: must be an absolute path/],
    [['--state-dir', '/var/lib/node medic', 'x.tgz'], 64, /--state-dir: only letters, digits/],
    [['--config-dir', '/'], 64, /--config-dir: must be an absolute path other than \//],
    [['--bogus'], 64, /unknown option --bogus/],
    [['--purge'], 64, /--purge goes with --uninstall/],
    [[], 64, /give the npm pack tarball/],
    [['/nonexistent/nodemedic-0.0.0.tgz'], 66, /tarball not found: \/nonexistent\/nodemedic-0\.0\.0\.tgz/],
    [['a.tgz', 'b.tgz'], 64, /unexpected argument 'b\.tgz'/],
  ];
  for (const [args, code, message] of cases) {
    const r = await run(args);
    t.equal(r.exitCode, code, `install.sh ${args.join(' ')} exits ${code}`);
    t.match(r.all, message);
  }
  const help = await run(['--help']);
  t.equal(help.exitCode, 0);
  t.match(help.all, /--systemctl CMD/);
});
