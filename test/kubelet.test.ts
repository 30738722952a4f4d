// The kubelet check against a real systemd (PID 1 of a test namespace, reached through the
// host command prefix exactly as on a node) running a fake kubelet unit that serves /healthz.
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import t from 'tap';
import { RealHost } from '../platform/host.js';
import { kubeletCheck, kubeletFinding, probeHealthz, type KubeletOptions } from '../checks/kubelet.js';
import { parseSystemdTimestamp, showUnit, unitStateFromShow } from '../platform/systemd-unit.js';
import type { Check, Finding } from '../checks/types.js';
import { requireComponent } from './helpers/require.js';
import { FakeKubelet, freePort } from './harness/fake-kubelet.js';
import { requireSystemdNs, startSystemdNs, waitFor } from './harness/systemd-ns.js';

const logger = pino({ level: 'silent' });

function makeCheck(host: RealHost, options: Partial<KubeletOptions>): Check {
  return kubeletCheck.create({ ...kubeletCheck.defaults, ...options }, { host, logger, nodeName: 'test-node' });
}

async function run(check: Check): Promise<Finding> {
  return check.run(new AbortController().signal);
}

async function until(check: Check, want: (f: Finding) => boolean, what: string, timeoutMs = 8000): Promise<Finding> {
  let last: Finding | undefined;
  try {
    return await waitFor(
      async () => {
        last = await run(check);
        return want(last) ? last : undefined;
      },
      { timeoutMs, intervalMs: 100, what },
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}; last finding: ${JSON.stringify(last)}`);
  }
}

t.test('systemctl timestamps and show output are read exactly (pure)', async (t) => {
  t.equal(parseSystemdTimestamp('Thu 2026-11-27 10:00:05 UTC'), Date.parse('2026-11-27T10:00:05Z'));
  t.equal(parseSystemdTimestamp('Thu 2026-11-27 10:00:05.123456 UTC'), Date.parse('2026-11-27T10:00:05.123Z'));
  t.equal(parseSystemdTimestamp(''), undefined, 'empty: never happened');
  t.equal(parseSystemdTimestamp('n/a'), undefined);
  t.equal(parseSystemdTimestamp('Thu 2026-11-27 11:00:05 CET'), undefined, 'a zone other than UTC is not guessed');

  // As systemd 219 (CentOS 7) prints it: no NRestarts property.
  const el7 = [
    'Id=kubelet.service',
    'LoadState=loaded',
    'ActiveState=failed',
    'SubState=failed',
    'Result=exit-code',
    'UnitFileState=enabled',
    'MainPID=0',
    'ActiveEnterTimestamp=Wed 2026-11-25 08:00:00 UTC',
    'ActiveEnterTimestampMonotonic=5000000',
    'InactiveExitTimestamp=Wed 2026-11-25 07:59:59 UTC',
    'InactiveExitTimestampMonotonic=4000000',
    'ExecMainStartTimestamp=',
    'ExecMainStartTimestampMonotonic=0',
    '',
  ].join('\n');
  const r = unitStateFromShow('kubelet', el7);
  t.ok(r.ok);
  if (!r.ok) return;
  t.match(r.unit, {
    id: 'kubelet.service',
    loadState: 'loaded',
    activeState: 'failed',
    result: 'exit-code',
    activeEnterAtMs: Date.parse('2026-11-25T08:00:00Z'),
    activeEnterMonotonicUs: 5000000,
    inactiveExitAtMs: Date.parse('2026-11-25T07:59:59Z'),
  });
  t.equal(r.unit.mainPid, undefined, 'MainPID=0 is no process');
  t.equal(r.unit.nRestarts, undefined, 'an absent property stays undefined');
  t.equal(r.unit.execMainStartAtMs, undefined, 'an empty timestamp stays undefined');

  const bad = unitStateFromShow('kubelet', 'garbage\n');
  t.match(bad, { ok: false, reason: 'SystemctlFailed', message: /printed no LoadState/ });
});

t.test('the verdict table (pure)', async (t) => {
  const opts = { unit: 'kubelet', healthzUrl: 'http://127.0.0.1:1/healthz', timeoutMs: 2000 };
  const show = (active: string, sub: string, load = 'loaded'): ReturnType<typeof unitStateFromShow> =>
    unitStateFromShow('kubelet', `Id=kubelet.service\nLoadState=${load}\nActiveState=${active}\nSubState=${sub}\nNRestarts=4\n`);
  const ok200 = { kind: 'response', status: 200, body: 'ok', latencyMs: 1 } as const;
  t.match(kubeletFinding(show('active', 'running'), ok200, opts), { status: 'ok', reason: 'KubeletHealthy' });
  t.match(kubeletFinding(show('reloading', 'reload'), ok200, opts), { status: 'ok' }, 'reloading counts as active');
  t.match(kubeletFinding(show('activating', 'auto-restart'), ok200, opts), {
    status: 'problem',
    reason: 'KubeletInactive',
    message: /activating \(auto-restart\), 4 automatic restarts/,
  });
  t.match(kubeletFinding(show('inactive', 'dead', 'not-found'), ok200, opts), { status: 'unknown', reason: 'NotInstalled' });
  t.match(kubeletFinding(show('active', 'running'), { kind: 'timeout', latencyMs: 2000 }, opts), {
    status: 'problem',
    reason: 'KubeletHealthzTimeout',
    message: /did not answer within 2s/,
  });
  t.match(kubeletFinding(show('active', 'running'), { kind: 'error', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED', latencyMs: 1 }, opts), {
    status: 'problem',
    reason: 'KubeletHealthzFailed',
    message: /ECONNREFUSED/,
  });
  t.match(
    kubeletFinding({ ok: false, reason: 'CommandTimeout', message: 'systemctl show kubelet did not answer within 2s' }, ok200, opts),
    { status: 'unknown', reason: 'CommandTimeout', message: /did not answer within 2s \(healthz answered 200\)/ },
  );
});

t.test('healthz probe: bad URL, refused port, and the scheduler abort are outcomes, not exceptions', async (t) => {
  t.match(await probeHealthz('http://[not-a-url/healthz', 1000), { kind: 'error', code: 'ERR_INVALID_URL' });
  const port = await freePort();
  t.match(await probeHealthz(`http://127.0.0.1:${port}/healthz`, 1000), { kind: 'error', code: 'ECONNREFUSED' });
  const ac = new AbortController();
  ac.abort();
  t.match(await probeHealthz(`http://127.0.0.1:${port}/healthz`, 1000, ac.signal), { kind: 'aborted' });
});

