import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBoundedFile, readBoundedFileSync, RealHost } from '../platform/host.js';

const host = new RealHost();
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('exit codes and output', async (t) => {
  const r = await host.run(['sh', '-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 5000 });
  t.match(r, { exitCode: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false, notFound: false });
  t.match(r.error, /exit code 3/);
  const ok = await host.run(['true'], { timeoutMs: 5000 });
  t.equal(ok.exitCode, 0);
  t.notOk(ok.error);
});

t.test('a missing tool is notFound, not a crash', async (t) => {
  const r = await host.run(['/nonexistent/tool', 'x'], { timeoutMs: 5000 });
  t.equal(r.notFound, true);
  t.equal(r.exitCode, undefined);
});

t.test('arguments are never interpreted by a shell', async (t) => {
  const r = await host.run(['echo', '$(id) ; rm -rf / `x`'], { timeoutMs: 5000 });
  t.equal(r.stdout, '$(id) ; rm -rf / `x`\n');
});

t.test('a timeout kills a child that ignores SIGTERM, and its grandchildren holding our pipes', async (t) => {
  // Like `nsenter -p -- systemctl ...` against a hung PID 1: the leader forks, the grandchild
  // ignores SIGTERM and keeps stdout open.
  const script = 'trap "" TERM; sh -c \'trap "" TERM; echo $$ >&2; sleep 60\' & wait';
  const t0 = Date.now();
  const r = await host.run(['sh', '-c', script], { timeoutMs: 300, killAfterMs: 300 });
  const took = Date.now() - t0;
  t.ok(took < 2000, `returned in ${took} ms (timeout 300 + kill 300)`);
  t.equal(r.timedOut, true);
  t.equal(r.exitCode, undefined, 'no exit code for a killed command');
  t.match(r.error, /timed out after 300 ms/);
  const grandchild = Number(r.stderr.trim());
  t.ok(grandchild > 0, 'the grandchild reported its pid');
  await new Promise((res) => setTimeout(res, 100));
  const state = execFileSync('sh', ['-c', `ps -o stat= -p ${grandchild} || true`], { encoding: 'utf8' }).trim();
  t.ok(!alive(grandchild) || state.startsWith('Z'), `the grandchild is gone too (${state || 'reaped'})`);
});

t.test('output is capped', async (t) => {
  const r = await host.run(['sh', '-c', 'head -c 3000000 /dev/zero'], { timeoutMs: 10_000, maxOutputBytes: 1000 });
  t.equal(r.outputCapped, true);
  t.ok(r.stdout.length <= 1000);
});

t.test('the host command prefix applies to node commands only', async (t) => {
  const prefixed = new RealHost({ commandPrefix: ['env', 'NODEMEDIC_PREFIXED=1'] });
  const onHost = await prefixed.run(['sh', '-c', 'echo ${NODEMEDIC_PREFIXED:-no}'], { timeoutMs: 5000 });
  t.equal(onHost.stdout, '1\n');
  t.same(onHost.argv.slice(0, 2), ['env', 'NODEMEDIC_PREFIXED=1']);
  const local = await prefixed.run(['sh', '-c', 'echo ${NODEMEDIC_PREFIXED:-no}'], { timeoutMs: 5000, onHost: false });
  t.equal(local.stdout, 'no\n');
});

t.test('spawnLines splits lines, caps long ones, and kill ends the whole group', async (t) => {
  const lines: string[] = [];
  const s = host.spawnLines(['sh', '-c', 'printf "a\\nbb\\n"; head -c 200000 /dev/zero | tr "\\0" x; printf "\\nc\\n"; sleep 60 & wait'], {
    maxLineBytes: 1000,
    onLine: (l) => lines.push(l),
  });
  for (let i = 0; i < 50 && lines.length < 4; i++) await new Promise((r) => setTimeout(r, 50));
  t.same(lines.slice(0, 2), ['a', 'bb']);
  t.equal(lines[2]!.length, 1000, 'a 200 kB line is cut to maxLineBytes');
  t.equal(lines[3], 'c');
  const pgid = s.pid!;
  s.kill();
  const e = await s.exited;
  t.ok(e.signal || e.exitCode !== 0, 'ended by a signal');
  await new Promise((r) => setTimeout(r, 100));
  // Zombies (dead, waiting for a reaper that is not us) do not count.
  const left = execFileSync('sh', ['-c', `ps -o stat= -g ${pgid} | grep -v '^Z' || true`], { encoding: 'utf8' }).trim();
  t.equal(left, '', 'nothing alive left in the group');
});

t.test('readFile caps what it reads and refuses what is not a regular file', async (t) => {
  t.match(await host.readFile('/proc/loadavg'), /^\d/);
  t.equal((await host.readFile('/proc/self/status', 10)).length, 10, '/proc files (size 0) are cut at the cap');
  // Before (issue 14): /dev/zero was read like a file; a FIFO blocked the open forever.
  await t.rejects(host.readFile('/dev/zero', 10), { code: 'NotRegularFile', message: '/dev/zero is a character device, not a regular file' });
  const dir = mkdtempSync(join(tmpdir(), 'nm-host-fifo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  await t.rejects(host.readFile(join(dir, 'fifo')), { code: 'NotRegularFile', message: /is a FIFO \(named pipe\), not a regular file/ });
  await t.rejects(host.readFile('/nonexistent/file'), { code: 'ENOENT' });
});

t.test('readBoundedFile: refuses a file over its limit by size, or cuts it when asked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-host-bounded-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'big');
  writeFileSync(f, 'x'.repeat(2000));
  await t.rejects(readBoundedFile(f, { maxBytes: 1000, timeoutMs: 5000 }), { code: 'TooLarge', message: /is too large \(2 KiB; the limit is 1000 bytes\)/ });
  t.equal((await readBoundedFile(f, { maxBytes: 1000, timeoutMs: 5000, overLimit: 'cut' })).length, 1000);
  t.throws(() => readBoundedFileSync(f, { maxBytes: 1000 }), { code: 'TooLarge' });
  t.equal(readBoundedFileSync(f, { maxBytes: 2000 }).length, 2000);
});
