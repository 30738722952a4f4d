import { readFileSync, readdirSync } from 'node:fs';
import { Ajv } from 'ajv';
import t from 'tap';
import {
  compareEVR,
  isEl7Release,
  parseNVRA,
  parseSystemctlVersionLine,
  parseSystemdVersion,
  parseVersionRelease,
  rpmvercmp,
  splitEVR,
  VERSION_RELEASE_PATTERN,
  type Ordering,
} from '../checks/rpm-version.js';

const corpus = new URL('./fixtures/corpus/', import.meta.url);
const read = (rel: string): string => readFileSync(new URL(rel, corpus), 'utf8');

interface Vector {
  line: number;
  a: string;
  b: string;
  expected: Ordering;
  source?: string;
}

/** Every non-empty line must be a vector; a malformed line fails the test instead of being skipped. */
function vectors(rel: string, minCols: number): Vector[] {
  const out: Vector[] = [];
  read(rel)
    .split('\n')
    .forEach((text, i) => {
      if (text === '') return;
      const cols = text.split('\t');
      const expected = Number(cols[2]);
      if (cols.length < minCols || ![-1, 0, 1].includes(expected)) throw new Error(`${rel}:${i + 1}: malformed vector ${JSON.stringify(text)}`);
      out.push({ line: i + 1, a: cols[0] as string, b: cols[1] as string, expected: expected as Ordering, source: cols[3] });
    });
  return out;
}

const nonEmptyLines = (rel: string): number => read(rel).split('\n').filter((l) => l !== '').length;

t.test('rpmvercmp: every vector of rpm/rpmvercmp.tsv, and its mirror', async (t) => {
  const vs = vectors('rpm/rpmvercmp.tsv', 3);
  t.equal(vs.length, nonEmptyLines('rpm/rpmvercmp.tsv'));
  t.ok(vs.length >= 91, `${vs.length} vectors`);
  for (const v of vs) {
    t.equal(rpmvercmp(v.a, v.b), v.expected, `line ${v.line}: rpmvercmp(${v.a}, ${v.b})`);
    t.equal(rpmvercmp(v.b, v.a), -v.expected || 0, `line ${v.line}: antisymmetric`);
  }
});

t.test('compareEVR: every vector of rpm/rpm-evr-compare.tsv, and its mirror', async (t) => {
  const vs = vectors('rpm/rpm-evr-compare.tsv', 4);
  t.equal(vs.length, nonEmptyLines('rpm/rpm-evr-compare.tsv'));
  for (const v of vs) {
    t.equal(compareEVR(v.a, v.b), v.expected, `line ${v.line}: compareEVR(${v.a}, ${v.b}) [${v.source}]`);
    t.equal(compareEVR(v.b, v.a), -v.expected || 0, `line ${v.line}: antisymmetric`);
  }
});

t.test('rpmvercmp matches the behaviour rpm documents (but does not test) in the oddities file', async (t) => {
  for (const v of vectors('rpm/rpmvercmp-disabled-oddities.tsv', 3)) {
    t.equal(rpmvercmp(v.a, v.b), v.expected, `line ${v.line}: rpmvercmp(${v.a}, ${v.b})`);
  }
});

t.test('compareEVR follows rpmverCmp: epoch 0 by default, a missing release matches any', async (t) => {
  t.equal(compareEVR('219', '219-62.el7_6.2'), 0);
  t.equal(compareEVR('219-62.el7_6.2', '219'), 0);
  t.equal(compareEVR('218', '219-1'), -1);
  t.equal(compareEVR('0:219-67.el7', '219-67.el7'), 0);
  t.equal(compareEVR(':1.0-1', '0:1.0-1'), 0, 'an empty epoch is 0, as in rpm');
  t.equal(compareEVR('1:1', '2'), 1);
  t.equal(compareEVR('00:1-1', '0:1-1'), 0, 'epochs compare like versions');
  // The release is what follows the LAST '-' (rpm's parseEVR).
  t.same(splitEVR('1:a-b-c'), { epoch: '1', version: 'a-b', release: 'c' });
  t.same(splitEVR('x:1'), { epoch: undefined, version: 'x:1', release: undefined });
});

t.test('rpmvercmp edge cases beyond the corpus', async (t) => {
  t.equal(rpmvercmp('', ''), 0);
  t.equal(rpmvercmp('', '1'), -1);
  t.equal(rpmvercmp('1', ''), 1);
  t.equal(rpmvercmp('~', ''), -1, 'a tilde sorts before the end');
  t.equal(rpmvercmp('^', ''), 1, 'a caret sorts after the end');
  t.equal(rpmvercmp('1', 'a'), 1, 'numbers beat letters');
  t.equal(rpmvercmp('a', '1'), -1);
  t.equal(rpmvercmp('99999999999999999999999', '99999999999999999999998'), 1, 'no integer overflow');
  t.equal(rpmvercmp('1.0\0junk', '1.0'), 0, 'a NUL ends the string as in C');
  t.equal(rpmvercmp('62.el7_6.2', '67.el7'), -1);
  t.equal(rpmvercmp('73.el7.1', '67.el7'), 1);
});