t.test('config schema refuses a unit name that could be read as an option', async (t) => {
  const pattern = new RegExp((kubeletCheck.schema.properties as Record<string, { pattern?: string }>).unit?.pattern ?? '');
  t.ok(pattern.test('kubelet'));
  t.ok(pattern.test('kubelet.service'));
  t.ok(pattern.test('snap.kubelet-eks.daemon.service'));
  t.notOk(pattern.test('--now'), 'a leading dash');
  t.notOk(pattern.test('kube let'), 'a space');
  t.notOk(pattern.test(''), 'empty');
  const host = new RealHost();
  t.match(await showUnit(host, '-H', 1000), { ok: false, reason: 'InvalidUnitName', message: /not a systemd unit name/ });
});

t.test('against a real systemd running a fake kubelet', async (t) => {
  if (!(await requireComponent(t, 'systemd namespace', ['systemctl', 'journalctl', 'unshare', 'nsenter', 'script']))) return;
  if (!(await requireSystemdNs(t))) return;

  const kubelet = await FakeKubelet.create(t);
  const ns = await startSystemdNs({ t, name: 'kubelet-check', units: { 'kubelet.service': kubelet.unit() } });
  const host = new RealHost({ commandPrefix: ns.prefix });
  const timeoutMs = 1000;
  const check = makeCheck(host, { healthzUrl: kubelet.healthzUrl, timeout: '1s' });

  await t.test('ok while running and answering', async (t) => {
    const f = await until(check, (f) => f.status === 'ok', 'kubelet ok');
    t.equal(f.reason, 'KubeletHealthy');
    t.match(f.message, /kubelet\.service is active \(running\) since .* and healthz answered 200/);
    t.match(f.evidence, { unit: 'kubelet.service', loadState: 'loaded', activeState: 'active', subState: 'running' });
    t.match(f.evidence?.healthz, { url: kubelet.healthzUrl, status: 200, outcome: 'response' });
    const starts = await kubelet.starts();
    t.equal(starts.length, 1, 'the fake was started once');
    t.equal(f.evidence?.mainPid, starts[0]?.pid, 'mainPid is the fake kubelet process (PIDs as seen inside the namespace)');

    // The start time agrees with what systemd wrote to the journal when it started the unit.
    const started = (await ns.unitEvents('kubelet.service')).filter((e) => e.fromSystemd && e.jobType === 'start' && e.result === 'done');
    t.equal(started.length, 1);
    const activeSince = Date.parse(String(f.evidence?.activeSince));
    t.ok(Math.abs(activeSince - (started[0]?.realtimeUs ?? 0) / 1000) < 1500, `activeSince ${String(f.evidence?.activeSince)} matches the journal`);
  });

  await t.test('a restart shows as a new start time and process', async (t) => {
    const before = await run(check);
    await new Promise((r) => setTimeout(r, 1100)); // systemctl prints seconds
    t.equal((await ns.systemctl('restart', 'kubelet')).exitCode, 0);
    const after = await until(check, (f) => f.status === 'ok' && f.evidence?.activeSince !== before.evidence?.activeSince, 'a new start time');
    t.not(after.evidence?.mainPid, before.evidence?.mainPid, 'a new main process');
    t.equal((await kubelet.starts()).length, 2, 'the fake was started twice');
  });

  await t.test('healthz answering 500: KubeletHealthzFailed', async (t) => {
    await kubelet.configure({ healthz: 'fail' });
    const f = await until(check, (f) => f.reason === 'KubeletHealthzFailed', 'healthz failure');
    t.equal(f.status, 'problem');
    t.match(f.message, /answered 500: \[\+\]ping ok \[-\]syncloop failed/);
    t.match(f.evidence?.healthz, { status: 500, body: /syncloop failed/ });
  });

  await t.test('healthz refusing connections: KubeletHealthzFailed', async (t) => {
    await kubelet.configure({ healthz: 'refuse' });
    const f = await until(check, (f) => f.reason === 'KubeletHealthzFailed' && /ECONNREFUSED/.test(f.message), 'connection refused');
    t.equal(f.status, 'problem');
  });

  await t.test('healthz hanging: KubeletHealthzTimeout within timeout + 1 s', async (t) => {
    await kubelet.configure({ healthz: 'hang' });
    await new Promise((r) => setTimeout(r, 300)); // the fake re-reads its config every 50 ms
    const t0 = performance.now();
    const f = await run(check);
    const took = performance.now() - t0;
    t.equal(f.reason, 'KubeletHealthzTimeout', f.message);
    t.equal(f.status, 'problem');
    t.ok(took >= timeoutMs - 50 && took < timeoutMs + 1000, `took ${Math.round(took)} ms for a ${timeoutMs} ms timeout`);
    t.match(f.message, /did not answer within 1s/);
    await kubelet.configure({ healthz: 'ok' });
    await until(check, (f) => f.status === 'ok', 'ok again');
  });

  await t.test('unit stopped: KubeletInactive', async (t) => {
    t.equal((await ns.systemctl('stop', 'kubelet')).exitCode, 0);
    const f = await run(check);
    t.equal(f.status, 'problem');
    t.equal(f.reason, 'KubeletInactive');
    t.match(f.message, /kubelet\.service is inactive \(dead\)/);
    t.match(f.evidence, { activeState: 'inactive', subState: 'dead' });
  });

  await t.test('unit failed on its own: KubeletInactive names the failure', async (t) => {
    await kubelet.configure({ exit: { afterMs: 100, code: 3 } });
    t.equal((await ns.systemctl('start', 'kubelet')).exitCode, 0);
    const f = await until(check, (f) => f.evidence?.activeState === 'failed', 'the unit to fail');
    t.equal(f.reason, 'KubeletInactive');
    t.match(f.message, /kubelet\.service is failed \(exit-code\)/);
    t.match(f.evidence, { result: 'exit-code' });
    await kubelet.configure({});
    t.equal((await ns.systemctl('restart', 'kubelet')).exitCode, 0);
    await until(check, (f) => f.status === 'ok', 'ok after the restart');
  });

  await t.test('a unit that does not exist: unknown NotInstalled', async (t) => {
    const f = await run(makeCheck(host, { unit: 'no-such-kubelet', healthzUrl: kubelet.healthzUrl, timeout: '1s' }));
    t.equal(f.status, 'unknown');
    t.equal(f.reason, 'NotInstalled');
    t.match(f.message, /no-such-kubelet\.service is not installed/);
  });

  await t.test('systemd not answering (PID 1 stopped): unknown CommandTimeout within timeout + 1 s', async (t) => {
    process.kill(ns.pid, 'SIGSTOP');
    t.teardown(() => process.kill(ns.pid, 'SIGCONT'));
    const t0 = performance.now();
    const f = await run(check);
    const took = performance.now() - t0;
    process.kill(ns.pid, 'SIGCONT');
    t.equal(f.status, 'unknown');
    t.equal(f.reason, 'CommandTimeout');
    t.match(f.message, /systemctl show kubelet did not answer within 1s \(healthz answered 200\)/);
    t.ok(took < timeoutMs + 1000, `took ${Math.round(took)} ms`);
    await until(check, (f) => f.status === 'ok', 'ok once systemd runs again');
  });

  await t.test('the host prefix failing: unknown SystemctlFailed', async (t) => {
    const broken = new RealHost({ commandPrefix: ['nsenter', '-t', '2147483646', '-m', '-p', '--'] });
    const f = await run(makeCheck(broken, { healthzUrl: kubelet.healthzUrl, timeout: '1s' }));
    t.equal(f.status, 'unknown');
    t.equal(f.reason, 'SystemctlFailed');
    t.match(f.message, /systemctl show kubelet failed: nsenter/);
  });
});

t.test('concurrent questions about one unit share one systemctl show', async (t) => {
  const { showUnitShared } = await import('../platform/systemd-unit.js');
  const { RealHost } = await import('../platform/host.js');
  const real = new RealHost();
  let calls = 0;
  const host = Object.assign(Object.create(real) as typeof real, {
    run: (argv: readonly string[], opts: Parameters<typeof real.run>[1]) => {
      calls++;
      return real.run(['sh', '-c', 'sleep 0.2; printf "Id=kubelet.service\\nLoadState=not-found\\nActiveState=inactive\\nSubState=dead\\n"'], { ...opts, onHost: false });
    },
  });
  const [a, b] = await Promise.all([showUnitShared(host, 'kubelet', 2000), showUnitShared(host, 'kubelet', 2000)]);
  t.equal(calls, 1, 'one command for two concurrent callers');
  t.same(a, b);
  await showUnitShared(host, 'kubelet', 2000);
  t.equal(calls, 2, 'nothing is kept once the call is over');
});
