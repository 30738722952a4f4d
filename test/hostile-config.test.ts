/**
 * Issue 14 items 2-4 and issue 12's config messages: hostile config files. Each case reproduces what
 * the adversarial run saw before the fix (in the comment beside it) and asserts the clear error now.
 * Files are real (FIFO, /dev/zero, a 50 MB file) and read by the real CLI process where the bound is
 * what matters (a blocked or exploding read would hang or kill the CLI, which the time limit catches).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, openSync, closeSync, ftruncateSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig, parseConfigText, resolveConfig, showValue, CONFIG_MAX_BYTES } from '../agent/config.js';
import { ConfigError } from '../platform/errors.js';
import { runCli } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'nm-hostile-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  throw new Error('expected a ConfigError');
}

// ---------------------------------------------------------------------------------------------
// item 2: non-regular and huge files

t.test('a FIFO as config: refused at once, exit 78 (before: blocked forever waiting for a writer)', async (t) => {
  const fifo = join(dir, 'config.fifo');
  execFileSync('mkfifo', [fifo]);
  const t0 = Date.now();
  const r = await runCli(['config', 'validate', fifo], { timeoutMs: 20_000 });
  t.equal(r.code, 78, r.stderr);
  t.match(r.stderr, /config\.fifo is a FIFO \(named pipe\), not a regular file/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.ok(Date.now() - t0 < 20_000);
  // The same through $NODEMEDIC_CONFIG and `check`.
  const c = await runCli(['check', '--only', 'load'], { env: { NODEMEDIC_CONFIG: fifo }, timeoutMs: 20_000 });
  t.equal(c.code, 78, c.stderr);
});

t.test('/dev/zero and a directory as config: refused without reading (before: /dev/zero grew to 6 GB in 6 s)', async (t) => {
  const r = await runCli(['config', 'validate', '/dev/zero'], { timeoutMs: 20_000 });
  t.equal(r.code, 78);
  t.match(r.stderr, /\/dev\/zero is a character device, not a regular file/);
  const d = join(dir, 'a-directory');
  mkdirSync(d);
  t.match(problems(() => loadConfig(d)), [/a-directory is a directory, not a regular file/]);
});

t.test('a 50 MB config is refused by its size before parsing (before: 60 s and 3 GB to parse)', async (t) => {
  const big = join(dir, 'big.yaml');
  // A sparse file: 50 MB of size without writing 50 MB to the shared disk.
  const fd = openSync(big, 'w');
  ftruncateSync(fd, 50 * 1024 * 1024);
  closeSync(fd);
  const t0 = Date.now();
  const r = await runCli(['config', 'validate', big], { timeoutMs: 20_000 });
  t.equal(r.code, 78, r.stderr);
  t.match(r.stderr, /big\.yaml is too large \(50 MiB; the limit is 1 MiB\)/);
  t.ok(Date.now() - t0 < 15_000, 'refused quickly');
  // Just over the cap is refused too; at the cap it is parsed.
  const over = join(dir, 'over.yaml');
  writeFileSync(over, `# ${'x'.repeat(CONFIG_MAX_BYTES)}\n`);
  t.match(problems(() => loadConfig(over)), [/too large/]);
  const at = join(dir, 'at.yaml');
  writeFileSync(at, `# ${'x'.repeat(CONFIG_MAX_BYTES - 100)}\nschedule: "*/5 * * * * *"\n`);
  t.equal(loadConfig(at).config.schedule, '*/5 * * * * *');
});

// ---------------------------------------------------------------------------------------------
// item 3: ranges

t.test('durations: zero and timer-overflowing values are refused with the range named', async (t) => {
  // Before: `timeout: 0s` validated (a healthy dockerd became DockerHung) and 25d validated, then
  // overflowed Node's timers to 1 ms (instant CheckTimeout; commandTimeout killed systemctl at once).
  const p = problems(() =>
    resolveConfig({
      checks: { docker: { timeout: '0s' }, disk: { timeout: '25d' }, pleg: { window: '0s' } },
      remediation: { commandTimeout: '25d', settle: '24.9d', leaseDuration: '0s' },
    }),
  );
  t.ok(p.includes('checks.docker.timeout: must be between 100ms and 5m, got "0s"'), p.join('\n'));
  t.ok(p.some((x) => /^checks\.disk\.timeout: must be between 100ms and 5m, got "25d"/.test(x)));
  t.ok(p.some((x) => /^checks\.pleg\.window: must be between 1s and 24h, got "0s"/.test(x)));
  t.ok(p.some((x) => /^remediation\.commandTimeout: must be between 1s and 1h, got "25d"/.test(x)));
  t.ok(p.some((x) => /^remediation\.settle: must be between 1s and 24h, got "24.9d"/.test(x)));
  t.ok(p.some((x) => /^remediation\.leaseDuration: must be between 1s and 24h/.test(x)));
  t.equal(p.length, 6, p.join('\n'));
  // The edges are accepted.
  const ok = resolveConfig({ checks: { docker: { timeout: '100ms' }, containerd: { timeout: '5m' } }, remediation: { commandTimeout: '1h', grace: '0s' } });
  t.equal(ok.checks.docker!.timeout, '100ms');
});

