/**
 * Evidence bundles (issue 16, Must show): from a real dockerd run as docker.service by a real systemd
 * (PID 1 of a throwaway namespace) next to a kubelet.service that logs PLEG lines into that systemd's
 * journal, reached through the host command prefix as the agent reaches a node. Running dockerd: the
 * archive holds the kubelet lines, the goroutine dump, the process table. SIGSTOPped dockerd: the dump
 * step times out, the bundle still completes in bounded time and says what it lacks. The size cap
 * removes the oldest bundles. `nodemedic collect` writes the same bundle and exits 0.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { pino } from 'pino';
import { RealHost } from '../platform/host.js';
import { EvidenceCollector, type BundleResult } from '../remediations/evidence.js';
import { tar } from '../remediations/evidence-tar.js';
import { prepareDockerd, sweepDockerd } from './harness/dockerd.js';
import { requireSystemdNs, startSystemdNs, waitFor, type SystemdNs } from './harness/systemd-ns.js';
import { requireComponent } from './helpers/require.js';
import { requireBuilt, CLI_JS } from './helpers/built.js';

// Real kubelet lines (../shared/corpus/kubelet/kubelet-pleg.tsv, from a k3s node's journal).
const PLEG_LINES = [
  'E1008 16:23:14.139967    1636 kubelet.go:1846] skipping pod synchronization - PLEG is not healthy: pleg was last seen active 4m51.763621609s ago; threshold is 3m0s',
  'E1008 16:23:24.140487    1636 kubelet.go:1846] skipping pod synchronization - PLEG is not healthy: pleg was last seen active 5m1.764136623s ago; threshold is 3m0s',
];

function kubeletUnit(): string {
  const script = PLEG_LINES.map((l) => `echo '${l}'`).join('; ') + '; exec sleep infinity';
  return ['[Unit]', 'Description=fake kubelet logging PLEG lines', '', '[Service]', `ExecStart=/bin/sh -c "${script}"`, ''].join('\n');
}

/** The archive's files, extracted by the system tar (proves the writer's format), by base name. */
function extract(t: Tap, archive: string): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-bundle-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('tar', ['-xzf', archive, '-C', dir], { timeout: 30_000 });
  const [top] = readdirSync(dir);
  const out: Record<string, string> = {};
  for (const f of readdirSync(join(dir, top!))) out[f] = readFileSync(join(dir, top!, f), 'utf8');
  return out;
}

type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

t.test('the tar writer: the system tar reads it back', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-tar-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const big = Buffer.alloc(70_000, 'x');
  writeFileSync(join(dir, 'a.tar'), tar([
    { name: 'b/one.txt', data: Buffer.from('hello\n'), mtimeMs: 1_700_000_000_000 },
    { name: 'b/big.bin', data: big, mtimeMs: 1_700_000_000_000 },
    { name: 'b/empty', data: Buffer.alloc(0), mtimeMs: 1_700_000_000_000 },
  ]));
  const list = execFileSync('tar', ['-tvf', join(dir, 'a.tar')], { encoding: 'utf8' });
  t.match(list, /b\/one\.txt/);
  t.match(list, /70000 .*b\/big\.bin/);
  execFileSync('tar', ['-xf', join(dir, 'a.tar'), '-C', dir]);
  t.equal(readFileSync(join(dir, 'b/one.txt'), 'utf8'), 'hello\n');
  t.equal(statSync(join(dir, 'b/big.bin')).size, 70_000);
});

