/**
 * The remediator takes an evidence bundle before every action (issue 16), in dry-run (where the bundle
 * is the main product) and in enforce mode (where it is taken before the restart destroys anything),
 * names it in the action's outcome and log line, and lists it in /status. A real systemd namespace
 * runs kubelet.service, which logs real PLEG lines into that systemd's journal.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { resolveConfig } from '../agent/config.js';
import { RealHost } from '../platform/host.js';
import type { CheckResult, CheckStatus } from '../checks/types.js';
import { createRemediator } from '../remediations/index.js';
import type { ActionName, ActionResult } from '../remediations/types.js';
import { requireSystemdNs, startSystemdNs, waitFor } from './harness/systemd-ns.js';

const PLEG = 'E1008 16:23:24.140487    1636 kubelet.go:1846] skipping pod synchronization - PLEG is not healthy: pleg was last seen active 5m1.764136623s ago; threshold is 3m0s';

function result(check: string, status: CheckStatus): CheckResult {
  return { check, status, reason: status === 'ok' ? 'Fine' : 'PLEGUnhealthy', message: `${check} ${status}`, observedAt: new Date().toISOString(), durationSeconds: 0, evidence: {} };
}
const sweep = (s: CheckStatus): CheckResult[] => [result('kubelet', s), result('docker', 'unknown'), result('containerd', 'unknown')];

function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { logger: pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }), lines };
}

function bundleFiles(t: { teardown(fn: () => unknown): void }, archive: string): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-bundle-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('tar', ['-xzf', archive, '-C', dir], { timeout: 30_000 });
  const [top] = readdirSync(dir);
  return Object.fromEntries(readdirSync(join(dir, top!)).map((f) => [f, readFileSync(join(dir, top!, f), 'utf8')]));
}

t.test('a bundle before every action, named in the outcome, the log and /status', async (t) => {
  if (!(await requireSystemdNs(t))) return;
  const ns = await startSystemdNs({
    t,
    name: 'evidence-ladder',
    units: { 'kubelet.service': `[Service]\nExecStart=/bin/sh -c "echo '${PLEG}'; exec sleep infinity"\n` },
  });
  await waitFor(async () => (await ns.journalctl('-u', 'kubelet', '-o', 'cat')).stdout.includes('5m1.764136623s'), { timeoutMs: 10_000, what: 'kubelet line' });
  const host = new RealHost({ commandPrefix: ns.prefix });
  // The ladder does not restart a unit that (re)started less than `settle` ago.
  await new Promise((r) => setTimeout(r, 1200));

  for (const mode of ['dry-run', 'enforce'] as const) {
    await t.test(mode, async (t) => {
      const stateDir = mkdtempSync(join(tmpdir(), 'nodemedic-evladder-'));
      t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
      const { logger, lines } = capture();
      const calls: [ActionName, ActionResult][] = [];
      const config = resolveConfig({ stateDir, hostCommandPrefix: ns.prefix, remediation: { mode, grace: '0s', settle: '1s' } });
      const r = createRemediator({ config, host, logger, recordAction: (a, res) => void calls.push([a, res]) });
      await r.start();
      t.teardown(() => r.stop());
      const t0 = performance.now();
      await r.afterSweep(sweep('problem'));
      await waitFor(() => calls.length === 1, { timeoutMs: 30_000, what: 'the action outcome' });
      t.ok(performance.now() - t0 < 15_000, 'the bundle delayed the action by a bounded time');
      t.same(calls, [['restart_kubelet', mode === 'dry-run' ? 'dry_run' : 'success']]);

      const st = r.status() as { recentActions: { detail: string }[]; evidence: { bundles: { file: string }[]; last: { path: string } } };
      const m = /\(evidence: (\S+\.tar\.gz)\)/.exec(st.recentActions[0]!.detail);
      t.ok(m, `the outcome names the bundle: ${st.recentActions[0]!.detail}`);
      const path = m![1]!;
      t.ok(path.startsWith(join(stateDir, 'evidence') + '/') && path.endsWith('-restart-kubelet.tar.gz'), path);
      t.ok(existsSync(path));
      t.same(st.evidence.bundles.map((b) => b.file), [path], '/status lists it');
      t.equal(st.evidence.last.path, path);
      const logged = lines.find((l) => l.msg === `restart-kubelet: ${mode === 'dry-run' ? 'dry_run' : 'success'}`);
      t.match(logged?.detail, path, 'the action log line names it');

      const files = bundleFiles(t, path);
      t.match(files['journal-kubelet.log'], /PLEG is not healthy/, 'the kubelet lines that triggered the episode');
      t.match(files['processes.txt'], /PID/);
      t.match(JSON.parse(files['status.json']!), { remediation: { episode: { trigger: 'kubelet' } }, checks: [{ check: 'kubelet', status: 'problem' }] });
      t.match(JSON.parse(files['config.json']!), { remediation: { mode } });
      if (mode === 'enforce') {
        // Taken before the restart: the journal in the bundle has no "Stopping" of this restart.
        t.notMatch(files['journal-kubelet.log'], /Stopping kubelet|Stopped kubelet/, 'collected before systemctl restart');
        const after = (await ns.journalctl('-u', 'kubelet', '-o', 'cat')).stdout;
        t.match(after, /Stopp(ing|ed) kubelet/, 'and the restart did happen after it');
      }
    });
  }
});
