/**
 * Issue 14 item 8 and issue 12's CLI rough edges, through real `nodemedic` processes (dist/agent/cli.js)
 * against real HTTP servers started here on loopback. Each case says what was seen before the fix.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import { CLI, runCli } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'nm-hostile-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function cfg(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

async function serve(t: Test, handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const a = server.address();
  return `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
}

const noStack = (t: Test, s: string): void => void t.notMatch(s, /\n\s+at \S+ \(/, 'no stack trace');

t.test('pause --for 99999999999d is a usage error naming the flag (before: 73 "Invalid time value")', async (t) => {
  const stateDir = join(dir, 'state-for');
  mkdirSync(stateDir);
  const r = await runCli(['pause', '--config', cfg('for.yaml', `stateDir: ${stateDir}\n`), '--for', '99999999999d']);
  t.equal(r.code, 64, r.stderr);
  t.match(r.stderr, /--for: must be at most 365d/);
  t.notOk(existsSync(join(stateDir, 'pause.json')), 'nothing written');
  const ok = await runCli(['pause', '--config', join(dir, 'for.yaml'), '--for', '365d']);
  t.equal(ok.code, 0, ok.stderr);
});

t.test('status against a stopped agent says nothing is listening (before: "fetch failed")', async (t) => {
  // A port that was just free: nothing listens there.
  const url = await serve(t, () => undefined);
  const port = new URL(url).port;
  const free = await new Promise<string>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(String(typeof a === 'object' && a ? a.port : 0)));
    });
  });
  t.not(free, port);
  const r = await runCli(['status', '--url', `http://127.0.0.1:${free}`]);
  t.equal(r.code, 2);
  t.match(r.stderr, new RegExp(`nothing is listening at http://127\\.0\\.0\\.1:${free}: is the agent running\\?`));
  t.notMatch(r.stderr, /fetch failed/);
});

t.test('status --url with malformed JSON, {} or a 300 MB body: clear errors, never 0, never a stack', async (t) => {
  // Before: malformed JSON exited 70 with a stack; {} exited 0 (no results: "all ok"); 300 MB was read whole.
  let sent = 0;
  const answer = (body: string, status = 200) => serve(t, (_req, res) => void res.writeHead(status).end(body));
  const urls = {
    bad: await answer('{"results": ['),
    empty: await answer('{}'),
    wrong: await answer('{"results":[{"check":"disk","status":"fine"}]}'),
    html: await answer('<html>not found</html>', 404),
  };
  const url = await serve(t, (_req, res) => {
    // 300 MB, streamed without a length, in 1 MiB writes that wait for the reader.
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    res.writeHead(200, { 'content-type': 'application/json' });
    const pump = (): void => {
      while (sent < 300 && !res.destroyed) {
        sent++;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.write('{"results": "');
    pump();
  });
  const bad = await runCli(['status', '--url', urls.bad]);
  t.equal(bad.code, 2, bad.stderr);
  t.match(bad.stderr, /the answer from .*\/status is not JSON .*is this a nodemedic agent\?/);
  noStack(t, bad.stderr);
  const empty = await runCli(['status', '--url', urls.empty]);
  t.equal(empty.code, 2, 'an answer without results is not "all ok"');
  t.match(empty.stderr, /is not a nodemedic \/status: "results" is missing or not a list/);
  const wrong = await runCli(['status', '--url', urls.wrong]);
  t.equal(wrong.code, 2);
  t.match(wrong.stderr, /results\[0\]\.status is not ok, problem or unknown/);
  const html = await runCli(['status', '--url', urls.html]);
  t.equal(html.code, 2);
  t.match(html.stderr, /answered HTTP 404/);
  const big = await runCli(['status', '--url', url], { timeoutMs: 60_000 });
  t.equal(big.code, 2, big.stderr);
  t.match(big.stderr, /is too large \(more than 8388608 bytes\)/);
  t.ok(sent < 100, `the CLI stopped reading early (${sent} MiB of 300 sent)`);
});

t.test("status's human output: the table, then remediation as lines, not a raw JSON line", async (t) => {
  const url = await serve(t, (_req, res) => {
    res.end(
      JSON.stringify({
        node: 'n1',
        lastSweep: '2026-12-05T10:00:00.000Z',
        results: [{ check: 'disk', status: 'ok', reason: 'DiskUsageNormal', message: 'fine', observedAt: 'x', durationSeconds: 0 }],
        remediation: { mode: 'dry-run', paused: null, budgets: { restartsLastHour: 0, noRebootBefore: null }, history: [] },
      }),
    );
  });
  const r = await runCli(['status', '--url', url]);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.match(lines[0], /^node n1, last sweep 2026-12-05T10:00:00.000Z$/);
  t.ok(lines.includes('remediation:'));
  t.ok(lines.includes('  mode: dry-run'));
  t.ok(lines.includes('    restartsLastHour: 0'));
  for (const l of lines) t.notMatch(l, /[{}]/, `no JSON: ${l}`);
});

t.test('resume on a read-only filesystem with nothing paused: 0 (before: 73)', async (t) => {
  const ro = join(dir, 'ro');
  mkdirSync(ro);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'nm-hostile-ro', ro]);
  t.teardown(() => execFileSync('umount', ['-l', ro]));
  const r = await runCli(['resume', '--config', cfg('ro.yaml', `stateDir: ${ro}\n`)]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'remediation was not paused\n');
  // A pause there cannot be written: 73 with the path.
  const p = await runCli(['pause', '--config', join(dir, 'ro.yaml')]);
  t.equal(p.code, 73);
  t.match(p.stderr, /cannot write .*ro\/pause\.json/);
});

t.test('pause where no agent runs: refuses a missing stateDir instead of creating it (before: created /var/lib/nodemedic)', async (t) => {
  const missing = join(dir, 'no-agent', 'state');
  const c = cfg('missing.yaml', `stateDir: ${missing}\n`);
  const r = await runCli(['pause', '--config', c]);
  t.equal(r.code, 73);
  t.match(r.stderr, /the state directory .*no-agent\/state does not exist, so no agent reads it .*--create-state-dir/);
  t.notOk(existsSync(missing), 'nothing created');
  const forced = await runCli(['pause', '--config', c, '--create-state-dir']);
  t.equal(forced.code, 0, forced.stderr);
  t.ok(existsSync(join(missing, 'pause.json')));
});

t.test('a non-root pause does not report success for a per-user state directory the root agent never reads', async (t) => {
  const home = join(dir, 'nobody-home');
  mkdirSync(join(home, '.local', 'state', 'nodemedic'), { recursive: true });
  execFileSync('chown', ['-R', '65534:65534', home]);
  chmodSync(dir, 0o755);
  // Before: it wrote ~/.local/state/nodemedic/pause.json and said "remediation paused".
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'pause'],
      { env: { PATH: process.env.PATH, HOME: home, NODEMEDIC_CONFIG: '' }, timeout: 60_000, encoding: 'utf8' },
      (err: (Error & { code?: number }) | null, _out: string, stderr: string) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
    );
  });
  t.equal(r.code, 73, r.stderr);
  t.match(r.stderr, /not running as root, so the state directory is the per-user default .*nobody-home\/\.local\/state\/nodemedic, which an agent running as root does not read/);
  t.notOk(existsSync(join(home, '.local', 'state', 'nodemedic', 'pause.json')));
});

t.test('per-command --help lists the flags and the check ids (before: one usage line)', async (t) => {
  const r = await runCli(['check', '--help']);
  t.equal(r.code, 0);
  for (const flag of ['--config', '--json', '--only', '--format']) t.match(r.stdout, new RegExp(`^  (-c, )?${flag}`, 'm'), flag);
  t.match(r.stdout, `check ids: ${CHECK_DEFINITIONS.map((d) => d.id).join(', ')}`);
  const p = await runCli(['pause', '--help']);
  t.match(p.stdout, /--for VALUE\s+how long/);
  t.match(p.stdout, /--create-state-dir/);
});

t.test('cordon without a kubeconfig: Kubernetes access is not configured, 69 (before: "invalid config", 78)', async (t) => {
  const r = await runCli(['cordon', '--config', cfg('nokube.yaml', `stateDir: ${dir}\n`)], { env: { KUBERNETES_SERVICE_HOST: '' } });
  t.equal(r.code, 69, r.stderr);
  t.match(r.stderr, /^nodemedic cordon: Kubernetes access is not configured/);
  t.notMatch(r.stderr, /invalid config/);
});

t.test('check --format npd follows the custom-plugin protocol: one line of at most 80 bytes, exit 0/1/2', async (t) => {
  // NPD (pkg/custompluginmonitor/plugin/plugin.go) trims stdout and cuts it at max_output_length (80)
  // bytes for the condition message; exit 0 is OK, 1 NonOK, anything else Unknown.
  const cases: [string, string, number][] = [
    ['ok', 'checks:\n  load: { maxLoadPerCpu: 1000 }\n', 0],
    ['problem', 'checks:\n  load: { maxLoadPerCpu: 0.01 }\n', 1],
    ['unknown', `checks:\n  docker: { socket: ${join(dir, 'no-docker.sock')} }\n`, 2],
  ];
  for (const [what, text, code] of cases) {
    const only = what === 'unknown' ? 'docker' : 'load';
    const r = await runCli(['check', '--config', cfg(`npd-${what}.yaml`, `stateDir: ${dir}\n${text}`), '--only', only, '--format', 'npd']);
    t.equal(r.code, code, `${what}: exit ${code} (${r.stdout.trim()} ${r.stderr})`);
    const out = r.stdout.trim();
    t.notMatch(out, /\n/, `${what}: one line`);
    t.ok(Buffer.byteLength(out) <= 80, `${what}: at most 80 bytes (${Buffer.byteLength(out)})`);
    t.match(out, new RegExp(`^${only}: [A-Z]\\w+: \\S`), `${what}: check, reason, message: ${out}`);
  }
  const bad = await runCli(['check', '--format', 'xml']);
  t.equal(bad.code, 64);
  t.match(bad.stderr, /--format: must be one of table, json, npd/);
});

t.test('a kubeconfig that is a FIFO: exit 78 naming kubernetes.kubeconfig (before: blocked forever)', async (t) => {
  const fifo = join(dir, 'kubeconfig.fifo');
  execFileSync('mkfifo', [fifo]);
  const r = await runCli(['cordon', '--config', cfg('kfifo.yaml', `stateDir: ${dir}\nkubernetes: { kubeconfig: ${fifo} }\n`)], { timeoutMs: 30_000 });
  t.equal(r.code, 78, r.stderr);
  t.match(r.stderr, /kubernetes\.kubeconfig: cannot read .*kubeconfig\.fifo is a FIFO \(named pipe\), not a regular file/);
});
