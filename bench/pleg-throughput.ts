/**
 * PLEG classification throughput: a file of 1,000,000 kubelet lines built from the corpus, read the
 * way the pleg check's `file` source reads kubelet's log (checks/log-source.ts `FileSource`: 64 KiB
 * reads, 1 MiB ones for a backlog, its `LineSplitter` with the `PLEG`/`pleg` byte prefilter) and classified by the pleg check's classifier (checks/pleg-classify.ts), against
 * `grep -c -F 'PLEG is not healthy'` on the same file: the practical limit for finding the phrase.
 * Two partial runs (source only, classifier only on lines already in memory) say where the time goes.
 */
import { execFile, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open, readFile, rename } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../platform/clock.js';
import { FileSource } from '../checks/log-source.js';
import { classifyKubeletLine, isUnhealthyLabel, PLEG_LABELS, PLEG_LINE_NEEDLES, type PlegLabel } from '../checks/pleg-classify.js';
import { CORPUS, envWithNodeOptions, fmt, marginAbove, median, REPO_ROOT, runs, table, UNIT_NODE_OPTIONS, type StepOptions, type StepReport } from './lib.js';

const PHRASE = 'PLEG is not healthy';
const LINES = 1_000_000;
/** One line in this many is a PLEG line (cycling through kubelet-pleg.tsv); the rest is ordinary chatter. */
const PLEG_EVERY = 100;

function corpusRows(file: string): { label: string; line: string }[] {
  const rows = readFileSync(join(CORPUS, 'kubelet', file), 'utf8').split('\n').slice(1).filter(Boolean);
  return rows.map((r) => {
    const tab = r.indexOf('\t');
    if (tab < 0) throw new Error(`${file}: row without a TAB: ${JSON.stringify(r.slice(0, 80))}`);
    return { label: r.slice(0, tab), line: r.slice(tab + 1) };
  });
}

interface Built {
  path: string;
  bytes: number;
  /** Lines whose corpus label is pleg-unhealthy or node-notready-pleg: what the classifier must count. */
  expectedUnhealthy: number;
  /** Lines containing the phrase: what grep must count. */
  expectedPhrase: number;
  plegLines: number;
}

async function buildFile(path: string): Promise<Built> {
  const other = corpusRows('kubelet-other.tsv');
  const pleg = corpusRows('kubelet-pleg.tsv');
  if (!other.length || !pleg.length) throw new Error(`empty corpus in ${CORPUS}/kubelet`);
  const out = createWriteStream(path);
  let expectedUnhealthy = 0;
  let expectedPhrase = 0;
  let plegLines = 0;
  let bytes = 0;
  let batch: string[] = [];
  let o = 0;
  let p = 0;
  for (let i = 0; i < LINES; i++) {
    let line: string;
    if (i % PLEG_EVERY === PLEG_EVERY - 1) {
      const row = pleg[p++ % pleg.length]!;
      line = row.line;
      plegLines++;
      if (row.label === 'pleg-unhealthy' || row.label === 'node-notready-pleg') expectedUnhealthy++;
    } else {
      line = other[o++ % other.length]!.line;
    }
    if (line.includes(PHRASE)) expectedPhrase++;
    batch.push(line);
    if (batch.length === 10_000) {
      const text = batch.join('\n') + '\n';
      bytes += Buffer.byteLength(text);
      if (!out.write(text)) await once(out, 'drain');
      batch = [];
    }
  }
  if (batch.length) {
    const text = batch.join('\n') + '\n';
    bytes += Buffer.byteLength(text);
    out.write(text);
  }
  out.end();
  await once(out, 'close');
  return { path, bytes, expectedUnhealthy, expectedPhrase, plegLines };
}

/** `grep -c -F PHRASE FILE` in the C locale (its fastest); wall time from spawn to exit. */
function grepCount(path: string): Promise<{ ms: number; count: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('grep', ['-c', '-F', PHRASE, path], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`grep could not run: ${e.message}`));
    });
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      if (code !== 0 && code !== 1) return reject(new Error(`grep exited ${code}: ${err.trim()}`));
      resolve({ ms, count: Number(out.trim()) });
    });
  });
}

