import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  classifyKubeletLine,
  isUnhealthyLabel,
  parseGoDuration,
  PLEG_LABELS,
  type PlegLabel,
} from '../checks/pleg-classify.js';

const corpus = fileURLToPath(new URL('./fixtures/corpus/kubelet/', import.meta.url));

/** `label<TAB>line` rows after the header, with their 1-based line number in the file. */
function readTsv(name: string): { no: number; label: string; line: string }[] {
  const rows = readFileSync(corpus + name, 'utf8').split('\n');
  const out: { no: number; label: string; line: string }[] = [];
  rows.forEach((row, i) => {
    if (i === 0 || row === '') return;
    const tab = row.indexOf('\t');
    if (tab === -1) throw new Error(`${name}:${i + 1}: no TAB`);
    out.push({ no: i + 1, label: row.slice(0, tab), line: row.slice(tab + 1) });
  });
  return out;
}

t.test('every line of kubelet-pleg.tsv gets its label', async (t) => {
  const rows = readTsv('kubelet-pleg.tsv');
  t.equal(rows.length, 23, 'the corpus has 23 labelled lines (a changed corpus must be looked at)');
  const seen = new Set<string>();
  for (const { no, label, line } of rows) {
    t.ok(PLEG_LABELS.includes(label as PlegLabel), `line ${no}: corpus label ${label} is one we know`);
    t.equal(classifyKubeletLine(line).label, label, `kubelet-pleg.tsv:${no}`);
    seen.add(label);
  }
  t.same([...seen].sort(), ['node-notready-pleg', 'pleg-benign', 'pleg-relist-error', 'pleg-startup', 'pleg-unhealthy']);
});

t.test('nothing in kubelet-other.tsv mentions PLEG trouble', async (t) => {
  const rows = readTsv('kubelet-other.tsv');
  t.equal(rows.length, 55);
  for (const { no, label, line } of rows) {
    t.equal(label, 'other');
    const c = classifyKubeletLine(line);
    t.equal(c.label, 'other', `kubelet-other.tsv:${no}`);
    t.notOk(isUnhealthyLabel(c.label));
  }
});

t.test('no pleg-benign or relist line counts as unhealthy', async (t) => {
  for (const { no, label, line } of readTsv('kubelet-pleg.tsv')) {
    const unhealthy = isUnhealthyLabel(classifyKubeletLine(line).label);
    t.equal(unhealthy, label === 'pleg-unhealthy' || label === 'node-notready-pleg', `kubelet-pleg.tsv:${no}`);
  }
});

t.test('the message fragments (kubectl describe rows, bare messages) are unhealthy reports', async (t) => {
  const lines = readFileSync(corpus + 'pleg-message-fragments.txt', 'utf8').split('\n').filter((l) => l !== '');
  t.equal(lines.length, 8);
  const expected: PlegLabel[] = [
    'pleg-unhealthy',
    'pleg-unhealthy',
    'node-notready-pleg',
    'pleg-unhealthy',
    'node-notready-pleg',
    'node-notready-pleg',
    'pleg-unhealthy',
    'pleg-unhealthy',
  ];
  const lastSeen = [
    714676.753691,
    471835.147826,
    187341.793557,
    183928.932625,
    58670791.825508,
    618040.734348,
    191637.412161,
    234717.586412,
  ];
  lines.forEach((line, i) => {
    const c = classifyKubeletLine(line);
    t.equal(c.label, expected[i], `fragment ${i + 1}`);
    t.ok(Math.abs((c.lastSeenActiveMs ?? NaN) - lastSeen[i]!) < 1e-6, `fragment ${i + 1} last seen ${c.lastSeenActive}`);
  });
  // Published cut short: the text is kept, but it is not a duration.
  const cut = classifyKubeletLine(lines[7]!);
  t.equal(cut.threshold, '3m0');
  t.equal(cut.thresholdMs, undefined);
});

t.test('extracts the details', async (t) => {
  const rows = readTsv('kubelet-pleg.tsv');
  const first = classifyKubeletLine(rows[0]!.line);
  t.match(first, {
    label: 'pleg-unhealthy',
    lastSeenActive: '4m51.763621609s',
    threshold: '3m0s',
    thresholdMs: 180_000,
    severity: 'E',
    klogTime: { month: 10, day: 8, hour: 16, minute: 23, second: 14, microsecond: 139967 },
    klogPid: 1636,
  });
  t.ok(Math.abs(first.lastSeenActiveMs! - 291_763.621609) < 1e-6);

  const structured = classifyKubeletLine(rows.find((r) => r.line.includes('err="PLEG'))!.line);
  t.match(structured, { label: 'pleg-unhealthy', lastSeenActive: '2h33m12.704970756s', klogPid: 3263, severity: 'E' });
  t.ok(Math.abs(structured.lastSeenActiveMs! - 9_192_704.970756) < 1e-6);

  const json = classifyKubeletLine(rows.find((r) => r.line.startsWith('192.168.231.8: '))!.line);
  t.match(json, { label: 'pleg-unhealthy', lastSeenActive: '16h14m34.439643899s', jsonTimeMs: 1757010283211.4668 });
  t.equal(json.klogTime, undefined);

  const trailingDot = classifyKubeletLine(rows.find((r) => r.line.includes('threshold is 3m0s.'))!.line);
  t.match(trailingDot, { label: 'pleg-unhealthy', thresholdMs: 180_000, klogPid: 20904, severity: 'I' });
  t.equal(trailingDot.threshold, '3m0s', 'the sentence\'s period is not part of the threshold');
  t.equal(first.threshold, '3m0s');
  t.equal(first.lastSeenActive, '4m51.763621609s');

  const docker = classifyKubeletLine(rows.find((r) => r.line.includes(' docker[641]: '))!.line);
  t.match(docker, { label: 'pleg-unhealthy', klogPid: 683, lastSeenActive: '17h23m48.85090857s' });

  const sentinel = classifyKubeletLine(rows.find((r) => r.line.includes('2562047h'))!.line);
  t.match(sentinel, { label: 'pleg-startup', neverRelisted: true, lastSeenActive: '2562047h47m16.854775807s' });
  t.equal(sentinel.lastSeenActiveMs, undefined, 'the sentinel is not a real duration');

  const yet = classifyKubeletLine(rows.find((r) => r.line.includes('yet to be successful'))!.line);
  t.match(yet, { label: 'pleg-startup', neverRelisted: true, jsonTimeMs: 1753141980841.7654 });
});

