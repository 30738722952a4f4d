// Issue 3, "Must show" #2: a real systemd (PID 1 of a test namespace) runs a kubelet.service of
// our own that serves /healthz and writes real corpus lines to stdout, so they reach the real
// journal. The `pleg` check, reading that journal through the host command prefix exactly as on a
// node, turns `problem` (PLEGUnhealthy) and back to `ok` after the unit restarts; stopping the
// unit makes the `kubelet` check a `problem`.
import { readFileSync } from 'node:fs';
import pino from 'pino';
import t from 'tap';
import { RealHost } from '../platform/host.js';
import { kubeletCheck } from '../checks/kubelet.js';
import { plegCheck } from '../checks/pleg.js';
import type { Check, CheckDeps, Finding } from '../checks/types.js';
import { requireComponent } from './helpers/require.js';
import { FakeKubelet, OTHER_CORPUS, PLEG_CORPUS } from './harness/fake-kubelet.js';
import { requireSystemdNs, startSystemdNs, waitFor } from './harness/systemd-ns.js';

const WINDOW_MS = 5000;

function corpus(path: string, label: string): string[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .slice(1)
    .filter((row) => row.startsWith(`${label}\t`))
    .map((row) => row.slice(label.length + 1));
}

async function run(check: Check): Promise<Finding> {
  return check.run(new AbortController().signal);
}

/** Runs `check` until `want` holds; the finding sequence seen is kept for the failure message. */
async function until(check: Check, want: (f: Finding) => boolean, what: string, timeoutMs: number): Promise<{ finding: Finding; tookMs: number }> {
  const seen: string[] = [];
  const t0 = Date.now();
  try {
    const finding = await waitFor(
      async () => {
        const f = await run(check);
        const tag = `${f.status}/${f.reason}`;
        if (seen.at(-1) !== tag) seen.push(tag);
        return want(f) ? f : undefined;
      },
      { timeoutMs, intervalMs: 200, what },
    );
    return { finding, tookMs: Date.now() - t0 };
  } catch (e) {
    throw new Error(`${(e as Error).message}; findings seen: ${seen.join(' -> ')}`);
  }
}

t.test('PLEG lines in the real journal make pleg a problem, a kubelet restart clears it, a stop makes kubelet a problem', async (t) => {
  if (!(await requireComponent(t, 'systemd namespace', ['systemctl', 'journalctl', 'unshare', 'nsenter', 'script']))) return;
  if (!(await requireSystemdNs(t))) return;

  const unhealthyLines = corpus(PLEG_CORPUS, 'pleg-unhealthy');
  t.ok(unhealthyLines.length >= 3, `the corpus has ${unhealthyLines.length} pleg-unhealthy lines`);

  const kubelet = await FakeKubelet.create(t);
  await kubelet.configure({
    emit: [
      // PLEG is unhealthy until kubelet is restarted once, as a restart typically fixes it.
      { corpus: PLEG_CORPUS, label: 'pleg-unhealthy', everyMs: 200, toStart: 1 },
      // Ordinary kubelet chatter all along, which must never count.
      { corpus: OTHER_CORPUS, label: 'other', everyMs: 100 },
    ],
  });
  const ns = await startSystemdNs({ t, name: 'journal-scenario', units: { 'kubelet.service': kubelet.unit() } });
  const deps: CheckDeps = { host: new RealHost({ commandPrefix: ns.prefix }), logger: pino({ level: 'silent' }), nodeName: 'test-node' };

  const pleg = plegCheck.create(
    { ...plegCheck.defaults, source: 'journald', unit: 'kubelet', window: `${WINDOW_MS / 1000}s`, minOccurrences: 3 },
    deps,
  );
  t.teardown(async () => {
    await pleg.stop?.();
  });
  await pleg.start?.();
  const kubeletChk = kubeletCheck.create({ ...kubeletCheck.defaults, unit: 'kubelet', healthzUrl: kubelet.healthzUrl, timeout: '2s' }, deps);

  // 1. The unhealthy lines reach the journal and the check sees them there.
  const { finding: problem, tookMs } = await until(pleg, (f) => f.status === 'problem', 'pleg to report a problem', 15_000);
  t.equal(problem.reason, 'PLEGUnhealthy', problem.message);
  t.match(problem.message, /PLEG is not healthy/);
  t.comment(`problem after ${tookMs} ms: ${problem.message}`);
  const evidence = JSON.stringify(problem.evidence ?? {});
  t.ok(
    unhealthyLines.some((line) => evidence.includes(JSON.stringify(line).slice(1, -1))),
    'the evidence quotes a corpus pleg-unhealthy line as it was read from the journal',
  );
  const journal = await ns.journalctl('-u', 'kubelet.service', '-o', 'cat');
  t.ok(unhealthyLines.some((line) => journal.stdout.includes(line)), 'the corpus lines are really in the journal');

  // Meanwhile kubelet itself is up and answering.
  const healthy = await run(kubeletChk);
  t.equal(healthy.status, 'ok', `kubelet: ${healthy.message}`);

  // 2. A restart (start 2 emits only ordinary chatter) brings pleg back to ok.
  const startsBefore = (await kubelet.starts()).length;
  t.equal((await ns.systemctl('restart', 'kubelet')).exitCode, 0, 'systemctl restart kubelet in the namespace');
  const { finding: recovered, tookMs: recoveryMs } = await until(pleg, (f) => f.status === 'ok', 'pleg to be ok again', WINDOW_MS + 5000);
  t.equal(recovered.reason, 'PLEGHealthy', recovered.message);
  t.comment(`ok ${recoveryMs} ms after the restart: ${recovered.message}`);
  await waitFor(async () => (await kubelet.starts()).length === startsBefore + 1, { timeoutMs: 5000, what: 'the fake kubelet to start again' });
  t.pass('kubelet was started once more');
  const restarts = (await ns.unitEvents('kubelet.service')).filter((e) => e.fromSystemd && e.jobType === 'restart' && e.result === 'done');
  t.equal(restarts.length, 1, 'systemd recorded exactly one restart');

  // It stays ok past a whole window of ordinary chatter: no false alarm.
  const quietUntil = Date.now() + WINDOW_MS + 1000;
  const afterRestart: string[] = [];
  while (Date.now() < quietUntil) {
    const f = await run(pleg);
    afterRestart.push(`${f.status}/${f.reason}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  t.same([...new Set(afterRestart)], ['ok/PLEGHealthy'], 'ok throughout a window of ordinary kubelet lines');
  const chatter = await ns.journalctl('-u', 'kubelet.service', '-o', 'cat', '--since', '-5s');
  t.ok(corpus(OTHER_CORPUS, 'other').some((line) => chatter.stdout.includes(line)), 'the chatter did reach the journal meanwhile');

  // 3. Stopping the unit makes kubelet a problem.
  t.equal((await ns.systemctl('stop', 'kubelet')).exitCode, 0, 'systemctl stop kubelet in the namespace');
  const stopped = await run(kubeletChk);
  t.equal(stopped.status, 'problem', stopped.message);
  t.equal(stopped.reason, 'KubeletInactive');
  t.match(stopped.message, /kubelet\.service is inactive \(dead\)/);
});