/**
 * The file source's own path, configured as the pleg check configures it (checks/pleg.ts: the
 * `PLEG_LINE_NEEDLES` prefilter): a FileSource follows `path`, the built file is renamed onto it (a
 * new file is read from its start, as after a rotation), and every delivered line goes to `onLine`.
 * `lines` is every line read; `skipped` those the prefilter counted without delivering (all `other`).
 */
export async function throughFileSource(
  built: string,
  followed: string,
  onLine: (text: string) => void,
): Promise<{ ms: number; lines: number; skipped: number }> {
  const source = new FileSource({
    path: followed,
    clock: systemClock,
    onlyLinesContaining: PLEG_LINE_NEEDLES,
    onLine: (l) => onLine(l.text),
  });
  source.start();
  try {
    await source.poll();
    const t0 = performance.now();
    await rename(built, followed);
    // poll() resolves once everything up to the file's end at that moment has been delivered.
    await source.poll();
    const ms = performance.now() - t0;
    const st = source.status();
    if (st.failure) throw new Error(`FileSource failed: ${st.failure.message}`);
    return { ms, lines: st.lines, skipped: st.skippedLines ?? 0 };
  } finally {
    await source.stop();
    await rename(followed, built);
  }
}

/**
 * Not the agent's code: a reference for "what would close it". The same 64 KiB reads, each chunk
 * decoded once (StringDecoder keeps split UTF-8 sequences) and lines sliced out of the string, so a
 * line costs one slice; no prefilter: every line is decoded and classified.
 */
async function referenceDecodeSlice(path: string, onLine: (text: string) => void): Promise<{ ms: number; lines: number }> {
  const t0 = performance.now();
  const fh = await open(path, 'r');
  const buf = Buffer.alloc(64 * 1024);
  const decoder = new StringDecoder('utf8');
  let pos = 0;
  let tail = '';
  let lines = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      const text = tail + decoder.write(buf.subarray(0, bytesRead));
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
        onLine(text.slice(start, nl));
        lines++;
        start = nl + 1;
      }
      tail = text.slice(start);
    }
  } finally {
    await fh.close();
  }
  return { ms: performance.now() - t0, lines };
}

function emptyCounts(): Record<PlegLabel, number> {
  return Object.fromEntries(PLEG_LABELS.map((l) => [l, 0])) as Record<PlegLabel, number>;
}

