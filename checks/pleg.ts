/**
 * `pleg`: is kubelet reporting "PLEG is not healthy"?
 *
 * Reasons: `PLEGUnhealthy` (problem); `PLEGHealthy`, `PLEGRelistErrors` (ok; the second says relists
 * fail, a container-runtime hint); `NotInstalled` (journalctl or systemctl absent, unit unknown),
 * `SourceUnavailable` (file missing or unreadable, journalctl failing or stuck, no journal on this node),
 * `SourceUnreadable` (journalctl prints nothing that is a journal record), `SourceCatchingUp` (the journal
 * backlog is still being read), `InvalidConfig` (unknown).
 */
import type { Host } from '../platform/host.js';
import { monotonicNow } from '../platform/clock.js';
import { settlesWithin } from '../platform/deadline.js';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { classifyKubeletLine, PLEG_LINE_NEEDLES, type KlogTime, type PlegLabel } from './pleg-classify.js';
import { FileSource, JournaldSource, type LogLine, type LogSource, type SourceStatus } from './log-source.js';
import { showUnitShared, type UnitState } from '../platform/systemd-unit.js';
import { noSystemdHere } from './kubelet.js';
import { withOvercommitEvidence } from './node-overcommit.js';
import { unknown, type BaseCheckOptions, type Check, type CheckDefinition, type CheckDeps, type Finding } from './types.js';

export interface PlegOptions extends BaseCheckOptions {
  /** Where kubelet's log comes from. */
  source: 'journald' | 'file';
  /** The systemd unit whose journal is followed (`source: journald`); with `file`, used if it exists, for kubelet's start time. */
  unit: string;
  /** The file followed like `tail -F` (`source: file`). */
  file: string;
  /** Unhealthy lines are counted over this sliding window. */
  window: string;
  /** This many unhealthy lines within `window` make a problem. */
  minOccurrences: number;
  /** `pleg has yet to be successful` is normal this long after kubelet starts. */
  startupGrace: string;
}

/** Labels that are counted in the window (everything the classifier recognises). */
const COUNTED: readonly Exclude<PlegLabel, 'other'>[] = [
  'pleg-unhealthy',
  'node-notready-pleg',
  'pleg-startup',
  'pleg-relist-error',
  'pleg-benign',
];

/** Timestamps kept per label; beyond this, counts are reported as lower bounds (`countsCapped`). */
export const MAX_TIMES_PER_LABEL = 4096;
/** Lines quoted in the evidence are cut to this many characters. */
export const MAX_QUOTED_CHARS = 512;
/** Bound on each `systemctl show`. */
const UNIT_QUERY_TIMEOUT_MS = 5000;
/** How long start() waits for the first look at a followed file. */
const FIRST_POLL_WAIT_MS = 2000;

/** `nodemedic check` with `source: file` reads this much of the file's end (CheckDeps.oneShot). */
export const TAIL_BYTES = 4 * 1024 * 1024;
const MAX_TAIL_LINE = 64 * 1024;
/** A file on a hung mount must not hold `check` (an NPD plugin has its own timeout) forever. */
const TAIL_READ_TIMEOUT_MS = 5000;

/**
 * A klog header's time (`I1127 10:00:00.123456`: no year, the node's local time) in ms: the latest
 * such moment not after `now` (plus a minute of clock skew), so a December line read in January is
 * last year's.
 */
export function klogTimeMs(k: KlogTime, now: number): number {
  const year = new Date(now).getFullYear();
  for (const y of [year, year - 1]) {
    const ms = new Date(y, k.month - 1, k.day, k.hour, k.minute, k.second, Math.floor(k.microsecond / 1000)).getTime();
    if (ms <= now + 60_000) return ms;
  }
  return new Date(year - 1, k.month - 1, k.day, k.hour, k.minute, k.second).getTime();
}

/** How long one run waits for the journal backlog before answering `SourceCatchingUp`. */
const CATCH_UP_WAIT_MS = 10_000;

/** A fixed-capacity ring of timestamps (ms), oldest first; memory is O(capacity) whatever arrives. */
export class TimeRing {
  private readonly t: Float64Array;
  private head = 0;
  private n = 0;
  /** The newest timestamp dropped because the ring was full. */
  droppedUpTo = -Infinity;

