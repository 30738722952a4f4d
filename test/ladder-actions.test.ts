// Carrying out restarts: `systemctl restart` through the host prefix, bounded, confirmed with
// `systemctl show`, against a real systemd as PID 1 of a throwaway namespace.
import t, { type Test } from 'tap';
import { RealHost } from '../platform/host.js';
import { readUnitFacts, restartUnit, unitBetweenStates } from '../remediations/actions.js';
import { requireComponent } from './helpers/require.js';
import { requireSystemdNs, startSystemdNs } from './harness/systemd-ns.js';

async function available(t: Test): Promise<boolean> {
  return (await requireComponent(t, 'systemd namespace', ['systemctl', 'journalctl', 'unshare', 'nsenter', 'script'])) && (await requireSystemdNs(t));
}

const UNITS = {
  'svc.service': '[Service]\nExecStart=/bin/sleep infinity\n',
  'broken.service': '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/false\n',
  'slow.service': '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sleep 30\nTimeoutStartSec=60\n',
  'crashes.service': '[Service]\nType=notify\nExecStart=/bin/sh -c "exit 3"\n',
  // A start that stays queued behind gate.service's start (After=): inactive, with a job.
  'gate.service': '[Service]\nType=oneshot\nExecStart=/bin/sleep 600\nTimeoutStartSec=900\n',
  'queued.service': '[Unit]\nAfter=gate.service\n[Service]\nExecStart=/bin/sleep infinity\n',
};

t.test('restartUnit and readUnitFacts in a real systemd', async (t) => {
  if (!(await available(t))) return;
  const ns = await startSystemdNs({ t, name: 'ladder-actions', units: UNITS, start: ['svc.service'] });
  const host = new RealHost({ commandPrefix: ns.prefix });

  await t.test('a running unit: restarted, active, and its start time moves', async (t) => {
    const before = await readUnitFacts(host, 'svc');
    t.match(before, { loadState: 'loaded', activeState: 'active' });
    const mainBefore = (await ns.systemctl('show', '-p', 'MainPID', '--value', 'svc')).stdout.trim();
    await new Promise((r) => setTimeout(r, 1100)); // systemctl's timestamps have one-second precision
    const ordered = Date.now();
    const out = await restartUnit(host, 'svc', { timeoutMs: 10_000 });
    t.match(out, { result: 'success', detail: /^svc restarted and active \(running\) after \d/ });
    const after = await readUnitFacts(host, 'svc');
    t.ok('lastStartMs' in after && after.lastStartMs !== null && after.lastStartMs >= Math.floor(ordered / 1000) * 1000, 'last start is the restart');
    const mainAfter = (await ns.systemctl('show', '-p', 'MainPID', '--value', 'svc')).stdout.trim();
    t.not(mainAfter, mainBefore, 'a new main process');
    const events = await ns.unitEvents('svc.service');
    t.equal(events.filter((e) => e.fromSystemd && /^Stopp(ed|ing) /.test(e.message) && e.jobType === 'stop').length, 1, "systemd's journal: one stop");
    t.equal(events.filter((e) => e.fromSystemd && e.jobType === 'start' && e.result === 'done').length, 2, 'and two completed starts (boot, restart)');
  });

  await t.test('a unit whose start fails: failure with systemctl’s reason', async (t) => {
    const out = await restartUnit(host, 'broken', { timeoutMs: 10_000 });
    t.match(out, { result: 'failure', detail: /systemctl restart broken failed: Job for broken.service failed/ });
  });

  await t.test('a unit whose process exits before it is ready: failure', async (t) => {
    const out = await restartUnit(host, 'crashes', { timeoutMs: 10_000 });
    t.equal(out.result, 'failure');
    t.match(out.detail, /crashes/);
  });

  await t.test('a restart that hangs: killed at the timeout, failure', async (t) => {
    const started = Date.now();
    const out = await restartUnit(host, 'slow', { timeoutMs: 1000 });
    t.same(out, { result: 'failure', detail: 'systemctl restart slow did not finish within 1s' });
    t.ok(Date.now() - started < 5000, 'bounded');
  });

  await t.test('a unit that does not exist', async (t) => {
    t.match(await readUnitFacts(host, 'nosuch'), { loadState: 'not-found', lastStartMs: null });
    t.match(await restartUnit(host, 'nosuch', { timeoutMs: 5000 }), { result: 'failure', detail: /systemctl restart nosuch failed: .*nosuch.service not found/ });
  });

  await t.test('a hung PID 1 (SIGSTOP): both calls come back on time with an error', async (t) => {
    process.kill(ns.pid, 'SIGSTOP');
    t.teardown(() => {
      process.kill(ns.pid, 'SIGCONT');
    });
    let started = Date.now();
    t.match(await readUnitFacts(host, 'svc', 1000), { error: /did not answer within 1s/ });
    t.ok(Date.now() - started < 3000, `readUnitFacts bounded (${Date.now() - started} ms)`);
    started = Date.now();
    t.match(await restartUnit(host, 'svc', { timeoutMs: 1000 }), { result: 'failure', detail: 'systemctl restart svc did not finish within 1s' });
    t.ok(Date.now() - started < 7000, `restartUnit bounded (${Date.now() - started} ms)`);
    process.kill(ns.pid, 'SIGCONT');
    t.match(await readUnitFacts(host, 'svc'), { activeState: 'active' }, 'systemd answers again after SIGCONT');
  });

  await t.test('a unit with a queued job is between states even while it shows inactive', async (t) => {
    t.match(await ns.systemctl('start', '--no-block', 'gate'), { exitCode: 0 });
    t.match(await ns.systemctl('start', '--no-block', 'queued'), { exitCode: 0 });
    const waiting = await readUnitFacts(host, 'queued');
    t.match(waiting, { activeState: 'inactive', jobPending: true }, 'the start is queued behind gate.service');
    t.ok(!('error' in waiting) && unitBetweenStates(waiting), 'not judged yet');
    t.match(await ns.systemctl('stop', 'gate', 'queued'), { exitCode: 0 });
    const settled = await readUnitFacts(host, 'queued');
    t.ok(!('error' in settled) && !('jobPending' in settled), 'no job once systemd is done with it');
    t.ok(!('error' in settled) && !unitBetweenStates(settled));
  });

  await t.test('systemd cannot be reached: an error, never a guess', async (t) => {
    const lost = new RealHost({ commandPrefix: ['nsenter', '-t', '999999999', '-m', '-p', '--'] });
    t.match(await readUnitFacts(lost, 'svc'), { error: /systemctl show svc failed/ });
    t.match(await restartUnit(lost, 'svc', { timeoutMs: 5000 }), { result: 'failure', detail: /systemctl restart svc failed/ });
    t.match(await readUnitFacts(host, '-x'), { error: /not a systemd unit name/ });
  });
});