export async function plegThroughput(opts: StepOptions): Promise<StepReport> {
  const n = opts.quick ? 3 : 5;
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-pleg-'));
  try {
    const built = await buildFile(join(dir, 'kubelet.log'));
    const followed = join(dir, 'followed.log');
    opts.log(`pleg-throughput: built ${LINES} lines, ${fmt(built.bytes / 1e6)} MB`);

    const grepMs: number[] = [];
    const fullMs: number[] = [];
    const sourceMs: number[] = [];
    const classifyMs: number[] = [];
    const refMs: number[] = [];
    let grepCountSeen = -1;
    let fullCounts = emptyCounts();
    const problems: string[] = [];
    // Unrecorded first run of grep: the file is then in the page cache for everyone.
    await grepCount(built.path);
    const memLines = (await readFile(built.path, 'utf8')).split('\n');
    memLines.pop();
    for (let i = 0; i < n; i++) {
      const g = await grepCount(built.path);
      grepMs.push(g.ms);
      grepCountSeen = g.count;

      const counts = emptyCounts();
      const full = await throughFileSource(built.path, followed, (text) => {
        counts[classifyKubeletLine(text).label]++;
      });
      // Skipped lines hold no needle: the classifier would have called them `other`.
      counts.other += full.skipped;
      if (full.lines !== LINES) problems.push(`run ${i + 1}: the file source read ${full.lines} lines, not ${LINES}`);
      fullMs.push(full.ms);
      fullCounts = counts;

      let sink = 0;
      const src = await throughFileSource(built.path, followed, (text) => {
        sink += text.length;
      });
      if (src.lines !== LINES || sink === 0) problems.push(`run ${i + 1}: source-only read ${src.lines} lines`);
      sourceMs.push(src.ms);

      const c3 = emptyCounts();
      const ref = await referenceDecodeSlice(built.path, (text) => {
        c3[classifyKubeletLine(text).label]++;
      });
      if (ref.lines !== LINES) problems.push(`run ${i + 1}: the reference splitter saw ${ref.lines} lines`);
      refMs.push(ref.ms);

      const c2 = emptyCounts();
      const t0 = performance.now();
      for (const line of memLines) c2[classifyKubeletLine(line).label]++;
      classifyMs.push(performance.now() - t0);
    }
    // The same FileSource + classifier runs in a process with the unit's NODE_OPTIONS (V8 without its
    // JIT): the rate the agent has as it ships.
    const child = await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'dist/bench/pleg-throughput-child.js'), built.path, followed, String(n)], {
      env: envWithNodeOptions(UNIT_NODE_OPTIONS),
      maxBuffer: 1024 * 1024,
    });
    const unit = JSON.parse(child.stdout) as { ms: number[]; lines: number[]; unhealthy: number };
    const unitMs = unit.ms;
    if (unit.lines.some((l) => l !== LINES)) problems.push(`with the unit's NODE_OPTIONS the file source read ${unit.lines.join(', ')} lines, not ${LINES}`);
    const unhealthy = PLEG_LABELS.filter(isUnhealthyLabel).reduce((s, l) => s + fullCounts[l], 0);
    if (unit.unhealthy !== unhealthy) problems.push(`with the unit's NODE_OPTIONS the classifier counted ${unit.unhealthy} unhealthy lines, not ${unhealthy}`);
    if (grepCountSeen !== built.expectedPhrase) problems.push(`grep counted ${grepCountSeen} lines, the file has ${built.expectedPhrase} with the phrase`);
    if (unhealthy !== built.expectedUnhealthy) {
      problems.push(`the classifier counted ${unhealthy} unhealthy lines, the corpus labels say ${built.expectedUnhealthy}`);
    }
    const rate = (ms: number[]) => LINES / (median(ms) / 1000);
    const rateRuns = (ms: number[]) => runs(ms.map((m) => LINES / (m / 1000) / 1e6));
    const grepRate = rate(grepMs);
    const fullRate = rate(fullMs);
    const ratio = fullRate / grepRate;
    const mbps = (ms: number[]) => built.bytes / 1e6 / (median(ms) / 1000);
    opts.log(`pleg-throughput: grep ${fmt(grepRate / 1e6)} M lines/s, classifier ${fmt(fullRate / 1e6)} M lines/s (${fmt(ratio)}x)`);

    // Where the time goes: the source's share, the classifier's share.
    const srcShare = median(sourceMs) / median(fullMs);
    const refRatio = rate(refMs) / grepRate;
    const classifyRatio = rate(classifyMs) / grepRate;
    const close =
      ratio >= 0.5
        ? undefined
        : `${fmt(srcShare * 100, 2)} % of the time is the file source (FileSource alone: ${fmt(median(sourceMs))} ms ` +
          `of ${fmt(median(fullMs))} ms): reading, searching each chunk for the needles and counting the newlines of the ` +
          `lines between hits. For comparison, decoding each chunk once and classifying every line (the reference row) runs at ` +
          `${fmt(refRatio)}x grep; the classifier alone on lines in memory at ${fmt(classifyRatio)}x grep.`;
    const body = [
      `Method: a file of ${LINES.toLocaleString('en-US')} lines (${fmt(built.bytes / 1e6)} MB) built by cycling through ` +
        `\`kubelet-other.tsv\` with every ${PLEG_EVERY}th line taken from \`kubelet-pleg.tsv\` (${built.plegLines.toLocaleString('en-US')} PLEG ` +
        `lines of all labels, ${built.expectedUnhealthy.toLocaleString('en-US')} of them unhealthy). Median of ${n} runs each, the file in the page ` +
        "cache. The classifier runs on the file source's own path: a `FileSource` (checks/log-source.ts) follows the file name, " +
        'configured as the pleg check configures it (the `PLEG`/`pleg` raw-byte prefilter: lines without either are counted, ' +
        'not decoded), the built file is renamed onto it, and the time runs until `poll()` has read every line, each delivered one classified by ' +
        '`classifyKubeletLine` (checks/pleg-classify.ts) and counted by label. grep: `LC_ALL=C grep -c -F ' +
        `'${PHRASE}' FILE\`, spawn to exit.`,
      '',
      table(
        ['what', 'median ms', 'M lines/s (median)', 'MB/s', 'runs, M lines/s'],
        [
          ['`grep -c -F` (baseline)', fmt(median(grepMs)), fmt(grepRate / 1e6), fmt(mbps(grepMs)), rateRuns(grepMs)],
          ['FileSource + classifier (the pleg check on a file)', fmt(median(fullMs)), fmt(fullRate / 1e6), fmt(mbps(fullMs)), rateRuns(fullMs)],
          [`the same, run with the unit's \`NODE_OPTIONS=${UNIT_NODE_OPTIONS}\``, fmt(median(unitMs)), fmt(rate(unitMs) / 1e6), fmt(mbps(unitMs)), rateRuns(unitMs)],
          ['  of which: FileSource alone (read + prefilter + split, no classify)', fmt(median(sourceMs)), fmt(rate(sourceMs) / 1e6), fmt(mbps(sourceMs)), rateRuns(sourceMs)],
          ['  of which: classifier alone (lines already in memory)', fmt(median(classifyMs)), fmt(rate(classifyMs) / 1e6), '', rateRuns(classifyMs)],
          ['reference, not the agent\'s code: decode each chunk once + slice lines, + classifier', fmt(median(refMs)), fmt(rate(refMs) / 1e6), fmt(mbps(refMs)), rateRuns(refMs)],
        ],
      ),
      '',
      `Ratio classifier / grep: **${fmt(ratio)}x** of grep's line rate. As the agent ships (systemd-units/nodemedic.service's ` +
        `\`NODE_OPTIONS\`, V8 without its JIT) the same path runs at ${fmt(rate(unitMs) / 1e6)} M lines/s, ` +
        `${fmt(rate(unitMs) / fullRate, 2)}x the rate with the JIT and ${fmt(rate(unitMs) / grepRate)}x grep's.`,
      '',
      `Counts (the same every run): grep ${grepCountSeen.toLocaleString('en-US')} lines with the phrase; classifier ` +
        PLEG_LABELS.map((l) => `${l} ${fullCounts[l].toLocaleString('en-US')}`).join(', ') +
        '. grep counts every line containing the phrase (startup lines and the PLEG-mentioning lines in the table too); the ' +
        'classifier tells them apart.',
      ...(problems.length ? ['', `**Discrepancies:** ${problems.join('; ')}.`] : []),
    ].join('\n');
    return {
      id: 'pleg-throughput',
      title: 'PLEG classification throughput',
      measured: true,
      body,
      goals: [
        {
          goal: "classifier at least half of grep's line rate",
          measured: `${fmt(fullRate / 1e6)} M lines/s vs grep ${fmt(grepRate / 1e6)} M lines/s = ${fmt(ratio)}x`,
          met: ratio >= 0.5,
          margin: marginAbove(ratio, 0.5, 'x'),
          ...(close ? { close } : {}),
        },
      ],
      data: { bytes: built.bytes, grepMs, fullMs, unitMs, nodeOptions: UNIT_NODE_OPTIONS, sourceMs, classifyMs, refMs, counts: fullCounts, grepCount: grepCountSeen, problems },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
