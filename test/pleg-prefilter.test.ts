/**
 * The pleg file path's prefilter (checks/log-source.ts LineSplitter `needles`, FileSource
 * `onlyLinesContaining` with PLEG_LINE_NEEDLES) must not change a single classification: every
 * corpus line, fed in random chunk sizes (lines and needles split across chunk boundaries), gets
 * the same label, in the same order, as the plain splitter + classifier give it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { systemClock } from '../platform/clock.js';
import { FileSource, LineSplitter } from '../checks/log-source.js';
import { classifyKubeletLine, PLEG_LINE_NEEDLES, type PlegClassification } from '../checks/pleg-classify.js';

const corpus = fileURLToPath(new URL('./fixtures/corpus/kubelet/', import.meta.url));

function corpusLines(name: string): string[] {
  return readFileSync(corpus + name, 'utf8')
    .split('\n')
    .slice(1)
    .filter(Boolean)
    .map((row) => {
      const tab = row.indexOf('\t');
      if (tab === -1) throw new Error(`${name}: a row without a TAB`);
      return row.slice(tab + 1);
    });
}

/** mulberry32: reproducible chunk sizes; the seed is in the test names. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const pleg = corpusLines('kubelet-pleg.tsv');
const other = corpusLines('kubelet-other.tsv');
const MAX = 300;
/** Lines where the prefilter could go wrong: the cap, bytes that are not UTF-8, multi-byte text, empty lines. */
const edge: Buffer[] = [
  Buffer.from(`${'x'.repeat(MAX - 4)}PLEG is not healthy: pleg was last seen active 4m0s ago; threshold is 3m0s`), // needle just inside the cap
  Buffer.from(`${'x'.repeat(MAX - 3)}PLEG is not healthy: pleg was last seen active 4m0s ago; threshold is 3m0s`), // needle cut by the cap
  Buffer.from(`${'€'.repeat(120)}pleg`), // multi-byte text, needle beyond the cap
  Buffer.from(`${'€'.repeat(20)} PLEG is not healthy: pleg was last seen active 4m0s ago; threshold is 3m0s`),
  Buffer.concat([Buffer.from('bytes \xff\xfe\xc3', 'latin1'), Buffer.from('PLEG is not healthy: pleg has yet to be successful')]),
  Buffer.concat([Buffer.from('PL', 'latin1'), Buffer.from([0xff]), Buffer.from('EG pl\xc3eg', 'latin1')]), // no needle once decoded either
  Buffer.from(''),
  Buffer.from('y'.repeat(5 * MAX)),
  Buffer.from(`${'z'.repeat(2 * MAX)}PLEG`),
];

/** The stream: every corpus line a few times, PLEG lines among ordinary ones, the edge cases between. */
function buildStream(random: () => number): Buffer {
  const lines: Buffer[] = [];
  for (let round = 0; round < 3; round++) {
    for (const l of other) lines.push(Buffer.from(l));
    for (const l of pleg) lines.splice(Math.floor(random() * (lines.length + 1)), 0, Buffer.from(l));
    for (const l of edge) lines.splice(Math.floor(random() * (lines.length + 1)), 0, l);
  }
  // No final newline: the last line comes out of flush().
  return Buffer.concat(lines.flatMap((l, i) => (i === lines.length - 1 ? [l] : [l, Buffer.from('\n')])));
}

type Seen = { kind: 'line'; text: string; truncated: boolean } | { kind: 'skipped'; truncated: boolean };

function split(stream: Buffer, max: number, chunks: () => number, needles?: readonly string[]): Seen[] {
  const seen: Seen[] = [];
  const s = new LineSplitter(max, (text, truncated) => seen.push({ kind: 'line', text, truncated }), {
    ...(needles
      ? {
          needles,
          onSkipped: (lines: number, truncated: number) => {
            // Which of a batch were cut is not said; the count is checked against the plain split.
            for (let i = 0; i < lines; i++) seen.push({ kind: 'skipped', truncated: i < truncated });
          },
        }
      : {}),
  });
  // The chunk buffer is reused between pushes, as FileSource reuses its read buffer.
  const scratch = Buffer.alloc(stream.length);
  for (let at = 0; at < stream.length; ) {
    const n = Math.min(chunks(), stream.length - at);
    const view = scratch.subarray(0, n);
    stream.copy(view, 0, at, at + n);
    s.push(view);
    view.fill(0x21);
    at += n;
  }
  s.flush();
  return seen;
}

function labels(seen: Seen[]): { labels: PlegClassification[]; truncated: number; delivered: number } {
  let truncated = 0;
  let delivered = 0;
  const out = seen.map((x) => {
    if (x.truncated) truncated++;
    if (x.kind === 'skipped') return { label: 'other' } as PlegClassification;
    delivered++;
    return classifyKubeletLine(x.text);
  });
  return { labels: out, truncated, delivered };
}