/** Sections of systemd-el7-versions.txt, keyed by the id before the first '.' of the header. */
function sections(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of read('systemd/systemd-el7-versions.txt').split('\n')) {
    if (line === '') continue;
    const h = /^# ([A-Z][0-9]*)\. /.exec(line);
    if (h) {
      current = [];
      out.set(h[1] as string, current);
      continue;
    }
    if (!current) throw new Error(`value before any section header: ${line}`);
    current.push(line);
  }
  return out;
}

t.test('systemd-el7-versions.txt: every line, per section', async (t) => {
  const secs = sections();
  t.same([...secs.keys()], ['A', 'A2', 'A3', 'B', 'C', 'D', 'E'], 'the sections this test knows');

  // Each value is attributed in the sources TSV, under a section with the same letter.
  const sourced = read('systemd/systemd-el7-versions.sources.tsv')
    .split('\n')
    .slice(1)
    .filter(Boolean)
    .map((l) => l.split('\t'));
  for (const [id, values] of secs) {
    for (const v of values) {
      t.ok(sourced.some(([sec, val]) => val === v && sec?.[0] === id[0]), `${id}: ${v} is in the sources TSV`);
    }
  }

  const versions = (secs.get('A') ?? []).concat(secs.get('B') ?? []);
  for (const [id, values] of secs) {
    for (const text of values) {
      const auto = parseSystemdVersion(text);
      switch (id) {
        case 'A':
        case 'B': {
          const r = parseVersionRelease(text);
          if (!r.ok) {
            t.fail(`${id}: ${text}: ${r.error}`);
            continue;
          }
          t.equal(r.value.version, '219', `${id}: ${text} version`);
          t.equal(isEl7Release(r.value.release), id === 'A', `${id}: ${text} is ${id === 'A' ? '' : 'not '}an el7 release`);
          t.same(auto, r, `${id}: ${text} read the same by parseSystemdVersion`);
          break;
        }
        case 'A2': // a publisher's mangling of an el7 release ('~' for '_')
          t.notOk(auto.ok, `${id}: ${text} is not readable`);
          if (!auto.ok) t.match(auto.error, /el7.*mangled/, `${id}: ${text} says why`);
          break;
        case 'A3': // '_' printed for '-'
        case 'E':
          t.notOk(auto.ok, `${id}: ${text} is not readable`);
          if (!auto.ok) t.match(auto.error, /"_" but no "-"/, `${id}: ${text} says why`);
          break;
        case 'C': {
          const r = parseNVRA(text);
          if (!r.ok) {
            t.fail(`${id}: ${text}: ${r.error}`);
            continue;
          }
          t.match(r.value, { name: /^systemd(-libs)?$/, version: '219', arch: 'x86_64', form: 'nvra' }, `${id}: ${text}`);
          t.ok(isEl7Release(r.value.release), `${id}: ${text} is an el7 release`);
          t.ok(text.startsWith(`${r.value.name}-219-${r.value.release}.x86_64`), `${id}: ${text} split at the right places`);
          t.same(auto, r, `${id}: ${text} read the same by parseSystemdVersion`);
          break;
        }
        case 'D': {
          const r = parseSystemctlVersionLine(text);
          if (!r.ok) {
            t.fail(`${id}: ${text}: ${r.error}`);
            continue;
          }
          const [, upstream, build] = /^systemd (\d+)(?: \((.*)\))?$/.exec(text) ?? [];
          t.equal(r.value.upstream, upstream, `${id}: ${text} upstream`);
          t.equal(r.value.packageVersion, build, `${id}: ${text} build string kept verbatim`);
          t.notOk(isEl7Release(r.value.release), `${id}: ${text} is not el7`);
          if (build && /^[^-]+-[^-]+$/.test(build)) t.equal(r.value.release, build.split('-')[1], `${id}: ${text} release`);
          if (build === '255.5-3-arch' || build === '255.2-3-arch') t.equal(r.value.release, undefined, `${id}: ${text}: two "-", release not guessed`);
          t.same(auto, r, `${id}: ${text} read the same by parseSystemdVersion`);
          break;
        }
      }
    }
  }
  t.ok(versions.length > 70, 'sections A and B are populated');
});

