/**
 * sd_notify: agent/notify.ts's logic, then the real agent under the real systemd of a test
 * namespace, with the shipped unit's sandbox: the unit stays `activating` until the first sweep
 * finished (READY=1), WATCHDOG=1 pings arrive attributed to the main PID and keep it alive,
 * STOPPING=1 comes on shutdown; and without CAP_SYS_ADMIN systemd refuses the messages (why the
 * unit keeps it).
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import t, { type Test } from 'tap';
import type { CheckResult } from '../checks/types.js';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import {
  SystemdNotifier,
  superviseWithSystemd,
  sweepStatus,
  watchdogTimeoutMs,
  type NotifyOutcome,
  type ServiceNotifier,
} from '../agent/notify.js';
import { requireSystemdNs, startSystemdNs, waitFor, type SystemdNs } from './harness/systemd-ns.js';
import { CLI_JS, REPO_ROOT, requireBuilt } from './helpers/built.js';
import { freePort } from './helpers/agent.js';

const silent = pino({ level: 'silent' });

/** A logger that keeps what it logs, to assert on the operator-facing messages. */
function recordingLogger(): { logger: Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s) as { level: number; msg: string }) });
  return { logger, lines };
}

t.test('watchdogTimeoutMs follows sd_watchdog_enabled(3)', async (t) => {
  t.equal(watchdogTimeoutMs({}, 10), undefined, 'no WATCHDOG_USEC: no watchdog');
  t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: '60000000' }, 10), 60_000);
  t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: '3000000', WATCHDOG_PID: '10' }, 10), 3000);
  t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: '3000000', WATCHDOG_PID: '11' }, 10), undefined, 'meant for another process');
  t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: '0' }, 10), undefined);
  t.equal(watchdogTimeoutMs({ WATCHDOG_USEC: 'soon' }, 10), undefined, 'garbage is ignored');
});

t.test('SystemdNotifier without NOTIFY_SOCKET is a no-op and unsets nothing it was not given', async (t) => {
  const env: NodeJS.ProcessEnv = { PATH: '/usr/bin' };
  const n = new SystemdNotifier({ env, logger: silent, command: '/nonexistent/systemd-notify' });
  t.equal(n.enabled, false);
  t.same(await n.send(['READY=1']), { sent: false, why: 'disabled' }, 'nothing is run (the command does not even exist)');
  t.same(env, { PATH: '/usr/bin' });
});

t.test('SystemdNotifier reads and then unsets the systemd variables', async (t) => {
  const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '4000000', WATCHDOG_PID: '42', KEEP: '1' };
  const n = new SystemdNotifier({ env, pid: 42, logger: silent, unsetEnvironment: true });
  t.equal(n.enabled, true);
  t.equal(n.watchdogMs, 4000);
  t.same(env, { KEEP: '1' }, 'children (systemctl, journalctl) do not inherit them');
});

t.test('SystemdNotifier refuses, without throwing, what cannot be one notification line', async (t) => {
  const n = new SystemdNotifier({ env: { NOTIFY_SOCKET: '/x' }, logger: silent, unsetEnvironment: false, command: '/nonexistent/systemd-notify' });
  t.match(await n.send(['READY=1\nMAINPID=1']), { sent: false, why: 'failed', error: /single-line KEY=VALUE/ });
  t.match(await n.send(['ready']), { sent: false, why: 'failed', error: /single-line KEY=VALUE.*"ready"/ });
});

t.test('a missing systemd-notify is reported once, by name, and never throws', async (t) => {
  const { logger, lines } = recordingLogger();
  const n = new SystemdNotifier({ env: { NOTIFY_SOCKET: '/run/x' }, logger, command: '/nonexistent/systemd-notify', unsetEnvironment: false });
  const a = await n.send(['WATCHDOG=1']);
  const b = await n.send(['WATCHDOG=1']);
  t.equal(a.sent, false);
  t.match(a, { why: 'failed', error: /\/nonexistent\/systemd-notify not found in PATH \(it ships with systemd\)/ });
  t.same(a, b);
  t.equal(lines.filter((l) => /notification to systemd failed/.test(l.msg)).length, 1, 'logged once, not on every ping');
});

t.test('a real systemd-notify without a listener fails with its own message', async (t) => {
  const { logger, lines } = recordingLogger();
  const dir = await mkdtemp('/tmp/nodemedic-notify-');
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const n = new SystemdNotifier({ env: { NOTIFY_SOCKET: join(dir, 'nobody-listens') }, logger, unsetEnvironment: false, timeoutMs: 5000 });
  const r = await n.send(['READY=1']);
  t.match(r, { sent: false, why: 'failed', error: /systemd-notify exited 1/ });
  t.ok(lines.some((l) => l.level >= 50), 'logged as an error');
});

