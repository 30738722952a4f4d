/**
 * Fuzz (issue 14): the config loader and the PLEG line classifier against generated input.
 *
 * Config: thousands of generated YAML documents (random structures, wrong types, huge numbers,
 * aliases, odd keys, near-valid configs with one key mangled) through the same path `config validate`
 * takes (`parseConfigText`), in process for speed: every outcome is a valid config or a ConfigError
 * whose every problem names a key path (or the YAML position), never another exception, each within a
 * time bound. A handful go through the real CLI: exit 0 or 78, never a stack.
 *
 * Classifier: arbitrary and adversarial lines never throw, the time grows linearly with the line
 * length, and the invariants hold (a line without "PLEG"/"pleg" is `other`).
 *
 * Bounded for CI: fixed seeds and run counts, well under a minute on a loaded 2-core machine.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { stringify } from 'yaml';
import { parseConfigText } from '../agent/config.js';
import { classifyKubeletLine, PLEG_LINE_NEEDLES } from '../checks/pleg-classify.js';
import { ConfigError } from '../platform/errors.js';
import { runCli } from './helpers/cli.js';

const KEYS = ['nodeName', 'http', 'listen', 'schedule', 'hostCommandPrefix', 'stateDir', 'log', 'level', 'checks', 'disk', 'load', 'pleg', 'kubelet', 'docker', 'containerd', 'remediation', 'mode', 'timeout', 'window', 'minOccurrences', 'maxUsedPercent', 'paths', 'enabled', 'kubernetes', 'kubeconfig', 'drain', 'grace', '__proto__', 'constructor', 'toString', '', ' ', 'a.b', '~1', 'ünï'];
const scalar = fc.oneof(
  fc.constantFrom(0, -1, 1e300, -1e300, 2 ** 53, 0.5, NaN, Infinity, true, false, null, '', '0s', '25d', '5', '-5m', '1h30m', '100ms', '*/5 * * * * *', '/x', 'enforce', '10%', '250%'),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 30 }),
);
const value = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.constantFrom(...KEYS), tie('v'), { maxKeys: 5 })),
})).v;

/** Text: a generated structure as YAML, or near-valid YAML with aliases, tags and odd syntax. */
const doc = fc.oneof(
  value.map((v) => stringify(v)),
  fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 6 }).map((v) => stringify({ checks: v })),
  fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 6 }).map((v) => stringify({ remediation: v })),
  fc.tuple(fc.constantFrom(...KEYS), fc.integer({ min: 1, max: 12 })).map(([k, n]) => `a: &a [x, y]\n${k}: [${Array(n).fill('*a').join(', ')}]\n`),
  fc.constantFrom('!!binary AAAA', 'a: !!js/function "x"', '? [a]\n: b', '{', 'a: b: c', '- - -', '%YAML 9.9\n---\na: 1', '---\n---\n', 'a: 1\na: 2', '"\\u0000": 1', '<<: {schedule: x}'),
  fc.string({ maxLength: 200 }),
);

/** `a.b.0: ...`, `checks." ": ...` (odd keys quoted), `(top level): ...`, a YAML problem, or the count of the rest. */
const SEGMENT = '(?:[^\\s:."]+|"(?:[^"\\\\]|\\\\.)*")';
const KEY_PATH_PROBLEM = new RegExp(`^(?:\\(top level\\): |YAML[: ]|${SEGMENT}(?:\\.${SEGMENT})*: |\\.\\.\\. and \\d+ more problems$)`);

function checkOutcome(text: string): void {
  const t0 = performance.now();
  try {
    parseConfigText(text, 'fuzz.yaml');
  } catch (e) {
    if (!(e instanceof ConfigError)) throw new Error(`not a ConfigError for ${JSON.stringify(text).slice(0, 300)}: ${(e as Error)?.stack ?? String(e)}`);
    if (!e.problems.length) throw new Error('a ConfigError without problems');
    for (const p of e.problems) {
      // Every problem names a key path (`a.b: ...`, `(top level): ...`) or the YAML problem.
      if (!KEY_PATH_PROBLEM.test(p)) throw new Error(`a problem without a key path: ${JSON.stringify(p)}`);
      if (p.length > 600) throw new Error(`a problem too long to read: ${p.length} characters`);
    }
  }
  const ms = performance.now() - t0;
  if (ms > 2000) throw new Error(`took ${ms.toFixed(0)} ms for ${JSON.stringify(text).slice(0, 200)}`);
}

t.test('config loader: thousands of generated documents, every outcome valid or a ConfigError with key paths', async (t) => {
  const started = performance.now();
  fc.assert(fc.property(doc, (text) => checkOutcome(text)), { seed: 20261205, numRuns: 5000 });
  t.pass(`5000 documents in ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

t.test('config loader: generated documents through the real CLI exit 0 or 78, never a stack', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-fuzz-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const samples = fc.sample(doc, { seed: 7, numRuns: 4 });
  samples.push('a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n');
  await Promise.all(
    samples.map(async (text, i) => {
      const f = join(dir, `c${i}.yaml`);
      writeFileSync(f, text);
      const r = await runCli(['config', 'validate', f], { timeoutMs: 60_000 });
      t.ok(r.code === 0 || r.code === 78, `exit ${r.code} for ${JSON.stringify(text).slice(0, 80)}: ${r.stderr.slice(0, 200)}`);
      t.notMatch(r.stderr, /\n\s+at \S+/, 'no stack trace');
    }),
  );
});

t.test('PLEG classifier: never throws, linear time, invariants', async (t) => {
  const fragments = fc.constantFrom('PLEG is not healthy: pleg was last seen active ', 'pleg has yet to be successful', 'ago; threshold is ', '3m0s', '2562047h47m16.854775807s', 'GenericPLEG: Unable to retrieve pods', 'E1127 10:00:00.000000    4242 ', '{"ts":1700000000.5,', 'kubelet[123]: ', '9'.repeat(50), 'µ', '"', '\\', ' ');
  const line = fc.oneof(fc.string({ maxLength: 300 }), fc.array(fragments, { maxLength: 30 }).map((a) => a.join('')), fc.string({ unit: 'binary', maxLength: 300 }));
  fc.assert(
    fc.property(line, (l) => {
      const c = classifyKubeletLine(l);
      if (!PLEG_LINE_NEEDLES.some((n) => l.includes(n)) && c.label !== 'other') throw new Error(`no needle but ${c.label}: ${JSON.stringify(l)}`);
      if (c.lastSeenActiveMs !== undefined && !(c.lastSeenActiveMs >= 0)) throw new Error(`negative duration for ${JSON.stringify(l)}`);
    }),
    { seed: 42, numRuns: 5000 },
  );
  // Linear: an adversarial line 16x longer costs at most ~16x (with a wide margin for a busy machine).
  const unit = 'PLEG is not healthy: pleg was last seen active 9999999999999999999999999999';
  const time = (n: number): number => {
    const l = unit.repeat(n);
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) classifyKubeletLine(l);
    return performance.now() - t0;
  };
  time(50);
  const small = Math.max(time(200), 1);
  const big = time(3200);
  t.ok(big < small * 16 * 8, `3200 repeats took ${big.toFixed(1)} ms, 200 repeats ${small.toFixed(1)} ms: linear`);
});