  constructor(readonly capacity: number) {
    this.t = new Float64Array(capacity);
  }

  get size(): number {
    return this.n;
  }

  push(time: number): void {
    if (this.n === this.capacity) {
      this.droppedUpTo = Math.max(this.droppedUpTo, this.t[this.head]!);
      this.head = (this.head + 1) % this.capacity;
      this.n--;
    }
    this.t[(this.head + this.n) % this.capacity] = time;
    this.n++;
  }

  /** Forgets every timestamp before `time` (log order is time order, give or take a clock step). */
  dropBefore(time: number): void {
    while (this.n > 0 && this.t[this.head]! < time) {
      this.head = (this.head + 1) % this.capacity;
      this.n--;
    }
  }

  countWhere(pred: (time: number) => boolean): number {
    let c = 0;
    for (let i = 0; i < this.n; i++) if (pred(this.t[(this.head + i) % this.capacity]!)) c++;
    return c;
  }
}

/** A log line quoted in the evidence. */
export interface QuotedLine {
  /** ISO time of the record (journald) or of reading it (file). */
  time: string;
  label: PlegLabel;
  /** The line, cut to MAX_QUOTED_CHARS characters. */
  line: string;
  lastSeenActive?: string;
  threshold?: string;
}

interface Sample {
  /** When the line was logged, on the monotonic clock (see `PlegMonitor.monoOf`). */
  monoMs: number;
  quoted: QuotedLine;
  lastSeenActiveMs?: number;
  neverRelisted?: boolean;
}

/**
 * A copy that shares no memory with `s`: V8 keeps a slice (or a regex capture) of a string as a
 * view of the whole, so a 20-character capture kept for the evidence would pin a 256 KiB line.
 */