t.test('nodemedic\'s own messages and near misses are not kubelet reports', async (t) => {
  const cases: [string, PlegLabel][] = [
    ['kubelet reported PLEG is not healthy 5 times in the last 5m (last: pleg was last seen active 3m25s ago)', 'pleg-benign'],
    ['{"level":40,"msg":"pleg: kubelet reported PLEG is not healthy 3 times"}', 'pleg-benign'],
    ['PLEG is not healthy', 'pleg-benign'],
    ['PLEG is not healthy: pleg was last seen active ' + '9'.repeat(100) + 's ago; threshold is 3m0s', 'pleg-benign'],
    ['skipping pod synchronization - [container runtime is down]', 'other'],
    ['Recording NodeNotReady event message for node n1', 'other'],
    ['', 'other'],
    ['PLEG is not healthy: pleg was last seen active 3m1s ago; threshold is 3m0s', 'pleg-unhealthy'],
    ['I0101 00:00:00.000000 1 generic.go:1] "GenericPLEG: Unable to retrieve pods" err="boom"', 'pleg-relist-error'],
  ];
  for (const [line, label] of cases) t.equal(classifyKubeletLine(line).label, label, JSON.stringify(line.slice(0, 80)));
});

t.test('a later occurrence is found when an earlier one is mangled', async (t) => {
  const line = 'PLEG is not healthy: pleg was last seen active ?? ago; x; PLEG is not healthy: pleg was last seen active 4m0s ago; threshold is 3m0s';
  t.match(classifyKubeletLine(line), { label: 'pleg-unhealthy', lastSeenActiveMs: 240_000 });
});

t.test('Go durations', async (t) => {
  const ok: [string, number][] = [
    ['3m0s', 180_000],
    ['4m51.763621609s', 291_763.621609],
    ['2h33m12.704970756s', 9_192_704.970756],
    ['500ms', 500],
    ['1.5µs', 0.0015],
    ['10us', 0.01],
    ['7ns', 0.000007],
    ['0', 0],
    ['.5s', 500],
  ];
  for (const [text, ms] of ok) t.ok(Math.abs(parseGoDuration(text)! - ms) < 1e-9, `${text} = ${ms}`);
  for (const bad of ['', '3m0', 'm', '5x', '1..5s', '.s', 's5', '-1s', '9'.repeat(70) + 's']) {
    t.equal(parseGoDuration(bad), undefined, JSON.stringify(bad));
  }
});

t.test('adversarial 100 KB lines are classified in milliseconds', async (t) => {
  const N = 100 * 1024;
  const fill = (unit: string, tail = ''): string => unit.repeat(Math.ceil(N / unit.length)).slice(0, N) + tail;
  const shapes: Record<string, string> = {
    spaces: fill(' '),
    'spaces after PLEG': 'PLEG' + fill(' ') + 'x',
    digits: fill('9'),
    'repeated last-seen prefix': fill('PLEG is not healthy: pleg was last seen active '),
    'repeated last-seen prefix with digits': fill('PLEG is not healthy: pleg was last seen active 9999999999'),
    'repeated phrase then a real one': fill('PLEG is not healthy: ') + 'PLEG is not healthy: pleg was last seen active 4m0s ago; threshold is 3m0s',
    'klog header then spaces': 'I0101 00:00:00.000000' + fill(' ') + '1 pleg',
    'repeated klog headers': fill('I0101 00:00:00.000000 ') + 'pleg',
    'json ts digits': '{"ts":' + fill('1') + ' pleg',
    'GenericPLEG repeats': fill('GenericPLEG: Unable to retrieve pod'),
    'long last-seen value': 'PLEG is not healthy: pleg was last seen active ' + fill('1m') + ' ago; threshold is 3m0s',
  };
  for (const [name, line] of Object.entries(shapes)) {
    classifyKubeletLine(line); // warm up the regex compiler
    const start = process.hrtime.bigint();
    for (let i = 0; i < 5; i++) classifyKubeletLine(line);
    const ms = Number(process.hrtime.bigint() - start) / 1e6 / 5;
    t.ok(ms < 50, `${name}: ${ms.toFixed(3)} ms per line`);
  }
  t.match(classifyKubeletLine(shapes['repeated phrase then a real one']!), { label: 'pleg-benign' }, 'attempts are bounded: a real report after 5000 decoys is not looked for');
});