/** An agent double at the EventEmitter boundary; `health` is set by the test. */
class AgentDouble extends EventEmitter {
  health = { ok: true, detail: 'sweeping' };
  healthy(): { ok: boolean; detail: string } {
    return this.health;
  }
}

class RecordingNotifier implements ServiceNotifier {
  readonly messages: string[][] = [];
  constructor(
    readonly enabled: boolean,
    readonly watchdogMs: number | undefined,
  ) {}
  async send(assignments: readonly string[]): Promise<NotifyOutcome> {
    if (!this.enabled) return { sent: false, why: 'disabled' };
    this.messages.push([...assignments]);
    return { sent: true };
  }
}

const result = (check: string, status: CheckResult['status'], reason: string): CheckResult => ({
  check,
  status,
  reason,
  message: '',
  evidence: {},
  observedAt: new Date(0).toISOString(),
  durationSeconds: 0,
});

t.test('superviseWithSystemd: READY after ready, STATUS per sweep, WATCHDOG only while healthy, STOPPING', async (t) => {
  const agent = new AgentDouble();
  const n = new RecordingNotifier(true, 200);
  const s = superviseWithSystemd(agent, n, silent);
  t.teardown(() => s.close());

  agent.emit('sweep', [result('disk', 'ok', 'DiskUsageNormal')]);
  t.same(n.messages, [], 'nothing before ready: systemd must not see READY before the first sweep');
  agent.emit('ready');
  t.same(n.messages[0], ['READY=1', 'STATUS=serving; first sweep done']);

  agent.emit('sweep', [result('disk', 'ok', 'DiskUsageNormal'), result('pleg', 'problem', 'PLEGUnhealthy')]);
  t.same(n.messages[1], ['STATUS=2 checks: 1 ok, 1 problem, 0 unknown; problem: pleg (PLEGUnhealthy)', 'WATCHDOG=1']);

  await new Promise((r) => setTimeout(r, 350));
  const pings = n.messages.slice(2).filter((m) => m.length === 1 && m[0] === 'WATCHDOG=1').length;
  t.ok(pings >= 2, `the timer pings every watchdogMs/2 (${pings} pings in 350 ms)`);

  agent.health = { ok: false, detail: 'last sweep finished 50s ago (limit 45s)' };
  const before = n.messages.length;
  await new Promise((r) => setTimeout(r, 350));
  agent.emit('sweep', [result('disk', 'ok', 'DiskUsageNormal')]);
  t.same(n.messages.slice(before), [['STATUS=1 checks: 1 ok, 0 problem, 0 unknown']], 'no WATCHDOG=1 while the sweep loop is unhealthy');

  await s.stopping();
  t.same(n.messages.at(-1), ['STOPPING=1', 'STATUS=stopping']);
  s.close();
  const after = n.messages.length;
  agent.health = { ok: true, detail: 'sweeping' };
  await new Promise((r) => setTimeout(r, 250));
  t.equal(n.messages.length, after, 'close() stops the timer');
});

t.test('superviseWithSystemd without NOTIFY_SOCKET listens to nothing', async (t) => {
  const agent = new AgentDouble();
  const s = superviseWithSystemd(agent, new RecordingNotifier(false, undefined), silent);
  t.equal(agent.listenerCount('ready') + agent.listenerCount('sweep'), 0);
  await s.stopping();
  s.close();
});

t.test('sweepStatus stays one bounded line', async (t) => {
  const many = Array.from({ length: 100 }, (_, i) => result(`check-${i}`, 'problem', 'SomethingQuiteLongAndDescriptive'));
  const line = sweepStatus(many);
  t.ok(line.length <= 400);
  t.notMatch(line, /\n/);
  t.equal(sweepStatus([result('odd\ncheck', 'problem', 'Two\nLines')]), '1 checks: 0 ok, 1 problem, 0 unknown; problem: odd check (Two Lines)');
});

// ---------------------------------------------------------------------------------------------
// The real agent under a real systemd.