t.test('systemctl-version/*.out: every file parses', async (t) => {
  const dir = new URL('systemd/systemctl-version/', corpus);
  const files = readdirSync(dir).filter((f) => f.endsWith('.out'));
  t.ok(files.length >= 9, `${files.length} files`);
  for (const f of files) {
    const first = readFileSync(new URL(f, dir), 'utf8').split('\n')[0] as string;
    const r = parseSystemctlVersionLine(first);
    t.ok(r.ok, `${f}: ${first}`);
  }
});

t.test('strict reading rejects what it cannot read, naming why', async (t) => {
  const bad: [string, RegExp][] = [
    ['', /empty/],
    [' 219-67.el7', /whitespace/],
    ['219-67.el7\n', /whitespace/],
    ['219-67-1.el7', /more than one "-"/],
    ['219-67.el7~7.1', /mangled/],
    ['219-67.el7 .1', /whitespace/],
    ['219/67', /"\/"/],
    ['a:219', /":"/],
    ['1:', /must start with a letter or digit/],
    ['219-', /must start with a letter or digit/],
    ['-67.el7', /must start with a letter or digit/],
    ['.219', /must start with a letter or digit/],
    ['219_67.el7', /"_" but no "-"/],
    ['219-67.el7^1', /mangled/],
    ['219-67.el7_a', /mangled/],
    ['219-αβ', /"α"/],
  ];
  for (const [text, why] of bad) {
    const r = parseVersionRelease(text);
    t.notOk(r.ok, JSON.stringify(text));
    if (!r.ok) t.match(r.error, why, JSON.stringify(text));
  }
  for (const good of ['219-67.el7', '1:219-67.el7', '219', '252.19-1~deb12u1', '219-78.el7.centos', '2.9.1-6.0.1.el7_2.3', '1.0_1-2', '219-67.el7_7.1']) {
    t.ok(parseVersionRelease(good).ok, good);
  }
  t.notOk(parseNVRA('systemd-219').ok, 'a label needs name, version and release');
  t.notOk(parseNVRA('systemd-219-78.el7.x86_64.foo.rpm').ok, 'a package file needs a known arch');
  t.notOk(parseNVRA('1systemd-219-78.el7').ok, 'a name starts with a letter');
  t.notOk(parseNVRA('systemd-219-78.el7~9.7.x86_64').ok, 'mangled releases stay unreadable inside a label');
  t.match(parseNVRA('systemd-219-78.el7'), { ok: true, value: { release: '78.el7', arch: undefined } }, 'no arch: old rpm -q format');
  t.notOk(parseSystemctlVersionLine('systemd 219 (219-78.el7~9.7)').ok, 'an el7 build string must read cleanly');
  t.notOk(parseSystemctlVersionLine('systemd').ok);
  t.notOk(parseSystemctlVersionLine('systemd two').ok);
  t.notOk(parseSystemctlVersionLine('systemd 252 (252.19-1~deb12u1) extra').ok);
});

t.test('VERSION_RELEASE_PATTERN accepts exactly what parseVersionRelease accepts', async (t) => {
  const re = new RegExp(VERSION_RELEASE_PATTERN, 'u');
  const samples = new Set<string>([
    '', ' 219', '219-', '-1', '1:', ':1', 'a:1', '1:2:3', '219_78', '219_78-1', '219-1_2', '219-78.el7~9.7', '219-el7',
    '219-1.el7', '219-1.el7_', '219-1.el7_9', '219-1.el7_9.9', '219-1.el7.centos', '219-1.el70', '219-1.xel7',
    '219-1.el7x', '219-a.el7', '219-1~el7', '219-1.el7^1', '1.el7', '1_el7', 'αβ', '219-67.el7_7.1',
  ]);
  for (const v of vectors('rpm/rpmvercmp.tsv', 3).concat(vectors('rpm/rpm-evr-compare.tsv', 4))) {
    samples.add(v.a).add(v.b);
  }
  for (const values of sections().values()) for (const v of values) samples.add(v);
  let accepted = 0;
  for (const s of samples) {
    const ok = parseVersionRelease(s).ok;
    if (ok) accepted++;
    t.equal(re.test(s), ok, `${JSON.stringify(s)}: pattern and parser agree (${ok ? 'accepted' : 'rejected'})`);
  }
  t.ok(accepted > 50 && accepted < samples.size, 'the samples include both kinds');
  // Ajv in strict mode (as agent/config.ts uses it) must compile the pattern.
  const validate = new Ajv({ strict: true }).compile({ type: 'string', pattern: VERSION_RELEASE_PATTERN });
  t.ok(validate('219-67.el7'));
  t.notOk(validate('219_67.el7'));
});