t.test('the needles are the classifier\'s own gate', async (t) => {
  t.same(PLEG_LINE_NEEDLES, ['PLEG', 'pleg']);
  for (const l of [...pleg, ...other]) {
    const has = PLEG_LINE_NEEDLES.some((n) => l.includes(n));
    if (!has) t.equal(classifyKubeletLine(l).label, 'other', `a line without a needle is other: ${l.slice(0, 60)}`);
  }
  t.ok(pleg.every((l) => PLEG_LINE_NEEDLES.some((n) => l.includes(n))), 'every PLEG corpus line holds a needle');
});

for (const seed of [1, 2, 3, 20240601]) {
  for (const max of [MAX, 64 * 1024]) {
    t.test(`prefiltered split = plain split + classifier (seed ${seed}, maxLineBytes ${max})`, async (t) => {
      const random = rng(seed);
      const stream = buildStream(random);
      const plain = split(stream, max, () => 4096);
      const want = labels(plain);
      t.ok(want.labels.filter((c) => c.label !== 'other').length >= 3 * pleg.length - 3, 'the stream has the PLEG lines');
      if (max === MAX) t.ok(want.truncated >= 3 * 4, 'and lines over the cap');
      // Chunks from 1 byte up: every line and needle gets split somewhere.
      const sizes: [string, () => number][] = [
        ['1-16 bytes', () => 1 + Math.floor(random() * 16)],
        ['1-700 bytes', () => 1 + Math.floor(random() * 700)],
        ['1-70000 bytes', () => 1 + Math.floor(random() * 70_000)],
      ];
      for (const [what, chunks] of sizes) {
        const filtered = split(stream, max, chunks, PLEG_LINE_NEEDLES);
        const got = labels(filtered);
        t.equal(filtered.length, plain.length, `${what}: as many lines`);
        t.equal(got.truncated, want.truncated, `${what}: as many cut lines`);
        t.same(got.labels, want.labels, `${what}: every line classified the same, in order`);
        t.ok(got.delivered < plain.length / 2, `${what}: most lines are skipped (${got.delivered} of ${plain.length} delivered)`);
        const wantDelivered = plain.filter((x) => x.kind === 'line' && PLEG_LINE_NEEDLES.some((n) => x.text.includes(n)));
        t.same(filtered.filter((x) => x.kind === 'line'), wantDelivered, `${what}: the delivered lines are exactly the plain ones holding a needle`);
      }
      // Unchanged without needles, whatever the chunking.
      t.same(split(stream, max, () => 1 + Math.floor(random() * 700)), plain, 'plain split does not depend on chunking');
    });
  }
}

t.test('FileSource with onlyLinesContaining: same labels and counts as without, small and backlog reads', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-prefilter-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stream = buildStream(rng(7));
  const plain = split(stream, MAX, () => 4096);
  const want = labels(plain);
  const wantSkipped = plain.filter((x) => x.kind === 'line' && !PLEG_LINE_NEEDLES.some((n) => x.text.includes(n))).length;
  t.ok(wantSkipped > plain.length / 2);
  for (const [chunkBytes, backlogChunkBytes] of [
    [1000, 7777],
    [64 * 1024, 1024 * 1024],
  ] as const) {
    for (const filtered of [false, true]) {
      const path = join(dir, `kubelet-${chunkBytes}-${filtered}.log`);
      const got: PlegClassification[] = [];
      const src = new FileSource({
        path,
        clock: systemClock,
        maxLineBytes: MAX,
        chunkBytes,
        backlogChunkBytes,
        ...(filtered ? { onlyLinesContaining: PLEG_LINE_NEEDLES } : {}),
        onLine: (l) => {
          const c = classifyKubeletLine(l.text);
          if (c.label !== 'other') got.push(c);
        },
      });
      t.teardown(() => src.stop());
      src.start();
      await src.poll();
      // Created after start(): read from its beginning, in full reads and then backlog reads.
      writeFileSync(path, Buffer.concat([stream, Buffer.from('\n')]));
      await src.poll();
      const st = src.status();
      const what = `chunks ${chunkBytes}/${backlogChunkBytes}, ${filtered ? 'prefiltered' : 'plain'}`;
      t.same(got, want.labels.filter((c) => c.label !== 'other'), `${what}: the same PLEG lines, in order`);
      t.equal(st.lines, want.labels.length, `${what}: lines counts every line`);
      t.equal(st.truncatedLines, want.truncated, `${what}: truncatedLines`);
      t.equal(st.skippedLines, filtered ? wantSkipped : undefined, `${what}: skippedLines`);
      t.equal(src.bufferedBytes(), 0);
      await src.stop();
    }
  }
});

t.test('bad needles are refused by name', async (t) => {
  t.throws(() => new LineSplitter(10, () => {}, { needles: [''] }), /needle must be non-empty ASCII/);
  t.throws(() => new LineSplitter(10, () => {}, { needles: ['€'] }), /needle must be non-empty ASCII without a newline \(got "€"\)/);
  t.throws(() => new LineSplitter(10, () => {}, { needles: ['a\nb'] }), /without a newline/);
  t.throws(() => new LineSplitter(0, () => {}), /maxLineBytes must be a whole number >= 1/);
});