t.test('numbers: each has a range (before: minOccurrences 1e300 validated and PLEG could never fire)', async (t) => {
  const p = problems(() =>
    resolveConfig({
      checks: { pleg: { minOccurrences: 1e300 }, load: { maxLoadPerCpu: 1e308 } },
      remediation: { rebootsPerDay: 1e9, restartsPerHour: 100000, maxConcurrentReboots: 2 ** 53 },
    }),
  );
  t.ok(p.includes('checks.pleg.minOccurrences: must be between 1 and 4096, got 1e+300'), p.join('\n'));
  t.ok(p.some((x) => x.startsWith('checks.load.maxLoadPerCpu: must be between 0.01 and 1000')));
  t.ok(p.some((x) => x.startsWith('remediation.rebootsPerDay: must be between 0 and 24')));
  t.ok(p.some((x) => x.startsWith('remediation.restartsPerHour: must be between 0 and 60')));
  t.ok(p.some((x) => x.startsWith('remediation.maxConcurrentReboots: must be between 1 and 1000')));
  const e = problems(() => resolveConfig({ remediation: { evidence: { journalLines: 0, timeout: '1h' } } }));
  t.ok(e.some((x) => x.startsWith('remediation.evidence.journalLines: must be between 1 and 1000000, got 0')), e.join('\n'));
  t.ok(e.some((x) => x.startsWith('remediation.evidence.timeout: must be between 1s and 2m, got "1h"')), e.join('\n'));
  t.match(problems(() => resolveConfig({ remediation: { evidence: { maxTotalSize: '100Gi' } } })), [/^remediation\.evidence\.maxTotalSize: 100Gi is out of range \(1Mi to 10Gi\)/]);
  t.match(problems(() => resolveConfig({ remediation: { evidence: { maxTotalSize: '50 MB' } } })), [/^remediation\.evidence\.maxTotalSize: .*a size like "50Mi"/]);
  // YAML's .inf and .nan are numbers too.
  t.match(problems(() => parseConfigText('checks:\n  load: { maxLoadPerCpu: .inf }\n', 'inf.yaml')), ['checks.load.maxLoadPerCpu: must be a finite number, got Infinity']);
});

t.test('`timeout: 5` says a duration with a unit, like 5s (issue 12; before: "must be string")', async (t) => {
  const p = problems(() => parseConfigText('checks:\n  kubelet:\n    timeout: 5\n', 'x.yaml'));
  t.same(p, ['checks.kubelet.timeout: must be a duration with a unit, like 5s (500ms, 10s, 5m, 2h), got 5']);
});

// ---------------------------------------------------------------------------------------------
// item 4: YAML attacks and huge values

const BOMB = [
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
  'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
  'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
  'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
  'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]',
  'g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]',
  '',
].join('\n');

t.test('a YAML alias bomb: exit 78 naming the problem, no stack (before: exit 70 with a stack trace)', async (t) => {
  const f = join(dir, 'bomb.yaml');
  writeFileSync(f, BOMB);
  const r = await runCli(['config', 'validate', f], { timeoutMs: 20_000 });
  t.equal(r.code, 78, r.stderr);
  t.match(r.stderr, /YAML: aliases \(\*name\) expand too much .*alias bomb/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

t.test('errors never echo a huge value whole (before: a 10 MB value was printed back)', async (t) => {
  const huge = 'x'.repeat(900_000);
  const p = [
    ...problems(() => parseConfigText(`schedule: "${huge}"\nhttp: { listen: "${huge}" }\n`, 'huge.yaml')),
    ...problems(() => resolveConfig({ [huge]: 1 })),
  ];
  t.ok(p.length >= 3, p.join('\n').slice(0, 2000));
  for (const line of p) t.ok(line.length < 400, `short: ${line.slice(0, 200)}`);
  t.ok(p.some((x) => /^http\.listen: must be HOST:PORT .*… \(900002 characters\)$/.test(x)), p.join('\n').slice(0, 2000));
  t.equal(showValue('abc'), '"abc"');
});

t.test('a __proto__ key is reported as itself, and changes nothing (before: reported as the wrong key)', async (t) => {
  const p = problems(() => parseConfigText('__proto__: { schedule: bad }\nchecks:\n  constructor: 1\n  disk: { __proto__: { maxUsedPercent: 500 } }\n', 'proto.yaml'));
  t.ok(p.includes('__proto__: unknown key'), p.join('\n'));
  t.ok(p.includes('checks.constructor: unknown key'), p.join('\n'));
  t.ok(p.includes('checks.disk.__proto__: unknown key'), p.join('\n'));
  t.equal(p.length, 3, p.join('\n'));
  t.equal(({} as Record<string, unknown>).schedule, undefined, 'Object.prototype untouched');
});

t.test('YAML syntax errors end cleanly with line and column (issue 12; before: a dangling colon)', async (t) => {
  const p = problems(() => parseConfigText('checks:\n  disk: [\n', 'bad.yaml'));
  t.ok(p.length >= 1);
  for (const x of p) {
    t.match(x, /^YAML syntax error at line \d+, column \d+: \S/);
    t.notMatch(x, /:\s*$/, 'no dangling colon');
  }
  t.same(problems(() => parseConfigText('a: b: c\n', 'x.yaml')), ['YAML syntax error at line 1, column 4: Nested mappings are not allowed in compact mappings']);
});
