/**
 * Issue 12: `nodemedic check --only pleg` with `source: file`, as node-problem-detector runs it (a
 * real CLI process per run). Before: the follower started at the end of the file, so a one-shot run
 * could never see a PLEG report and always said ok. Now a one-shot run reads the file's recent tail,
 * each line at the time its klog header (or JSON `ts`) says, and the output follows NPD's
 * custom-plugin protocol (pkg/custompluginmonitor/plugin/plugin.go): stdout trimmed and cut at 80
 * bytes is the message; exit 0 OK, 1 NonOK, anything else Unknown.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { klogTimeMs } from '../checks/pleg.js';
import { runCli } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'nm-hostile-npd-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
/** kubelet's klog line (local time, no year), as in the corpus' kubelet-pleg lines. */
function plegLine(d: Date): string {
  return `E${pad(d.getMonth() + 1)}${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.000000    4242 kubelet.go:2130] "Skipping pod synchronization" err="PLEG is not healthy: pleg was last seen active 3m25.1s ago; threshold is 3m0s"`;
}

async function npd(name: string, lines: string[]): Promise<{ code: number | null; line: string; raw: string }> {
  const log = join(dir, `${name}.log`);
  writeFileSync(log, lines.map((l) => `${l}\n`).join(''));
  const cfg = join(dir, `${name}.yaml`);
  writeFileSync(cfg, `stateDir: ${dir}\nchecks:\n  pleg: { source: file, file: ${log} }\n`);
  const r = await runCli(['check', '--config', cfg, '--only', 'pleg', '--format', 'npd']);
  return { code: r.code, line: r.stdout.trim(), raw: r.stdout + r.stderr };
}

function protocol(t: Test, r: { line: string; raw: string }): void {
  t.notMatch(r.line, /\n/, 'one line');
  t.ok(Buffer.byteLength(r.line) <= 80, `at most 80 bytes: ${Buffer.byteLength(r.line)}`);
}

t.test('recent PLEG reports in the file: NonOK (exit 1) with the message', async (t) => {
  const now = Date.now();
  const r = await npd('recent', ['I1205 00:00:00.000000    4242 server.go:1] unrelated', ...[90, 60, 30].map((s) => plegLine(new Date(now - s * 1000)))]);
  t.equal(r.code, 1, r.raw);
  t.match(r.line, /^pleg: PLEGUnhealthy: kubelet reported PLEG is not healthy 3 times/);
  protocol(t, r);
});

t.test('PLEG reports older than the window: OK (exit 0)', async (t) => {
  const now = Date.now();
  const r = await npd('old', [7200, 7100, 7000].map((s) => plegLine(new Date(now - s * 1000))));
  t.equal(r.code, 0, r.raw);
  t.match(r.line, /^pleg: PLEGHealthy: /);
  protocol(t, r);
});

t.test('fewer than minOccurrences: OK; a missing file: Unknown (exit 2)', async (t) => {
  const one = await npd('one', [plegLine(new Date(Date.now() - 10_000))]);
  t.equal(one.code, 0, one.raw);
  protocol(t, one);
  const cfg = join(dir, 'missing.yaml');
  writeFileSync(cfg, `stateDir: ${dir}\nchecks:\n  pleg: { source: file, file: ${join(dir, 'nope.log')} }\n`);
  const r = await runCli(['check', '--config', cfg, '--only', 'pleg', '--format', 'npd']);
  t.equal(r.code, 2, r.stdout);
  t.match(r.stdout.trim(), /^pleg: SourceUnavailable: /);
  protocol(t, { line: r.stdout.trim(), raw: r.stdout });
});

t.test('klog times have no year: the latest such moment not in the future', async (t) => {
  const now = new Date(2027, 0, 2, 10, 0, 0).getTime();
  t.equal(klogTimeMs({ month: 1, day: 2, hour: 9, minute: 59, second: 0, microsecond: 0 }, now), new Date(2027, 0, 2, 9, 59, 0).getTime());
  t.equal(klogTimeMs({ month: 12, day: 31, hour: 23, minute: 0, second: 0, microsecond: 0 }, now), new Date(2026, 11, 31, 23, 0, 0).getTime(), "New Year's Eve is last year");
});