function detach(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

function quote(line: string): string {
  return detach(line.length > MAX_QUOTED_CHARS ? `${line.slice(0, MAX_QUOTED_CHARS - 1)}…` : line);
}

function iso(ms: number | undefined): string | null {
  return ms === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString();
}

/** A live `pleg` check: a log follower feeding windowed counters, judged on each run. */
export class PlegMonitor implements Check {
  readonly id = 'pleg';
  private readonly host: Host;
  private readonly windowMs: number;
  private readonly graceMs: number;
  private readonly configError: string | undefined;
  private readonly rings = new Map<PlegLabel, TimeRing>();
  private source: LogSource | undefined;
  private startedOnce = false;
  /** Monotonic ms when this monitor started. */
  private startedAtMono = 0;
  private sinceMs: number | undefined;
  /** Kubelet's last start, and what told us. */
  private kubeletStartMs: number | undefined;
  /** The same instant on the monotonic clock: what the window is judged by. */
  private kubeletStartMono: number | undefined;
  /** The last `ActiveEnterTimestamp` systemd gave (wall ms): only a different one is a new start. */
  private lastSystemdStartMs: number | undefined;
  private kubeletStartFrom: 'systemd' | 'journal' | 'log-pid' | undefined;
  private lastPid: number | undefined;
  private unit: UnitState | undefined;
  /** Why the journal cannot be read at all: no systemctl here, or no such unit. */
  private unitMissing: string | undefined;
  /** `systemctl show` said there is no systemd on this node (evidence). */
  private noSystemd = false;
  /** The last failed `systemctl show` (e.g. a hung PID 1), shown in the evidence. */
  private unitError: string | undefined;
  private monoPair: { realtimeUs: number; monotonicUs: number } | undefined;
  private episode = false;
  private first: Sample | undefined;
  private last: Sample | undefined;
  private lastRelist: Sample | undefined;
  private readonly requestRun: (() => void) | undefined;
  /** A line crossed the threshold and a run was asked for; cleared when a run begins. */
  private runRequested = false;
  /** `systemctl show` has been asked at least once, so kubelet's start time is as known as it gets without it. */
  private unitQueried = false;

  /** `nodemedic check`: read the recent tail of a followed file first (CheckDeps.oneShot). */
  private readonly oneShot: boolean;
  /** Whose overcommit a PLEG problem carries as evidence (checks/node-overcommit.ts). */
  private readonly nodeName: string;

  constructor(
    private readonly opts: PlegOptions,
    deps: Pick<CheckDeps, 'host' | 'requestRun' | 'oneShot'> & Partial<Pick<CheckDeps, 'nodeName'>>,
  ) {
    this.host = deps.host;
    // No node name (a monitor built outside the agent): no node, so no figures to add.
    this.nodeName = deps.nodeName ?? '';
    this.requestRun = deps.requestRun;
    this.oneShot = deps.oneShot === true;
    let windowMs = 5 * 60_000;
    let graceMs = 5 * 60_000;
    let err: string | undefined;
    try {
      windowMs = parseDuration(opts.window);
      graceMs = parseDuration(opts.startupGrace);
    } catch (e) {
      err = `checks.pleg: ${(e as Error).message}`;
    }
    if (opts.source === 'file' && !opts.file.startsWith('/')) {
      err = `checks.pleg.file must be an absolute path when source is file (got ${JSON.stringify(opts.file)})`;
    }
    if (!(Number.isInteger(opts.minOccurrences) && opts.minOccurrences >= 1)) {
      err = `checks.pleg.minOccurrences must be a whole number >= 1 (got ${JSON.stringify(opts.minOccurrences)})`;
    }
    this.windowMs = windowMs;
    this.graceMs = graceMs;
    this.configError = err;
    for (const l of COUNTED) this.rings.set(l, new TimeRing(MAX_TIMES_PER_LABEL));
  }

  async start(): Promise<void> {
    if (this.startedOnce || this.configError) return;
    this.startedOnce = true;
    this.startedAtMono = this.monoNow();
    if (this.opts.source === 'file') {
      // Run once, following from the end would see nothing: read what the file says about the
      // window first, each line at its own time (an NPD plugin must be able to report a problem).
      if (this.oneShot) await this.readRecentTail();
      // Lines without a needle are `other`, which ingest() ignores: the source need not decode them.
      this.source = new FileSource({
        path: this.opts.file,
        clock: this.host.clock,
        onlyLinesContaining: PLEG_LINE_NEEDLES,
        onLine: (l) => this.ingest(l),
      });
      this.source.start();
      // The starting position (the file's end) is fixed before start() returns (a line written after
      // it is new), unless the file cannot be looked at promptly: a file on a hung mount (a dead NFS
      // server) would otherwise hold the agent's start forever. Then the position is fixed whenever
      // the look returns, and run() reports what the source says meanwhile.
      const first = this.source.poll?.();
      if (first) await settlesWithin(first, FIRST_POLL_WAIT_MS);
      // kubelet's unit, when there is one, tells its start time; a node without systemd is fine.
      await this.refreshUnit();
      return;
    }
    await this.refreshUnit();
    this.startJournal();
  }

  async stop(): Promise<void> {
    await this.source?.stop();
  }

  /**
   * The last TAIL_BYTES of the file, bounded in time, each PLEG line ingested at the time it carries
   * (klog header, JSON `ts`), else at the file's modification time (the latest it can have been
   * written). A problem reading it is left to the follower, which reports it.
   */
  private async readRecentTail(): Promise<void> {
    let fh: FileHandle | undefined;
    const work = (async () => {
      fh = await open(this.opts.file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      const st = await fh.stat();
      if (!st.isFile()) return;
      const from = Math.max(0, st.size - TAIL_BYTES);
      const buf = Buffer.alloc(Math.min(st.size, TAIL_BYTES));
      let n = 0;
      while (n < buf.length) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, from + n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      let text = buf.toString('utf8', 0, n);
      // Started inside a line: that partial line is not a line.
      if (from > 0) text = text.slice(text.indexOf('\n') + 1);
      const now = this.host.clock.now();
      for (const line of text.split('\n')) {
        if (!PLEG_LINE_NEEDLES.some((k) => line.includes(k))) continue;
        const c = classifyKubeletLine(line.length > MAX_TAIL_LINE ? line.slice(0, MAX_TAIL_LINE) : line);
        if (c.label === 'other') continue;
        const at = c.jsonTimeMs ?? (c.klogTime ? klogTimeMs(c.klogTime, now) : undefined) ?? st.mtimeMs;
        // Only the window matters, and nothing from the future (a clock step) counts as now.
        if (at < now - this.windowMs) continue;
        this.ingest({ text: line, timeMs: Math.min(at, now) });
      }
    })();
    try {
      // Unreadable or slow: the follower says why.
      await settlesWithin(work, TAIL_READ_TIMEOUT_MS);
    } finally {
      // Closed once the read ends, also one that outlived the timeout (a hung mount that recovers).
      const close = (): void => void fh?.close().catch(() => undefined);
      work.then(close, close);
    }
  }

  /** Internal sizes, for tests that bound memory. */
  memoryStats(): { timesKept: number; timesCapacity: number; quotedChars: number } {
    let timesKept = 0;
    for (const r of this.rings.values()) timesKept += r.size;
    const quotedChars = [this.first, this.last, this.lastRelist].reduce((n, s) => n + (s?.quoted.line.length ?? 0), 0);
    return { timesKept, timesCapacity: COUNTED.length * MAX_TIMES_PER_LABEL, quotedChars };
  }

  /** Reads what the source has available right now (a file: up to its current end). */
  async readAvailable(): Promise<void> {
    await this.source?.poll?.();
  }

  /** Bytes the follower holds for an unfinished line (file source), for memory assertions. */
  sourceBufferedBytes(): number {
    return this.source instanceof FileSource ? this.source.bufferedBytes() : 0;
  }

  sourceStatus(): SourceStatus | undefined {
    return this.source?.status();
  }

  /** The journal is read from the latest of: `window` ago, kubelet's last start (and, by `-b`, boot). */
  private startJournal(): void {
    if (this.source || this.unitMissing) return;
    const now = this.host.clock.now();
    this.sinceMs = Math.max(now - this.windowMs, this.unit?.activeEnterAtMs ?? -Infinity);
    this.source = new JournaldSource({
      host: this.host,
      unit: this.opts.unit,
      sinceMs: this.sinceMs,
      onLine: (l) => this.ingest(l),
      onRecord: (rec) => {
        if (rec.monotonicUs !== undefined) this.monoPair = { realtimeUs: rec.realtimeUs, monotonicUs: rec.monotonicUs };
      },
    });
    this.source.start();
  }

  private async refreshUnit(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return;
    const q = await showUnitShared(this.host, this.opts.unit, UNIT_QUERY_TIMEOUT_MS);
    this.unitQueried = true;
    if (!q.ok) {
      this.unitError = q.message;
      // systemctl absent means no systemd tools here. Any other failure (a hung PID 1 stalled on
      // D-Bus above all) is no reason to stop reading the journal, which journalctl reads directly.
      if (q.reason === 'InvalidUnitName' || (q.reason === 'SystemctlFailed' && /could not run/.test(q.message))) {
        this.unitMissing = q.message;
      }
      // No systemd as PID 1: journalctl may still read a journal someone copied here, so it is
      // tried; without one the source reports SourceUnavailable (never a healthy verdict).
      this.noSystemd = noSystemdHere(q);
      return;
    }
    this.unitError = undefined;
    this.unit = q.unit;
    this.unitMissing =
      q.unit.loadState === 'not-found' ? `unit ${this.opts.unit} is not installed (systemctl: LoadState=not-found)` : undefined;
    const start = this.unitStartMs(q.unit);
    if (start !== undefined) this.noteKubeletStart(start, 'systemd');
  }

  /** The unit's start, to the microsecond when a journal record of this boot anchors the monotonic clock. */
  private unitStartMs(u: UnitState): number | undefined {
    if (u.activeEnterAtMs === undefined) return undefined;
    if (u.activeEnterMonotonicUs !== undefined && this.monoPair) {
      const precise = (this.monoPair.realtimeUs + (u.activeEnterMonotonicUs - this.monoPair.monotonicUs)) / 1000;
      // Whole-second text and monotonic value must agree; otherwise the anchor is from another boot.
      if (precise >= u.activeEnterAtMs && precise < u.activeEnterAtMs + 1000) return precise;
    }
    return u.activeEnterAtMs;
  }

  private noteKubeletStart(ms: number, from: NonNullable<PlegMonitor['kubeletStartFrom']>): void {
    // systemd repeats the same ActiveEnterTimestamp on every query; converted again after a wall-clock
    // step it would land elsewhere on the monotonic clock, so only a changed value is a start.
    if (from === 'systemd') {
      // (Within a second: the same start, read at whole-second or microsecond precision.)
      if (this.lastSystemdStartMs !== undefined && Math.abs(ms - this.lastSystemdStartMs) < 1000) return;
      this.lastSystemdStartMs = ms;
    }
    const mono = this.monoOf(ms);
    if (this.kubeletStartMono === undefined || mono > this.kubeletStartMono) {
      this.kubeletStartMs = ms;
      this.kubeletStartMono = mono;
      this.kubeletStartFrom = from;
    }
  }

  private monoNow(): number {
    return monotonicNow(this.host.clock);
  }

  /**
   * A wall-clock time (a journal record's, a unit's start) placed on the monotonic clock by its age
   * now. Every interval is judged there, so a later wall-clock step neither keeps an old report in
   * the window (a step back) nor ages a new one out early (a step forward). A time in the future
   * (the step happened before the line was written) counts as now.
   */
  private monoOf(wallMs: number): number {
    return this.monoNow() - Math.max(0, this.host.clock.now() - wallMs);
  }

  /** Classifies one line and records it; O(1) apart from the classification. */
  private ingest(l: LogLine): void {
    if (l.unitStarted) this.noteKubeletStart(l.timeMs, 'journal');
    if (l.text === '') return;
    const c = classifyKubeletLine(l.text);
    if (c.label === 'other') return;
    const mono = this.monoOf(l.timeMs);
    // Without systemd's word, a new PID on kubelet's own PLEG lines is the restart (file source only:
    // in the journal, systemd's "Started" record and ActiveEnterTimestamp say it better).
    if (this.opts.source === 'file' && c.klogPid !== undefined) {
      if (this.lastPid !== undefined && c.klogPid !== this.lastPid) this.noteKubeletStart(l.timeMs, 'log-pid');
      this.lastPid = c.klogPid;
    }
    this.rings.get(c.label)!.push(mono);
    const sample = (): Sample => ({
      monoMs: mono,
      ...(c.lastSeenActiveMs !== undefined ? { lastSeenActiveMs: c.lastSeenActiveMs } : {}),
      ...(c.neverRelisted ? { neverRelisted: true } : {}),
      quoted: {
        time: new Date(l.timeMs).toISOString(),
        label: c.label,
        line: quote(l.text),
        ...(c.lastSeenActive !== undefined ? { lastSeenActive: detach(c.lastSeenActive) } : {}),
        ...(c.threshold !== undefined ? { threshold: detach(c.threshold) } : {}),
      },
    });
    if (c.label === 'pleg-relist-error') this.lastRelist = sample();
    else if (this.countsTowardProblem(c.label, mono)) {
      const s = sample();
      // An episode is a run of reports each within `window` of the previous one, since kubelet's start.
      const newEpisode =
        !this.first ||
        !this.last ||
        mono - this.last.monoMs > this.windowMs ||
        (this.kubeletStartMono !== undefined && this.first.monoMs < this.kubeletStartMono);
      if (newEpisode) this.first = s;
      this.last = s;
      this.requestRunIfCrossed();
    }
  }

  /**
   * Asks the agent for a run when the verdict just turned from ok to problem, once per crossing:
   * counting costs a pass over the window, so it is done only below the threshold, where lines are few.
   */
  private requestRunIfCrossed(): void {
    if (!this.requestRun || this.runRequested || this.episode) return;
    if (this.windowCounts(this.monoNow()).unhealthy < this.opts.minOccurrences) return;
    this.runRequested = true;
    this.requestRun();
  }

  /** Whether a line of this label at this (monotonic) time counts toward `minOccurrences`. */
  private countsTowardProblem(label: PlegLabel, timeMs: number): boolean {
    if (label === 'pleg-unhealthy' || label === 'node-notready-pleg') return true;
    if (label !== 'pleg-startup') return false;
    // Uptime is judged from kubelet's start; not knowing it, from when we began to watch, which can
    // only make kubelet look younger than it is (no alarm from a normal start-up).
    const since = this.kubeletStartMono ?? this.startedAtMono;
    return timeMs - since > this.graceMs;
  }

  async run(signal: AbortSignal): Promise<Finding> {
    if (this.configError) return unknown('InvalidConfig', this.configError);
    if (!this.startedOnce) await this.start();
    // A run asked for by a threshold crossing skips `systemctl show` (a process, through nsenter on
    // a node) once the unit has been asked about: kubelet's restarts also show in its log (systemd's
    // "Started" record, a new klog PID), and the scheduled runs go on refreshing it.
    const requested = this.runRequested;
    this.runRequested = false;
    if (!(requested && this.unitQueried)) await this.refreshUnit(signal);
    if (this.opts.source === 'journald') {
      if (this.unitMissing) {
        return unknown('NotInstalled', `cannot read kubelet's journal: ${this.unitMissing}`, this.evidence(this.monoNow()));
      }
      this.startJournal();
    }
    // A file is looked at now, so that a verdict covers everything written before it.
    await this.readAvailable();
    const caughtUp = (await this.source?.whenCaughtUp(CATCH_UP_WAIT_MS, signal)) ?? false;
    const after = this.source?.status();
    if (after?.failure) {
      return unknown(after.failure.reason, `cannot follow kubelet's log: ${after.failure.message}`, this.evidence(this.monoNow()));
    }
    // A PLEG problem carries the node's overcommit (a runtime that cannot keep up: was the node oversold?).
    return withOvercommitEvidence(this.judge(this.monoNow(), caughtUp), this.nodeName);
  }

  private judge(now: number, caughtUp: boolean): Finding {
    const w = this.windowCounts(now);
    if (w.unhealthy >= this.opts.minOccurrences) this.episode = true;
    else if (w.unhealthy === 0) {
      this.episode = false;
      this.first = undefined;
    }
    const evidence = this.evidence(now, w);
    const window = this.opts.window;
    const relistHint =
      w.counts['pleg-relist-error'] > 0
        ? `; GenericPLEG failed to list pods ${times(w.counts['pleg-relist-error'], w.capped)}: the container runtime is not answering`
        : '';
    if (this.episode) {
      const last = this.last;
      const detail =
        last?.lastSeenActiveMs !== undefined
          ? `pleg was last seen active ${formatDuration(last.lastSeenActiveMs)} ago`
          : last?.neverRelisted
            ? 'pleg has never relisted'
            : (this.last?.quoted.line.slice(0, 120) ?? '');
      const below =
        w.unhealthy < this.opts.minOccurrences
          ? `, still a problem until ${window} pass without one or kubelet restarts`
          : '';
      return {
        status: 'problem',
        reason: 'PLEGUnhealthy',
        message: `kubelet reported PLEG is not healthy ${times(w.unhealthy, w.capped)} in the last ${window} (last: ${detail})${below}${relistHint}`,
        evidence,
      };
    }
    if (!caughtUp) {
      return unknown('SourceCatchingUp', `still reading kubelet's journal since ${iso(this.sinceMs)}; no verdict yet`, evidence);
    }
    const notes: string[] = [];
    if (w.unhealthy > 0) notes.push(`${times(w.unhealthy, w.capped)}, below the threshold of ${this.opts.minOccurrences}`);
    if (w.startupInGrace > 0) notes.push(`${w.startupInGrace} start-up report(s) within the ${this.opts.startupGrace} grace`);
    return {
      status: 'ok',
      reason: relistHint ? 'PLEGRelistErrors' : 'PLEGHealthy',
      message: `kubelet has not reported PLEG as unhealthy in the last ${window}${notes.length ? ` (${notes.join('; ')})` : ''}${relistHint}`,
      evidence,
    };
  }

  private windowCounts(now: number): {
    counts: Record<Exclude<PlegLabel, 'other'>, number>;
    unhealthy: number;
    startupInGrace: number;
    capped: boolean;
  } {
    // `now` and every kept time are monotonic.
    const from = Math.max(now - this.windowMs, this.kubeletStartMono ?? -Infinity);
    let capped = false;
    const counts = {} as Record<Exclude<PlegLabel, 'other'>, number>;
    for (const label of COUNTED) {
      const ring = this.rings.get(label)!;
      // A restart of kubelet ends every earlier report: they are dropped for good.
      ring.dropBefore(from);
      counts[label] = ring.size;
      if (ring.droppedUpTo >= from) capped = true;
    }
    const startup = this.rings.get('pleg-startup')!.countWhere((t) => this.countsTowardProblem('pleg-startup', t));
    return {
      counts,
      unhealthy: counts['pleg-unhealthy'] + counts['node-notready-pleg'] + startup,
      startupInGrace: counts['pleg-startup'] - startup,
      capped,
    };
  }

  private evidence(now: number, w = this.windowCounts(now)): Record<string, unknown> {
    const src = this.source?.status();
    const source: Record<string, unknown> = { kind: this.opts.source };
    if (this.opts.source === 'journald') source.unit = this.opts.unit;
    else source.path = this.opts.file;
    if (src) {
      source.state = src.state;
      source.caughtUp = src.caughtUp;
      source.lines = src.lines;
      if (src.kind === 'journald') {
        source.since = iso(this.sinceMs);
        source.restarts = src.restarts;
        source.invalidRecords = src.invalidRecords;
        source.emptyMessages = src.emptyMessages;
      } else {
        source.rotations = src.rotations;
        source.truncations = src.truncations;
      }
      source.truncatedLines = src.truncatedLines;
      if (src.lastError) source.lastError = src.lastError;
    } else {
      source.state = 'not-started';
    }
    const ev: Record<string, unknown> = {
      window: this.opts.window,
      minOccurrences: this.opts.minOccurrences,
      startupGrace: this.opts.startupGrace,
      unhealthy: w.unhealthy,
      counts: w.counts,
      countsCapped: w.capped,
      startupInGrace: w.startupInGrace,
      kubeletStartedAt: iso(this.kubeletStartMs),
      kubeletStartedFrom: this.kubeletStartFrom ?? null,
      source,
    };
    if (this.unit) ev.unit = { id: this.unit.id, loadState: this.unit.loadState, activeState: this.unit.activeState };
    if (this.unitError && this.opts.source === 'journald') ev.unitError = this.unitError;
    if (this.noSystemd) ev.systemd = 'absent (not PID 1)';
    if (w.unhealthy > 0 && this.first) ev.first = this.first.quoted;
    if (w.unhealthy > 0 && this.last) ev.last = this.last.quoted;
    if (w.counts['pleg-relist-error'] > 0 && this.lastRelist) {
      ev.lastRelistError = this.lastRelist.quoted;
      ev.runtimeHint = 'GenericPLEG could not list pods from the container runtime: check docker/containerd';
    }
    return ev;
  }
}

function times(n: number, capped: boolean): string {
  return `${capped ? 'at least ' : ''}${n} time${n === 1 ? '' : 's'}`;
}

const duration = { type: 'string', format: 'duration' } as const;

export const plegCheck: CheckDefinition<PlegOptions> = {
  id: 'pleg',
  reasons: ['PLEGUnhealthy', 'PLEGHealthy', 'PLEGRelistErrors', 'NotInstalled', 'SourceUnavailable', 'SourceCatchingUp', 'SourceUnreadable'],
  restartCures: true,
  nodeCondition: { type: 'PLEGUnhealthy', healthyReason: 'PLEGIsHealthy' },
  hostPathOptions: ['file'],
  defaults: { enabled: true, source: 'journald', unit: 'kubelet', file: '', window: '5m', minOccurrences: 3, startupGrace: '5m' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      source: { enum: ['journald', 'file'] },
      unit: { type: 'string', minLength: 1 },
      file: { type: 'string' },
      window: duration,
      minOccurrences: { type: 'integer', minimum: 1 },
      startupGrace: duration,
    },
    // `source: file` without a file to follow is a config error, not a silent `unknown` forever.
    if: { type: 'object', properties: { source: { const: 'file' } }, required: ['source'] },
    then: {
      type: 'object',
      properties: { file: { type: 'string', pattern: '^/', description: 'an absolute path (source: file follows it)' } },
    },
  },
  // Waiting for the journal backlog is bounded separately; the rest is a systemctl call.
  runTimeoutMs: () => CATCH_UP_WAIT_MS + UNIT_QUERY_TIMEOUT_MS + 5000,
  create: (options, deps) => new PlegMonitor(options, deps),
};