t.test('bundles from a real dockerd and a real systemd journal', async (t) => {
  if (!(await requireComponent(t, 'dockerd', ['dockerd', 'tar', 'ps']))) return;
  if (!(await requireSystemdNs(t))) return;
  const { paths, unitText } = await prepareDockerd();
  let ns: SystemdNs | undefined;
  let stopped = false;
  t.teardown(async () => {
    if (stopped) await ns?.systemctl('kill', '--kill-who=main', '--signal=SIGCONT', 'docker');
    await ns?.stop();
    await sweepDockerd(paths);
  });
  const startedAt = Date.now() - 1000;
  ns = await startSystemdNs({ name: 'evidence', units: { 'docker.service': unitText, 'kubelet.service': kubeletUnit() } });
  const n = ns;
  await waitFor(async () => (await n.systemctl('show', '--property=ActiveState', '--value', 'docker')).stdout.trim() === 'active', {
    timeoutMs: 60_000,
    what: 'docker.service active',
  });
  await waitFor(async () => (await n.journalctl('-u', 'kubelet', '-o', 'cat')).stdout.includes('5m1.764136623s'), { timeoutMs: 10_000, what: 'kubelet lines in the journal' });

  const stateDir = mkdtempSync(join(tmpdir(), 'nodemedic-evstate-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const logger = pino({ level: 'silent' });
  const host = new RealHost({ commandPrefix: n.prefix });
  const collector = new EvidenceCollector({
    host,
    logger,
    stateDir,
    units: { kubelet: 'kubelet', docker: 'docker', containerd: 'containerd' },
    dumpTimeoutMs: 3000,
    timeoutMs: 20_000,
    status: () => ({ node: 'ns-node', checks: [{ check: 'pleg', status: 'problem', reason: 'PLEGUnhealthy' }] }),
    config: { stateDir, remediation: { mode: 'dry-run' } },
  });

  // 1. dockerd running.
  const r1 = await collector.collect({ label: 'restart-kubelet', sinceMs: startedAt, episodeId: 'ep-1', reason: 'pleg: PLEGUnhealthy' });
  t.ok(r1.path, `bundle written: ${r1.path} ${r1.error ?? ''}`);
  t.equal(statSync(r1.path!).isFile(), true);
  const f1 = extract(t, r1.path!);
  t.match(f1['journal-kubelet.log'], /PLEG is not healthy: pleg was last seen active 5m1\.764136623s ago/, "kubelet's journal lines that triggered the episode");
  t.match(f1['dockerd-goroutines.log'], /goroutine \d+ \[/, 'a goroutine dump of the running dockerd');
  t.match(f1['dockerd-goroutines.log'], /github\.com\/docker\/docker/, "dockerd's own stacks");
  t.match(f1['processes.txt'], /\d+\s+\d+\s+S\S*\s+\S+s\s+.*dockerd/, 'the process table has dockerd, its state and age');
  t.match(f1['processes.txt'], /command lines[\s\S]*--exec-root/, "and dockerd's command line");
  t.ok(f1['kernel.log'] !== undefined || r1.missing.some((m) => m.startsWith('kernel log')), 'kernel log taken or its absence said');
  t.match(JSON.parse(f1['status.json']!), { checks: [{ reason: 'PLEGUnhealthy' }] });
  t.match(JSON.parse(f1['config.json']!), { remediation: { mode: 'dry-run' } });
  const m1 = JSON.parse(f1['manifest.json']!) as { episodeId: string; missing: string[]; steps: { step: string; ok: boolean }[] };
  t.equal(m1.episodeId, 'ep-1');
  t.ok(m1.steps.find((s) => s.step === 'dockerd goroutine dump')?.ok, 'dump step ok');
  t.match(m1.missing.join('\n'), /containerd stack dump: no containerd to ask/, 'what it could not get is said');
  t.same(collector.status().bundles, [{ file: r1.path, bytes: r1.bytes, createdAt: (collector.status().bundles as { createdAt: string }[])[0]!.createdAt }]);

  // 2. dockerd hung (SIGSTOP): the dump times out, the bundle still completes, bounded.
  t.equal((await n.systemctl('kill', '--kill-who=main', '--signal=SIGSTOP', 'docker')).exitCode, 0);
  stopped = true;
  const t0 = performance.now();
  const r2 = await collector.collect({ label: 'restart-runtime', sinceMs: startedAt });
  const ms = performance.now() - t0;
  t.ok(ms < 3000 + 5000, `bounded: ${Math.round(ms)} ms (dump timeout 3 s)`);
  t.ok(r2.path, 'bundle written anyway');
  const f2 = extract(t, r2.path!);
  t.notOk(f2['dockerd-goroutines.log'], 'no dump from a stopped dockerd');
  t.match(r2.missing.join('\n'), /dockerd goroutine dump: dockerd \(pid \d+\) wrote no goroutine dump .* within 3000 ms/);
  t.match(JSON.parse(f2['manifest.json']!).missing.join('\n'), /not answering signals/, 'the manifest says so');
  t.match(f2['journal-kubelet.log'], /PLEG is not healthy/, 'the rest is there');
  t.match(f2['processes.txt'], /\d+\s+\d+\s+T\S*\s+.*dockerd/, 'dockerd shown stopped (T)');
  t.equal((await n.systemctl('kill', '--kill-who=main', '--signal=SIGCONT', 'docker')).exitCode, 0);
  stopped = false;

  // 3. The size cap removes the oldest bundles first (a dump-less, faster collector on the same dir).
  const cap = Math.round((r1.bytes! + r2.bytes!) * 1.2);
  const capped = new EvidenceCollector({ host, logger, stateDir, units: { kubelet: 'kubelet', docker: 'no-docker', containerd: 'no-containerd' }, maxTotalBytes: cap });
  const made: BundleResult[] = [];
  for (let i = 0; i < 4; i++) made.push(await capped.collect({ label: `collect-${i}`, sinceMs: startedAt }));
  const left = readdirSync(join(stateDir, 'evidence')).filter((f) => f.endsWith('.tar.gz')).sort();
  const total = left.reduce((a, f) => a + statSync(join(stateDir, 'evidence', f)).size, 0);
  t.ok(total <= cap, `total ${total} within the cap ${cap}`);
  t.ok(left.includes(made.at(-1)!.path!.split('/').pop()!), 'the newest is kept');
  t.notOk(left.includes(r1.path!.split('/').pop()!), 'the oldest went first');
  const removed = made.flatMap((m) => m.removed).map((p) => p.split('/').pop()!);
  t.same(removed, [...removed].sort(), 'removed in age order');
  t.ok(removed.length >= 2, `${removed.length} removed`);

  // 4. `nodemedic collect` writes the same bundle and exits 0.
  if (!requireBuilt(t)) return;
  const cfg = join(stateDir, 'config.yaml');
  writeFileSync(
    cfg,
    [
      'nodeName: ns-node',
      `stateDir: ${stateDir}`,
      `hostCommandPrefix: [${n.prefix.map((a) => JSON.stringify(a)).join(', ')}]`,
      'http:',
      '  listen: "127.0.0.1:1"',
      'remediation:',
      '  mode: dry-run',
      '',
    ].join('\n'),
  );
  const out = join(stateDir, 'out.tar.gz');
  const cli = await execa('node', [CLI_JS, 'collect', '--config', cfg, '--output', out, '--since', '10m'], { reject: false, timeout: 60_000, all: true });
  t.equal(cli.exitCode, 0, cli.all);
  t.match(cli.stdout, new RegExp(out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
  const f4 = extract(t, out);
  t.same(Object.keys(f4).sort(), Object.keys(f1).sort(), 'the same files as an action bundle');
  t.match(f4['journal-kubelet.log'], /PLEG is not healthy/);
  t.match(f4['dockerd-goroutines.log'], /goroutine \d+ \[/);
  t.match(JSON.parse(f4['config.json']!), { stateDir, remediation: { mode: 'dry-run' } }, 'the effective config');
});
