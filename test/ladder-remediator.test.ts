// The Remediator in-process, against a real systemd namespace for its actions: startup with a
// corrupt state file, no action without a durable intent, judgment at settle through requestSweep,
// stop() finishing an action in flight, and /status.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import t from 'tap';
import { resolveConfig, type Config } from '../agent/config.js';
import { RealHost } from '../platform/host.js';
import { parseSystemdTimestamp } from '../platform/systemd-unit.js';
import type { CheckResult, CheckStatus } from '../checks/types.js';
import { createRemediator } from '../remediations/index.js';
import type { ActionName, ActionResult } from '../remediations/types.js';
import { requireComponent } from './helpers/require.js';
import { requireSystemdNs, startSystemdNs, waitFor, type SystemdNs } from './harness/systemd-ns.js';

function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { logger: pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }), lines };
}

function result(check: string, status: CheckStatus, at = Date.now(), reason = status === 'ok' ? 'Fine' : 'Broken'): CheckResult {
  return { check, status, reason, message: `${check} ${status}`, observedAt: new Date(at).toISOString(), durationSeconds: 0, evidence: {} };
}

/** Results of a node where only kubelet matters (docker and containerd absent). */
function sweep(kubelet: CheckStatus, at = Date.now()): CheckResult[] {
  return [result('kubelet', kubelet, at), result('docker', 'unknown', at, 'NotInstalled'), result('containerd', 'unknown', at, 'NotInstalled')];
}

async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-remediator-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function config(stateDir: string, prefix: string[], remediation: Record<string, unknown>): Config {
  return resolveConfig({ stateDir, hostCommandPrefix: prefix, remediation: { mode: 'enforce', grace: '0s', settle: '1s', ...remediation } });
}

function recorder(): { calls: [ActionName, ActionResult][]; record: (a: ActionName, r: ActionResult) => void } {
  const calls: [ActionName, ActionResult][] = [];
  return { calls, record: (a, r) => void calls.push([a, r]) };
}

t.test('a corrupt state file at start: kept aside, error logged and shown, no reboot request for 24h', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'state.json'), '{"version":1,"seq":');
  const { logger, lines } = capture();
  const rec = recorder();
  const cfg = config(dir, [], { steps: ['drain-reboot'] });
  const r = createRemediator({ config: cfg, host: new RealHost(), logger, recordAction: rec.record });
  await r.start();
  t.match(r.status(), { error: /state file was corrupt \(not JSON: .*\); kept at .*state\.json\.corrupt-/, budgets: { rebootsPerDay: { noRebootBefore: /^\d{4}-/ } } });
  t.ok((await readdir(dir)).some((f) => f.startsWith('state.json.corrupt-')));
  t.ok(lines.some((l) => l.level === 50 && /corrupt/.test(String(l.msg))), 'an error in the log');
  await r.afterSweep(sweep('problem', Date.now() - 60_000));
  t.same(rec.calls, [['reboot', 'skipped']], 'the reboot step is skipped: conservative state');
  t.match(r.status(), { recentActions: [{ action: 'reboot', result: 'skipped', detail: /no reboot request before/ }], exhausted: { waitingForOk: ['kubelet'] } });
  await r.stop();
});

t.test('drain-reboot goes to the DrainRebooter, which counts its own actions', async (t) => {
  const dir = await tempDir(t);
  const rec = recorder();
  const calls: { episodeId: string; reason: string; dryRun: boolean }[] = [];
  const r = createRemediator({
    config: config(dir, [], { steps: ['drain-reboot'] }),
    host: new RealHost(),
    logger: capture().logger,
    recordAction: rec.record,
    drainRebooter: {
      async requestDrainReboot(req) {
        calls.push(req);
        return { result: 'failure', detail: 'drain timed out; rolled back' };
      },
    },
  });
  await r.start();
  await r.afterSweep(sweep('problem', Date.now() - 60_000));
  await waitFor(() => (r.status().recentActions as { result: string }[])[0]?.result === 'failure', { timeoutMs: 60_000, what: 'the outcome' });
  t.equal(calls.length, 1);
  t.match(calls[0], { episodeId: /-1$/, reason: /kubelet still failing/, dryRun: false });
  t.match(r.status(), { rebootRequested: true, rebootRequest: { result: 'failure', detail: 'drain timed out; rolled back' } });
  t.same(rec.calls, [], 'the ladder does not count what the DrainRebooter counts');
  await r.stop();

  const dir2 = await tempDir(t);
  const rec2 = recorder();
  const r2 = createRemediator({
    config: config(dir2, [], { steps: ['drain-reboot'] }),
    host: new RealHost(),
    logger: capture().logger,
    recordAction: rec2.record,
    drainRebooter: {
      async requestDrainReboot() {
        throw new Error('API client exploded');
      },
    },
  });
  await r2.start();
  await r2.afterSweep(sweep('problem', Date.now() - 60_000));
  await waitFor(() => rec2.calls.length === 1, { timeoutMs: 60_000, what: 'the failure' });
  t.same(rec2.calls, [['reboot', 'failure']], 'a DrainRebooter that throws: counted as a failure by the ladder');
  t.match(r2.status(), { recentActions: [{ result: 'failure', detail: 'drain-reboot failed: API client exploded' }] });
  await r2.stop();
});