/** A kubelet healthz endpoint whose answers wait until `release()`: it holds the agent's first sweep. */
async function heldHealthz(t: Test): Promise<{ url: string; release(): void; requests(): number }> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let count = 0;
  const server = http.createServer((req, res) => {
    count++;
    void released.then(() => res.end('ok'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    release();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`, release, requests: () => count };
}

/** Only the kubelet check, pointed at `healthzUrl`; every other check off. */
function agentConfig(port: number, stateDir: string, healthzUrl: string): string {
  const checks: Record<string, unknown> = {};
  for (const def of CHECK_DEFINITIONS) checks[def.id] = { enabled: false };
  checks.kubelet = { enabled: true, unit: 'kubelet', healthzUrl, timeout: '30s' };
  return JSON.stringify({
    http: { listen: `127.0.0.1:${port}` },
    schedule: '*/1 * * * * *',
    stateDir,
    checks,
    remediation: { mode: 'dry-run' },
  });
}

/**
 * Installs the shipped unit verbatim plus a drop-in (as install.sh does) that runs this checkout's
 * compiled agent, keeps the state directory under `base` (the namespace shares the host's
 * /var/lib) and adds `extra` lines. Everything else, the sandbox included, is as shipped.
 */
async function installUnit(ns: SystemdNs, base: string, config: string, extra: string[]): Promise<void> {
  const shipped = readFileSync(join(REPO_ROOT, 'systemd-units', 'nodemedic.service'), 'utf8');
  const dropin = [
    '[Service]',
    'ExecStart=',
    `ExecStart=/usr/bin/env node ${CLI_JS} run --config ${config}`,
    'StateDirectory=',
    `ReadWritePaths=${join(base, 'state')}`,
    'RestartSec=1s',
    // The shipped PrivateTmp=yes would hide a checkout under /tmp (CI may clone there) from the agent.
    ...(/^\/(var\/)?tmp\//.test(REPO_ROOT) ? ['PrivateTmp=no'] : []),
    ...extra,
    '',
  ].join('\n');
  await writeFile(join(ns.unitsDir, 'nodemedic.service'), shipped);
  await ns.addUnit('nodemedic.service.d/50-test.conf', dropin);
}

async function show(ns: SystemdNs, unit: string): Promise<Record<string, string>> {
  const r = await ns.systemctl('show', unit, '-p', 'ActiveState,SubState,MainPID,NRestarts,StatusText,Result');
  return Object.fromEntries(r.stdout.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** What PID 1 logged about `unit`, without its `unit: ` prefix. */
async function systemdLines(ns: SystemdNs, unit: string): Promise<string[]> {
  return (await ns.unitEvents(unit)).filter((e) => e.fromSystemd).map((e) => e.message.replace(`${unit}: `, ''));
}

async function healthz(port: number): Promise<number | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
    return r.status;
  } catch {
    return undefined;
  }
}

t.test('under a real systemd: READY=1 after the first sweep, WATCHDOG=1 from the main PID, STOPPING=1', async (t) => {
  if (!(await requireSystemdNs(t))) return;
  if (!requireBuilt(t, ['agent/cli.ts', 'agent/notify.ts', 'agent/agent.ts'])) return;
  // Not under /tmp: the unit's PrivateTmp=yes would hide it from the agent.
  const base = await mkdtemp('/var/lib/nodemedic-notify-test-');
  let ns: SystemdNs | undefined;
  t.teardown(async () => {
    await ns?.stop();
    await rm(base, { recursive: true, force: true });
  });
  await mkdir(join(base, 'state'), { mode: 0o700 });
  const port = await freePort();
  const held = await heldHealthz(t);
  const config = join(base, 'config.json');
  await writeFile(config, agentConfig(port, join(base, 'state'), held.url));

  // A kubelet for the kubelet check to find active (its healthz is the held server).
  ns = await startSystemdNs({ name: 'notify', units: { 'kubelet.service': '[Service]\nExecStart=/bin/sleep infinity\n' } });
  // Debug logging makes PID 1 log every notification with the PID it attributed it to.
  t.equal((await ns.systemctl('log-level', 'debug')).exitCode, 0);
  await installUnit(ns, base, config, ['WatchdogSec=2s']);
  const start = await ns.systemctl('start', '--no-block', 'nodemedic.service');
  t.equal(start.exitCode, 0, start.stderr);

  // The HTTP server answers before the first sweep is over; the unit must still be starting.
  // Generous: a loaded CI machine can take many seconds to start Node.js and load the agent.
  await waitFor(async () => (await healthz(port)) === 200, { timeoutMs: 60_000, what: "the agent's /healthz" });
  await waitFor(() => held.requests() > 0, { timeoutMs: 10_000, what: 'the first sweep to reach the held kubelet healthz' });
  // Held for longer than WatchdogSec: systemd arms the watchdog only after READY=1.
  await new Promise((r) => setTimeout(r, 3000));
  const starting = await show(ns, 'nodemedic.service');
  t.equal(starting.ActiveState, 'activating', 'serving, first sweep not finished: still activating');
  t.equal(starting.SubState, 'start');
  t.equal(starting.NRestarts, '0', 'no watchdog kill while starting');

  held.release();
  await waitFor(async () => (await show(ns!, 'nodemedic.service')).ActiveState === 'active', { timeoutMs: 20_000, what: 'active after READY=1' });
  const running = await show(ns, 'nodemedic.service');
  const mainPid = running.MainPID!;
  const lines = await systemdLines(ns, 'nodemedic.service');
  t.ok(
    lines.some((l) => l.startsWith(`Got notification message from PID ${mainPid} (MAINPID=${mainPid}, READY=1`)),
    `READY=1 attributed to the main PID ${mainPid}`,
  );

  // Three watchdog periods later it is still the same process, kept alive by its pings.
  await new Promise((r) => setTimeout(r, 6000));
  const later = await show(ns, 'nodemedic.service');
  t.same([later.ActiveState, later.MainPID, later.NRestarts], ['active', mainPid, '0'], 'pings keep it alive');
  t.match(later.StatusText, /^1 checks: 1 ok, 0 problem, 0 unknown$/, 'STATUS= from the last sweep, for systemctl status');
  const pings = (await systemdLines(ns, 'nodemedic.service')).filter((l) => l.startsWith(`Got notification message from PID ${mainPid} (`) && l.includes('WATCHDOG=1'));
  t.ok(pings.length >= 4, `WATCHDOG=1 from the main PID (${pings.length} in 6 s with WatchdogSec=2s)`);

  const began = Date.now();
  const stop = await ns.systemctl('stop', 'nodemedic.service');
  const took = Date.now() - began;
  t.equal(stop.exitCode, 0, stop.stderr);
  t.ok(took < 5000, `stopped in ${took} ms`);
  const stopped = await show(ns, 'nodemedic.service');
  t.same([stopped.ActiveState, stopped.Result], ['inactive', 'success'], 'a clean exit');
  t.ok(
    (await systemdLines(ns, 'nodemedic.service')).some((l) => l.startsWith(`Got notification message from PID ${mainPid} (MAINPID=${mainPid}, STOPPING=1`)),
    'STOPPING=1 on shutdown',
  );
});

t.test('under a real systemd: without CAP_SYS_ADMIN systemd refuses READY=1 (NotifyAccess=main)', async (t) => {
  if (!(await requireSystemdNs(t))) return;
  if (!requireBuilt(t, ['agent/cli.ts', 'agent/notify.ts'])) return;
  const base = await mkdtemp('/var/lib/nodemedic-notify-test-');
  let ns: SystemdNs | undefined;
  t.teardown(async () => {
    await ns?.stop();
    await rm(base, { recursive: true, force: true });
  });
  await mkdir(join(base, 'state'), { mode: 0o700 });
  const port = await freePort();
  const config = join(base, 'config.json');
  // Answers at once: the first sweep is quick, so only the refused READY=1 can keep it from starting.
  const hz = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => hz.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => hz.close(() => r())));
  await writeFile(config, agentConfig(port, join(base, 'state'), `http://127.0.0.1:${(hz.address() as AddressInfo).port}/healthz`));

  ns = await startSystemdNs({ name: 'notify-nocap', start: [] });
  // The start timeout must leave a loaded machine time to get as far as sending READY=1.
  await installUnit(ns, base, config, ['CapabilityBoundingSet=', 'CapabilityBoundingSet=CAP_DAC_READ_SEARCH', 'TimeoutStartSec=20s', 'Restart=no']);
  t.equal((await ns.systemctl('start', '--no-block', 'nodemedic.service')).exitCode, 0);
  await waitFor(async () => (await show(ns!, 'nodemedic.service')).ActiveState === 'failed', { timeoutMs: 60_000, what: 'the start job to fail' });
  t.pass('the start job fails');
  const lines = await systemdLines(ns, 'nodemedic.service');
  t.ok(lines.some((l) => /Got notification message from PID \d+, but reception only permitted for main PID \d+/.test(l)), 'the message carried the sender\'s PID and was refused');
  t.ok(lines.some((l) => /start operation timed out/.test(l)), 'so the start timed out');
});