t.test('inconsistent remediation config is refused with key paths', async (t) => {
  const dir = await tempDir(t);
  const problems = ['remediation.firstStep.pleg: step "drain-reboot" is not in remediation.steps (restart-kubelet)'];
  // Config validation refuses it (every command exits 78)...
  t.throws(() => config(dir, [], { firstStep: { pleg: 'drain-reboot' }, steps: ['restart-kubelet'] }), { name: 'ConfigError', problems });
  // ...and the remediator still refuses a config that bypassed validation.
  const cfg = config(dir, [], {});
  cfg.remediation.firstStep = { pleg: 'drain-reboot' };
  cfg.remediation.steps = ['restart-kubelet'];
  t.throws(() => createRemediator({ config: cfg, host: new RealHost(), logger: capture().logger, recordAction: () => {} }), {
    name: 'ConfigError',
    problems,
  });
});

t.test('with a real systemd', async (t) => {
  if (!(await requireComponent(t, 'systemd namespace', ['systemctl', 'journalctl', 'unshare', 'nsenter', 'script', 'timeout']))) return;
  if (!(await requireSystemdNs(t))) return;
  const ns: SystemdNs = await startSystemdNs({
    t,
    name: 'remediator',
    units: {
      'kubelet.service': '[Service]\nExecStart=/bin/sleep infinity\n',
      'kubelet2.service': '[Service]\nExecStart=/bin/sleep infinity\n',
      'kubelet3.service': '[Service]\nExecStart=/bin/sleep infinity\n',
      // ExecStop makes every stop take 2 s, whenever it comes (a TERM trap can race the shell's start-up).
      'slowstop.service': '[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sleep 2\n',
    },
  });
  const host = new RealHost({ commandPrefix: ns.prefix });
  const stops = async (unit: string) => (await ns.unitEvents(`${unit}.service`)).filter((e) => e.fromSystemd && e.jobType === 'stop' && /^Stopping /.test(e.message)).length;
  // A unit younger than settle (1 s) is not restarted, and these remediators have no requestSweep to
  // come back: wait until the namespace's unit is older than that (systemd's timestamps have 1 s steps).
  const olderThanSettle = (unit: string) =>
    waitFor(
      async () => {
        const at = parseSystemdTimestamp((await ns.systemctl('show', '--property=ActiveEnterTimestamp', '--value', unit)).stdout.trim());
        return at !== undefined && Date.now() - at > 2000;
      },
      { timeoutMs: 30_000, what: `${unit} active for more than settle` },
    );

  await t.test('no durable intent, no action; once the state can be written, the restart happens', async (t) => {
    const dir = await tempDir(t);
    const { logger, lines } = capture();
    const rec = recorder();
    const r = createRemediator({ config: config(dir, ns.prefix, {}), host, logger, recordAction: rec.record });
    await r.start();
    // A non-empty directory where the state file goes: every atomic rename onto it fails.
    await mkdir(join(dir, 'state.json', 'blocker'), { recursive: true });
    await r.afterSweep(sweep('problem', Date.now() - 60_000));
    t.same(rec.calls, [], 'nothing recorded');
    t.match(r.status(), { error: /cannot write .*state\.json/, episode: null });
    t.ok(lines.some((l) => l.level === 50 && l.msg === 'cannot persist remediation state; taking no action'));
    await new Promise((res) => setTimeout(res, 500));
    t.equal(await stops('kubelet'), 0, "systemd's journal: kubelet not restarted");

    await rm(join(dir, 'state.json'), { recursive: true });
    await olderThanSettle('kubelet');
    await r.afterSweep(sweep('problem', Date.now() - 60_000));
    await waitFor(() => rec.calls.length === 1, { timeoutMs: 60_000, what: "the restart outcome" });
    t.same(rec.calls, [['restart_kubelet', 'success']]);
    t.equal(await stops('kubelet'), 1);
    await r.stop();
  });

  await t.test('at the end of settle the remediator asks for a sweep of the triggers and judges at once', async (t) => {
    const dir = await tempDir(t);
    const { logger, lines } = capture();
    const rec = recorder();
    const asked: (readonly string[] | undefined)[] = [];
    const cfg = config(dir, ns.prefix, {});
    cfg.checks.kubelet!.unit = 'kubelet2';
    const r = createRemediator({
      config: cfg,
      host,
      logger,
      recordAction: rec.record,
      requestSweep: async (only) => {
        asked.push(only);
        return sweep('ok');
      },
    });
    await r.start();
    await r.afterSweep(sweep('problem', Date.now() - 60_000));
    await waitFor(() => rec.calls.length === 1, { timeoutMs: 60_000, what: 'the restart outcome' });
    const restartedAt = Date.now();
    t.same(rec.calls, [['restart_kubelet', 'success']]);
    const st = r.status();
    t.match(st, {
      mode: 'enforce',
      paused: false,
      episode: { id: String, trigger: 'kubelet', startedAt: /Z$/, step: 'restart-kubelet', stepStartedAt: /Z$/, nextDecisionAt: /Z$/, state: 'active', phase: 'settling' },
      budgets: { restartsPerHour: { limit: 3, used: { kubelet2: 1 } }, rebootsPerDay: { limit: 1, used: 0 } },
      rebootRequested: false,
      recentActions: [{ action: 'restart_kubelet', unit: 'kubelet2', result: 'success', at: /Z$/, finishedAt: /Z$/ }],
    }, '/status while settling');
    // No further afterSweep: only the settle timer can end the episode.
    await waitFor(() => (r.status().episode as { state?: string } | null)?.state === 'recovered', { timeoutMs: 60_000, what: 'recovered via requestSweep' });
    const took = Date.now() - restartedAt;
    t.ok(took >= 900 && took < 3000, `judged right after settle (1s): ${took} ms`);
    t.same(asked, [cfg.remediation.triggers], 'asked once, for the trigger checks');
    const decision = lines.find((l) => l.msg === 'episode recovered');
    t.match(decision, { episodeId: /^\d{8}T\d{6}Z-1$/, decision: 'none', events: [/recovered after restart-kubelet/] }, 'one log line with the episode id');
    t.equal(await stops('kubelet2'), 1);
    await r.stop();
  });

  await t.test('stop() lets an action in flight finish and records its outcome', async (t) => {
    const dir = await tempDir(t);
    const rec = recorder();
    const cfg = config(dir, ns.prefix, {});
    cfg.checks.kubelet!.unit = 'slowstop';
    const r = createRemediator({ config: cfg, host, logger: capture().logger, recordAction: rec.record });
    await r.start();
    await r.afterSweep(sweep('problem', Date.now() - 60_000));
    t.match(r.status(), { recentActions: [{ action: 'restart_kubelet', unit: 'slowstop', result: 'in_progress' }] });
    const t0 = Date.now();
    await r.stop();
    t.ok(Date.now() - t0 >= 1000, 'stop waited for the restart (the unit takes 2s to stop)');
    t.same(rec.calls, [['restart_kubelet', 'success']]);
    const again = createRemediator({ config: cfg, host, logger: capture().logger, recordAction: () => {} });
    await again.start();
    t.match(again.status(), { recentActions: [{ action: 'restart_kubelet', result: 'success' }] }, 'the outcome is on disk');
    t.notOk((again.status().recentActions as { inferred?: boolean }[])[0]!.inferred, 'recorded, not inferred');
    await again.stop();
  });

  await t.test('a unit that started less than settle ago is not restarted: the step waits until it is settle old', async (t) => {
    const dir = await tempDir(t);
    const rec = recorder();
    const cfg = config(dir, ns.prefix, { settle: '1m' });
    cfg.checks.kubelet!.unit = 'kubelet3';
    const r = createRemediator({ config: cfg, host, logger: capture().logger, recordAction: rec.record });
    await r.start();
    await r.afterSweep(sweep('problem', Date.now() - 60_000));
    const st = r.status();
    t.match(st, { episode: { step: 'restart-kubelet', phase: 'deferred', state: 'active' }, recentActions: [] });
    const next = Date.parse((st.episode as { nextDecisionAt: string }).nextDecisionAt);
    t.ok(next - Date.now() > 30_000 && next - Date.now() <= 60_000, `judged again once kubelet3 is a minute old (${new Date(next).toISOString()})`);
    await r.afterSweep(sweep('problem'));
    t.same(rec.calls, [], 'nothing done');
    t.equal(await stops('kubelet3'), 0, "systemd's journal: kubelet3 untouched");
    await r.stop();
  });
});
