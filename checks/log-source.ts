/**
 * Followers of kubelet's log: the journal (`journalctl -f -o json` from a cursor) and a plain file
 * (`tail -F`). Both hand every line to a callback with the time it belongs to, keep only a bounded
 * amount of memory whatever they are fed, and never throw: their health is in `status()`.
 */
import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Clock } from '../platform/clock.js';
import { settlesWithin } from '../platform/deadline.js';
import type { Host, LineStream } from '../platform/host.js';

/** One log line as delivered to the consumer. */
export interface LogLine {
  /** The message text (journald: MESSAGE, non-UTF-8 bytes decoded lossily). Bounded by `maxLineBytes`. */
  text: string;
  /** When it was logged: journald's `__REALTIME_TIMESTAMP`; for a file, when the line was read. */
  timeMs: number;
  /** journald: `_PID` of the writer. */
  pid?: number;
  /** journald: systemd (PID 1) logged that the unit started (`MESSAGE_ID` UNIT_STARTED) at `timeMs`. */
  unitStarted?: boolean;
}

/**
 * `following`: reading, nothing wrong. `starting`: before the first read. `restarting`: journalctl
 * exited and is restarted after a back-off. `waiting`: the file does not exist (yet). `error`: cannot
 * read (see `failure`). `stopped`: `stop()` was called.
 */
export type SourceState = 'starting' | 'following' | 'restarting' | 'waiting' | 'error' | 'stopped';

/** Why a source cannot work here; a check turns it into an `unknown` finding with this reason. */
export interface SourceFailure {
  /** `SourceUnreadable`: the source answers, but with nothing this reader understands (a changed format). */
  reason: 'NotInstalled' | 'SourceUnavailable' | 'SourceUnreadable';
  message: string;
}

export interface SourceStatus {
  kind: 'journald' | 'file';
  state: SourceState;
  /** Set while the source cannot work; cleared when it recovers. */
  failure?: SourceFailure;
  /** journald: the backlog since `sinceMs` has been read; file: the file was opened at its end. */
  caughtUp: boolean;
  /** Lines read: delivered, plus (file with `onlyLinesContaining`) those skipped (`skippedLines`). */
  lines: number;
  /** Lines longer than `maxLineBytes`, cut (journald: records cut and so unreadable, skipped). */
  truncatedLines: number;
  /** journald: records that were not a JSON object with `__CURSOR` and `__REALTIME_TIMESTAMP`, skipped. */
  invalidRecords: number;
  /** journald: records whose MESSAGE was null (journalctl's form for a field it would not print) or absent. */
  emptyMessages: number;
  /** journald: times journalctl was started again after it exited. */
  restarts: number;
  /** The last problem seen (journalctl's stderr, an fs error), kept after recovery for the evidence. */
  lastError?: string;
  /** journald: the position reached (`__CURSOR` of the last record read). */
  cursor?: string;
  /** journald: the journalctl PID currently running. */
  pid?: number;
  /** file: the byte offset reached in the current file. */
  position?: number;
  /** file: lines not delivered because they contain none of `onlyLinesContaining` (counted in `lines`). */
  skippedLines?: number;
  /** file: times the file was replaced (rotation) or shrank (copytruncate). */
  rotations?: number;
  truncations?: number;
}

export interface LogSource {
  /** Starts following in the background; returns at once. */
  start(): void;
  /** Stops following and releases processes, timers and files. Idempotent. */
  stop(): Promise<void>;
  status(): SourceStatus;
  /**
   * Resolves true once `status().caughtUp`, false when the source has failed, `timeoutMs` passed or
   * `signal` aborted first.
   */
  whenCaughtUp(timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /** Reads whatever is available right now (file: looks at the file), when the source can. */
  poll?(): Promise<void>;
}

/** What every follower shares: its status and the waiters for `whenCaughtUp`. */
export abstract class SourceBase {
  protected st: SourceStatus;
  private waiters = new Set<() => void>();

  constructor(kind: SourceStatus['kind']) {
    this.st = { kind, state: 'starting', caughtUp: false, lines: 0, truncatedLines: 0, invalidRecords: 0, emptyMessages: 0, restarts: 0 };
  }

  status(): SourceStatus {
    return { ...this.st, ...(this.st.failure ? { failure: { ...this.st.failure } } : {}) };
  }

  protected notify(): void {
    for (const w of [...this.waiters]) w();
  }

  whenCaughtUp(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const settled = (): boolean | undefined =>
      this.st.caughtUp ? true : this.st.failure || this.st.state === 'stopped' || signal?.aborted ? false : undefined;
    const now = settled();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve) => {
      const done = (v: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const check = (): void => {
        const v = settled();
        if (v !== undefined) done(v);
      };
      const onAbort = (): void => done(false);
      // Not unref'd: whoever waits expects an answer within timeoutMs.
      const timer = setTimeout(() => done(false), timeoutMs);
      this.waiters.add(check);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// journald

/** systemd's catalog id for "Started <unit>." (sd-messages.h SD_MESSAGE_UNIT_STARTED). */
export const UNIT_STARTED_MESSAGE_ID = '39f53479d3a045ac8e11786248231fbf';

/** One line of `journalctl -o json`, parsed. */
export type JournalRecord =
  | {
      kind: 'record';
      cursor: string;
      /** `__REALTIME_TIMESTAMP` in µs. */
      realtimeUs: number;
      /** `__MONOTONIC_TIMESTAMP` in µs, when present. */
      monotonicUs?: number;
      /** Every value of MESSAGE (journald allows a field to repeat), decoded; empty for null/absent. */
      messages: string[];
      pid?: number;
      unitStarted: boolean;
    }
  | {
      kind: 'invalid';
      /** Why the record is unusable, for the logs. */
      why: string;
      /** A cursor found in a cut record, so the position still advances past it. */
      cursor?: string;
    };

const CURSOR_SHAPE = /^s=[0-9a-f]{1,64};i=[0-9a-f]{1,16};b=[0-9a-f]{1,64};m=[0-9a-f]{1,16};t=[0-9a-f]{1,16};x=[0-9a-f]{1,32}$/;

/** Decodes a journald field as journalctl prints it: a string, a byte array (non-UTF-8), or null. */
function fieldText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.length > 0 && v.every((b) => typeof b === 'number' && Number.isInteger(b) && b >= 0 && b <= 255)) {
    return Buffer.from(v as number[]).toString('utf8');
  }
  return undefined;
}

/**
 * Parses one `journalctl -o json` line. Pure. A record cut by the line-length cap is invalid JSON;
 * `truncated` says so, and its cursor (written in full before any long field, or not at all) is
 * recovered so that a restart does not re-read it forever.
 */
export function parseJournalRecord(line: string, truncated = false): JournalRecord {
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch {
    const cursor = truncated ? salvageCursor(line) : undefined;
    return { kind: 'invalid', why: truncated ? 'record longer than the line limit' : 'not JSON', ...(cursor ? { cursor } : {}) };
  }
  if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) return { kind: 'invalid', why: 'not a JSON object' };
  const r = rec as Record<string, unknown>;
  const cursor = r.__CURSOR;
  if (typeof cursor !== 'string' || cursor === '') return { kind: 'invalid', why: 'no __CURSOR' };
  const rt = r.__REALTIME_TIMESTAMP;
  if (typeof rt !== 'string' || !/^\d{1,19}$/.test(rt)) return { kind: 'invalid', why: 'no __REALTIME_TIMESTAMP', cursor };
  const out: JournalRecord = { kind: 'record', cursor, realtimeUs: Number(rt), messages: [], unitStarted: false };
  const mono = r.__MONOTONIC_TIMESTAMP;
  if (typeof mono === 'string' && /^\d{1,19}$/.test(mono)) out.monotonicUs = Number(mono);
  const msg = r.MESSAGE;
  const single = fieldText(msg);
  if (single !== undefined) out.messages.push(single);
  else if (Array.isArray(msg)) {
    for (const v of msg) {
      const t = fieldText(v);
      if (t !== undefined) out.messages.push(t);
    }
  }
  const pid = fieldText(r._PID);
  if (pid !== undefined && /^\d{1,10}$/.test(pid)) out.pid = Number(pid);
  out.unitStarted = fieldText(r.MESSAGE_ID) === UNIT_STARTED_MESSAGE_ID && out.pid === 1;
  return out;
}

/** `"__CURSOR":"..."` anywhere in a cut record (journalctl's field order is not fixed). Linear. */
function salvageCursor(line: string): string | undefined {
  const key = line.indexOf('"__CURSOR"');
  if (key === -1) return undefined;
  let i = key + 10;
  while (line[i] === ' ') i++;
  if (line[i] !== ':') return undefined;
  i++;
  while (line[i] === ' ') i++;
  if (line[i] !== '"') return undefined;
  const end = line.indexOf('"', i + 1);
  if (end === -1 || end - i > 300) return undefined;
  const c = line.slice(i + 1, end);
  return CURSOR_SHAPE.test(c) ? c : undefined;
}

export interface JournaldSourceOptions {
  host: Host;
  /** The unit whose journal is followed (`journalctl -u`). */
  unit: string;
  /** Records before this are neither read (`--since`) nor delivered; only used until a cursor exists. */
  sinceMs: number;
  /** Resume after this cursor instead of `sinceMs`. */
  cursor?: string;
  onLine(line: LogLine): void;
  /** Called for every valid record, with its timestamps, before its lines. */
  onRecord?(rec: Extract<JournalRecord, { kind: 'record' }>): void;
  /** First restart delay; doubles up to `backoffMaxMs`. Defaults 1 s and 30 s. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** journalctl output lines longer than this are cut. Default 256 KiB. */
  maxLineBytes?: number;
  /** Bound on `journalctl --version`. Default 5 s. */
  probeTimeoutMs?: number;
  /**
   * A backlog read (no `-f`) that prints nothing for this long is stuck (a journal file on a hung
   * disk, a journalctl waiting on a lock): it is killed and started again. Default 30 s.
   */
  backlogIdleMs?: number;
}

/**
 * This many non-JSON lines in a row, with no record in between, mean journalctl's output is not
 * understood (a changed format): a stray line or two is counted and skipped, as before. A backlog
 * that ends with only such lines is unreadable however short it is.
 */
export const UNREADABLE_AFTER_LINES = 20;

/**
 * Follows `journalctl -u UNIT -b -o json`. First reads the backlog (without `-f`, so that the end of
 * it is known: `caughtUp`), then follows with `-f`; every restart resumes `--after-cursor` the last
 * record handled, so no record is lost or delivered twice.
 */
export class JournaldSource extends SourceBase implements LogSource {
  private readonly o: Required<Omit<JournaldSourceOptions, 'cursor' | 'onRecord'>> & Pick<JournaldSourceOptions, 'onRecord'>;
  private stream: LineStream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private started = false;
  private backoffMs: number;
  private consecutiveFailures = 0;
  private outputFields = true;
  private pdeathsig = false;
  /** Which journalctl run is current: lines from an earlier one (an orphan) are ignored. */
  private generation = 0;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private lastRealtimeUs = 0;
  private resumeAfterUs = 0;
  /** Valid records handled, and non-JSON lines since the last one (a changed output format shows here). */
  private validRecords = 0;
  private invalidInARow = 0;
  private firstInvalid: string | undefined;
  /** The journal sequence (`s=` of the cursor) and number (`i=`) of the last record handled. */
  private lastSeq: { id: string; n: bigint } | undefined;
  /** Records skipped because a restarted journalctl printed them again. */
  replayedRecords = 0;

  constructor(opts: JournaldSourceOptions) {
    super('journald');
    this.o = {
      backoffMinMs: 1000,
      backoffMaxMs: 30_000,
      maxLineBytes: 256 * 1024,
      probeTimeoutMs: 5000,
      backlogIdleMs: 30_000,
      ...opts,
    };
    this.backoffMs = this.o.backoffMinMs;
    if (opts.cursor) this.st.cursor = opts.cursor;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.loop = this.run().catch((e: unknown) => {
      this.fail('SourceUnavailable', `journal follower crashed: ${(e as Error)?.message ?? String(e)}`);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.st.state = 'stopped';
    clearTimeout(this.timer);
    this.wake?.();
    this.stream?.kill();
    // Without setpriv, a journalctl behind a forking prefix (nsenter -p) outlives the SIGTERM and
    // keeps the pipe open: do not wait for it forever.
    if (this.loop) await settlesWithin(this.loop, STOP_WAIT_MS);
    this.notify();
  }

  private fail(reason: SourceFailure['reason'], message: string): void {
    this.st.failure = { reason, message };
    this.st.lastError = message;
    if (!this.stopped) this.st.state = 'error';
    this.notify();
  }

  private async run(): Promise<void> {
    if (!(await this.probe())) return;
    // Backlog first (no -f), so that its end is known; then follow. A failure of either restarts
    // with -f from the cursor: the backlog is then read as part of following.
    let follow = false;
    const idle = { hit: false };
    while (!this.stopped) {
      const startedAt = performance.now(); // monotonic: a clock step must not change the back-off
      idle.hit = false;
      const { exitCode, stderr, delivered } = await this.once(follow, idle);
      if (this.stopped) return;
      const ranMs = performance.now() - startedAt;
      // journalctl says this and exits 0 with no output where there is no journal at all (no systemd
      // as PID 1, no journald): nothing can be seen, which is not the same as nothing wrong.
      const noJournal = /No journal files were found/i.test(stderr);
      if (!follow && exitCode === 0 && !noJournal && !idle.hit) {
        follow = true;
        if (this.invalidInARow > 0 && this.validRecords === 0 && !this.st.failure) {
          this.fail('SourceUnreadable', `journalctl printed ${this.invalidInARow} line(s) and none was a journal record (JSON with __CURSOR); first: ${JSON.stringify(this.firstInvalid)}`);
        } else if (this.st.failure?.reason === 'SourceUnavailable') {
          // The journal is back (an empty one is fine): a clean backlog read ends the failure.
          delete this.st.failure;
          this.st.state = 'following';
        }
        this.setCaughtUp();
        continue;
      }
      if (noJournal) {
        this.fail('SourceUnavailable', `there is no journal to read on this node (journalctl: ${firstLine(stderr)}); is systemd-journald running?`);
      }
      const why = idle.hit
        ? `journalctl printed nothing for ${this.o.backlogIdleMs} ms while reading the backlog: killed, started again`
        : `journalctl exited (${exitCode === undefined ? 'killed' : `code ${exitCode}`})${stderr ? `: ${firstLine(stderr)}` : ''}`;
      this.st.lastError = why;
      if (delivered || ranMs >= HEALTHY_RUN_MS) {
        this.backoffMs = this.o.backoffMinMs;
        this.consecutiveFailures = 0;
      } else {
        this.consecutiveFailures++;
      }
      // A journalctl that keeps failing at once is not a hiccup: report it (still retrying).
      if (this.consecutiveFailures >= 3 && !this.st.failure) this.st.failure = { reason: 'SourceUnavailable', message: why };
      // A stuck backlog read is a failure at once: a verdict waits on it.
      if (idle.hit && !this.st.failure) this.st.failure = { reason: 'SourceUnavailable', message: why };
      // Our cursors come from journalctl itself, so this means the journal went away under it
      // (vacuumed, corrupted): go on from the time of the last record instead.
      if (/seek to cursor/i.test(stderr) && this.st.cursor) {
        delete this.st.cursor;
        this.resumeAfterUs = this.lastRealtimeUs;
      }
      this.st.state = this.st.failure ? 'error' : 'restarting';
      this.notify();
      await this.sleep(this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, this.o.backoffMaxMs);
      if (this.stopped) return;
      this.st.restarts++;
      // A backlog read that failed is read again: only its clean end tells that we caught up.
    }
  }

  /** Whether journalctl runs at all here, and whether it knows `--output-fields` (systemd >= 236). */
  private async probe(): Promise<boolean> {
    for (;;) {
      const r = await this.o.host.run(['journalctl', '--version'], { timeoutMs: this.o.probeTimeoutMs, maxOutputBytes: 64 * 1024 });
      if (this.stopped) return false;
      if (r.exitCode === 0) {
        const version = /systemd (\d+)/.exec(r.stdout)?.[1];
        this.outputFields = version === undefined || Number(version) >= 236;
        // A host prefix like `nsenter -p` forks: SIGTERM reaches nsenter, not the journalctl it
        // started, which would then follow forever into a pipe nobody reads. setpriv (util-linux
        // >= 2.33) makes the kernel end journalctl when its parent dies; older nodes go without.
        const p = await this.o.host.run(['setpriv', '--pdeathsig', 'TERM', 'true'], { timeoutMs: this.o.probeTimeoutMs });
        this.pdeathsig = p.exitCode === 0;
        // Where there is no journal at all (no systemd as PID 1, no journald), `journalctl -u UNIT -o
        // json` prints nothing and exits 0, exactly like a quiet kubelet; only a plain query says so.
        const j = await this.o.host.run(['journalctl', '-b', '-n', '0', '--no-pager'], { timeoutMs: this.o.probeTimeoutMs, maxOutputBytes: 64 * 1024 });
        if (this.stopped) return false;
        if (/No journal files were found/i.test(`${j.stderr}\n${j.stdout}`)) {
          this.fail('SourceUnavailable', 'there is no journal on this node (journalctl: "No journal files were found."); is systemd-journald running?');
          await this.sleep(this.o.backoffMaxMs);
          if (this.stopped) return false;
          continue;
        }
        return true;
      }
      const missing = r.notFound || r.exitCode === 127 || /No such file|not found/i.test(r.stderr);
      this.fail(
        missing ? 'NotInstalled' : 'SourceUnavailable',
        missing
          ? `journalctl is not installed (${r.argv.join(' ')}: ${r.error ?? firstLine(r.stderr)})`
          : `journalctl --version failed: ${r.timedOut ? `no answer within ${this.o.probeTimeoutMs} ms` : (r.error ?? firstLine(r.stderr))}`,
      );
      // It may be installed or start working later (a node being provisioned); look again slowly.
      await this.sleep(this.o.backoffMaxMs);
      if (this.stopped) return false;
    }
  }

  private args(follow: boolean): string[] {
    const a = [...(this.pdeathsig ? ['setpriv', '--pdeathsig', 'TERM'] : []), 'journalctl', '-u', this.o.unit, '-b', '-o', 'json', '--all', '--no-pager'];
    if (this.outputFields) a.push('--output-fields=MESSAGE,MESSAGE_ID,_PID');
    if (follow) a.push('-f', '--no-tail');
    if (this.st.cursor) a.push(`--after-cursor=${this.st.cursor}`);
    else a.push(`--since=@${Math.floor(Math.max(this.o.sinceMs, this.resumeAfterUs / 1000) / 1000)}`);
    return a;
  }

  private async once(follow: boolean, idle: { hit: boolean }): Promise<{ exitCode: number | undefined; stderr: string; delivered: boolean }> {
    let delivered = false;
    const generation = ++this.generation;
    // The backlog read ends by itself; one that goes quiet without ending is stuck.
    let idleTimer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      if (follow) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        idle.hit = true;
        stream.kill();
      }, this.o.backlogIdleMs);
    };
    const stream = this.o.host.spawnLines(this.args(follow), {
      maxLineBytes: this.o.maxLineBytes,
      onLine: (line) => {
        if (this.stopped || generation !== this.generation) return;
        arm();
        const valid = this.handle(line);
        if (valid) delivered = true;
        if (delivered && this.consecutiveFailures) {
          this.consecutiveFailures = 0;
          this.backoffMs = this.o.backoffMinMs;
        }
        // Only this line's validity clears a failure: an earlier record must not hide the
        // unreadable lines that came after it.
        if (valid && this.st.failure) {
          delete this.st.failure;
          this.st.state = 'following';
        }
      },
    });
    this.stream = stream;
    this.st.pid = stream.pid;
    if (stream.pid === undefined) {
      const { stderr } = await stream.exited;
      this.fail('NotInstalled', `journalctl could not be started${stderr ? `: ${firstLine(stderr)}` : ''}`);
      return { exitCode: undefined, stderr, delivered };
    }
    if (!this.st.failure) this.st.state = 'following';
    this.notify();
    arm();
    const { exitCode, stderr } = await stream.exited;
    clearTimeout(idleTimer);
    this.stream = undefined;
    delete this.st.pid;
    return { exitCode, stderr, delivered };
  }

  /** Handles one output line; true when it was a valid record. */
  private handle(line: string): boolean {
    // UTF-8 takes at most 3 bytes per UTF-16 unit: most lines are known short without counting.
    const truncated = line.length * 3 >= this.o.maxLineBytes - 3 && Buffer.byteLength(line) >= this.o.maxLineBytes - 3;
    const rec = parseJournalRecord(line, truncated);
    if (rec.kind === 'invalid') {
      if (truncated) this.st.truncatedLines++;
      else {
        this.st.invalidRecords++;
        this.invalidInARow++;
        this.firstInvalid ??= line.slice(0, 120);
        // Nothing but lines we cannot read: a changed output format would leave PLEG detection
        // blind while looking healthy. Say so (cleared by the next valid record).
        if (this.invalidInARow >= UNREADABLE_AFTER_LINES && !this.st.failure) {
          this.fail(
            'SourceUnreadable',
            `journalctl printed ${this.invalidInARow} lines in a row that are not journal records (JSON with __CURSOR)${this.validRecords ? '' : ' and no record at all'}; first: ${JSON.stringify(this.firstInvalid)}`,
          );
        }
      }
      if (rec.cursor) this.st.cursor = rec.cursor;
      return false;
    }
    this.invalidInARow = 0;
    this.firstInvalid = undefined;
    if (this.isReplay(rec)) {
      this.replayedRecords++;
      return true;
    }
    this.validRecords++;
    this.st.cursor = rec.cursor;
    const timeMs = rec.realtimeUs / 1000;
    // --since has whole-second resolution; the window does not.
    if (timeMs < this.o.sinceMs) return true;
    // After losing the cursor, time is all there is: a record of the same microsecond as the last
    // one handled may be lost, but none is counted twice.
    if (rec.realtimeUs <= this.resumeAfterUs) return true;
    this.lastRealtimeUs = Math.max(this.lastRealtimeUs, rec.realtimeUs);
    this.o.onRecord?.(rec);
    if (rec.messages.length === 0) this.st.emptyMessages++;
    for (const text of rec.messages) {
      this.st.lines++;
      const out: LogLine = { text, timeMs };
      if (rec.pid !== undefined) out.pid = rec.pid;
      if (rec.unitStarted) out.unitStarted = true;
      this.o.onLine(out);
    }
    if (rec.messages.length === 0 && rec.unitStarted) this.o.onLine({ text: '', timeMs, unitStarted: true });
    return true;
  }

  /**
   * Whether a record was handled already: a restarted journalctl that ignores (or mis-seeks) its
   * `--after-cursor` prints old records again. Within one journal sequence (`s=`), the sequence number
   * (`i=`) only grows; a record at or before the last one handled is a replay and must not count twice.
   */
  private isReplay(rec: Extract<JournalRecord, { kind: 'record' }>): boolean {
    const m = /(?:^|;)s=([0-9a-f]+);i=([0-9a-f]{1,16})(?:;|$)/.exec(rec.cursor);
    if (!m) return false;
    const seq = { id: m[1]!, n: BigInt(`0x${m[2]!}`) };
    if (this.lastSeq && this.lastSeq.id === seq.id && seq.n <= this.lastSeq.n) return true;
    this.lastSeq = seq;
    return false;
  }

  private setCaughtUp(): void {
    this.st.caughtUp = true;
    this.notify();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
      this.timer.unref?.();
    });
  }
}

/** A journalctl that ran this long before exiting was working: its exit is a hiccup, not a failure. */
const HEALTHY_RUN_MS = 10_000;
/** How long `stop()` waits for journalctl to exit. */
const STOP_WAIT_MS = 3000;

function firstLine(s: string): string {
  const t = s.trim();
  const nl = t.indexOf('\n');
  return (nl === -1 ? t : t.slice(0, nl)).slice(0, 300);
}

// ---------------------------------------------------------------------------------------------
// file

export interface LineSplitterOptions {
  /**
   * The prefilter: only lines whose kept bytes (the first `maxLineBytes`) contain one of these are
   * emitted. Non-empty ASCII, case-sensitive, matched as raw bytes (which equals matching the
   * decoded text, since lossy UTF-8 decoding leaves ASCII bytes as they are).
   */
  needles?: readonly string[];
  /** Called with the number of lines the prefilter skipped (and how many of them were cut). */
  onSkipped?(lines: number, truncated: number): void;
}

/**
 * Splits a byte stream into lines, keeping at most `maxLineBytes` of any line (the rest of an
 * over-long line is dropped), so a line without end costs bounded memory.
 *
 * Lines within one chunk are decoded straight out of it (no copy); only the unfinished line at the
 * end of a chunk is copied, since the chunk's buffer is reused by the next read. With `needles`
 * (the prefilter), a line is decoded and emitted only when its kept bytes contain one of them; the
 * chunk is searched for the needles as raw bytes and the lines in between are only counted.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private overflow = false;
  private readonly needles: Buffer[] | undefined;
  private readonly onSkipped: ((lines: number, truncated: number) => void) | undefined;

  constructor(
    private readonly maxLineBytes: number,
    private readonly emit: (line: string, truncated: boolean) => void,
    options: LineSplitterOptions = {},
  ) {
    if (!(Number.isInteger(maxLineBytes) && maxLineBytes >= 1)) {
      throw new Error(`LineSplitter: maxLineBytes must be a whole number >= 1 (got ${maxLineBytes})`);
    }
    if (options.needles !== undefined) {
      this.needles = options.needles.map((n) => {
        // Only ASCII: its bytes survive lossy UTF-8 decoding unchanged, so a byte match is a text match.
        if (n.length === 0 || !/^[\x01-\x09\x0b-\x7f]+$/.test(n)) {
          throw new Error(`LineSplitter: a needle must be non-empty ASCII without a newline (got ${JSON.stringify(n)})`);
        }
        return Buffer.from(n, 'latin1');
      });
      this.onSkipped = options.onSkipped;
    }
  }

  /** Bytes held for an unfinished line. */
  get buffered(): number {
    return this.size;
  }

  push(chunk: Buffer): void {
    const first = chunk.indexOf(10);
    if (first === -1) {
      this.take(chunk);
      return;
    }
    // The first newline ends the line carried over from earlier chunks (possibly empty).
    if (this.size > 0 || this.overflow) {
      this.take(chunk.subarray(0, first));
      this.emitCarried();
    } else {
      this.lineAt(chunk, 0, first);
    }
    const last = chunk.lastIndexOf(10);
    if (last > first) {
      if (this.needles) this.filtered(chunk, first + 1, last);
      else this.plain(chunk, first + 1, last);
    }
    if (last + 1 < chunk.length) this.take(chunk.subarray(last + 1));
  }

  /** Emits the unfinished line, if any (its file was rotated or truncated: no more will come). */
  flush(): void {
    if (this.size > 0 || this.overflow) this.emitCarried();
  }

  /** Forgets the unfinished line. */
  reset(): void {
    this.parts = [];
    this.size = 0;
    this.overflow = false;
  }

  /** Every line of `chunk` from `from` up to the newline at `end`. */
  private plain(chunk: Buffer, from: number, end: number): void {
    let start = from;
    for (let nl = chunk.indexOf(10, start); nl !== -1 && nl <= end; nl = chunk.indexOf(10, start)) {
      this.lineAt(chunk, start, nl);
      start = nl + 1;
    }
  }

  /**
   * The lines of `chunk` from `from` up to the newline at `end`, prefiltered: only lines holding a
   * needle are looked at; the others are counted by their newlines.
   */
  private filtered(chunk: Buffer, from: number, end: number): void {
    const needles = this.needles!;
    const max = this.maxLineBytes;
    // Next occurrence of each needle at or after `start`; -1 once there is none before `end`.
    const next = needles.map((n) => chunk.indexOf(n, from));
    let skipped = 0;
    let skippedTruncated = 0;
    let start = from;
    while (start <= end) {
      let hit = Infinity;
      for (let i = 0; i < next.length; i++) {
        let at = next[i]!;
        if (at !== -1 && at < start) next[i] = at = chunk.indexOf(needles[i]!, start);
        if (at !== -1 && at < hit) hit = at;
      }
      // Count the lines wholly before the hit (all of them up to `end` without one).
      const stop = hit <= end ? hit : end + 1;
      let nl = chunk.indexOf(10, start);
      while (nl !== -1 && nl < stop) {
        skipped++;
        if (nl - start > max) skippedTruncated++;
        start = nl + 1;
        nl = chunk.indexOf(10, start);
      }
      if (hit > end || nl === -1 || nl > end) break;
      // Reported before the line is emitted, so that the consumer sees the counts in file order.
      if (skipped > 0) this.onSkipped?.(skipped, skippedTruncated);
      skipped = skippedTruncated = 0;
      // `nl` ends the line holding the hit.
      this.lineAt(chunk, start, nl);
      start = nl + 1;
    }
    if (skipped > 0) this.onSkipped?.(skipped, skippedTruncated);
  }

  /** One whole line `chunk[start, nl)`, cut to `maxLineBytes`, emitted or (prefiltered) skipped. */
  private lineAt(chunk: Buffer, start: number, nl: number): void {
    const truncated = nl - start > this.maxLineBytes;
    const end = truncated ? start + this.maxLineBytes : nl;
    if (this.needles && !this.holdsNeedle(chunk, start, end)) {
      this.onSkipped?.(1, truncated ? 1 : 0);
      return;
    }
    this.emit(chunk.toString('utf8', start, end), truncated);
  }

  private emitCarried(): void {
    const bytes = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
    const truncated = this.overflow;
    this.reset();
    if (this.needles && !this.holdsNeedle(bytes, 0, bytes.length)) {
      this.onSkipped?.(1, truncated ? 1 : 0);
      return;
    }
    this.emit(bytes.toString('utf8'), truncated);
  }

  private holdsNeedle(buf: Buffer, start: number, end: number): boolean {
    // A view bounded to the line: a search must not run on through the rest of the chunk.
    const line = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    for (const n of this.needles!) if (line.indexOf(n) !== -1) return true;
    return false;
  }

  private take(piece: Buffer): void {
    if (this.overflow) return;
    const room = this.maxLineBytes - this.size;
    if (piece.length > room) {
      this.overflow = true;
      piece = piece.subarray(0, room);
    }
    if (piece.length === 0) return;
    // Copy: the chunk's buffer is reused by the next read.
    this.parts.push(Buffer.from(piece));
    this.size += piece.length;
  }
}

export interface FileSourceOptions {
  path: string;
  clock: Clock;
  onLine(line: LogLine): void;
  /** How often the file is looked at when fs.watch says nothing. Default 1000 ms. */
  pollMs?: number;
  /** Default 64 KiB. */
  maxLineBytes?: number;
  /**
   * Bytes read per read(2) while following. Default 64 KiB. A read that fills it means a backlog:
   * the rest of that backlog is read `backlogChunkBytes` at a time (default 1 MiB, at least
   * `chunkBytes`), in a buffer dropped again once the end of the file is reached.
   */
  chunkBytes?: number;
  backlogChunkBytes?: number;
  /**
   * Deliver only lines whose first `maxLineBytes` contain one of these (non-empty ASCII,
   * case-sensitive); the others are counted (`lines`, `skippedLines`, `truncatedLines`) but neither
   * decoded nor delivered. For a consumer that ignores every line without them anyway.
   */
  onlyLinesContaining?: readonly string[];
}

/**
 * Follows a file by name like `tail -F`: starts at the end of the file present at `start()`, reads
 * only bytes appended since, switches to a new file when the name points to a new inode (rotation,
 * after finishing the old one) and starts over when the file shrinks (copytruncate). A file created
 * after `start()` is read from its beginning. fs.watch on the directory makes it prompt; a poll of
 * `stat` every `pollMs` makes it correct where fs.watch says nothing (NFS, overlayfs, inotify limits).
 */
export class FileSource extends SourceBase implements LogSource {
  private readonly o: Required<Omit<FileSourceOptions, 'onlyLinesContaining'>>;
  private readonly splitter: LineSplitter;
  private fh: FileHandle | undefined;
  private ino = -1;
  private dev = -1;
  private pos = 0;
  private watcher: FSWatcher | undefined;
  private poller: NodeJS.Timeout | undefined;
  private watchTried = false;
  private busy: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private buf: Buffer;

  constructor(opts: FileSourceOptions) {
    super('file');
    const { onlyLinesContaining, ...rest } = opts;
    this.o = { pollMs: 1000, maxLineBytes: 64 * 1024, chunkBytes: 64 * 1024, backlogChunkBytes: 1024 * 1024, ...rest };
    this.buf = Buffer.alloc(this.o.chunkBytes);
    this.st.rotations = 0;
    this.st.truncations = 0;
    if (onlyLinesContaining) this.st.skippedLines = 0;
    this.splitter = new LineSplitter(
      this.o.maxLineBytes,
      (text, truncated) => {
        if (truncated) this.st.truncatedLines++;
        this.st.lines++;
        this.o.onLine({ text, timeMs: this.o.clock.now() });
      },
      onlyLinesContaining
        ? {
            needles: onlyLinesContaining,
            onSkipped: (lines, truncated) => {
              this.st.lines += lines;
              this.st.skippedLines! += lines;
              this.st.truncatedLines += truncated;
            },
          }
        : {},
    );
  }

  start(): void {
    if (this.poller || this.stopped) return;
    this.poller = setInterval(() => this.kick(), this.o.pollMs);
    this.poller.unref?.();
    this.kick(true);
  }

  /**
   * fs.watch on the file's directory, once a stat has shown that directory answers: fs.watch resolves
   * the path synchronously on the event loop, and on a hung mount (a dead NFS server) that would
   * block the whole agent; a stat blocks only a thread-pool thread.
   */
  private startWatch(): void {
    if (this.watcher || this.watchTried || this.stopped) return;
    this.watchTried = true;
    try {
      this.watcher = watch(dirname(this.o.path), { persistent: false }, (_event, name) => {
        if (name === null || name === basename(this.o.path)) this.kick();
      });
      // fs.watch failing later (directory removed, inotify gone) leaves the poll to do the work.
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      this.watcher = undefined;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.st.state = 'stopped';
    clearInterval(this.poller);
    this.watcher?.close();
    this.watcher = undefined;
    await this.busy;
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
    this.notify();
  }

  /** Bytes held between reads (the unfinished line), for memory assertions. */
  bufferedBytes(): number {
    return this.splitter.buffered;
  }

  /** Looks at the file now; resolves once everything up to its current end has been delivered. */
  async poll(): Promise<void> {
    this.kick();
    while (this.busy) await this.busy;
  }

  /** One look at a time: a kick during a look asks for another look right after it. */
  private kick(initial = false): void {
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = (async () => {
      try {
        do {
          this.again = false;
          await this.look(initial);
          initial = false;
        } while (this.again && !this.stopped);
      } finally {
        this.busy = undefined;
      }
    })();
  }

  private async look(initial: boolean): Promise<void> {
    let s;
    try {
      s = await stat(this.o.path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') this.startWatch();
      // The name is gone (rotated away, not recreated yet): finish what the old file still gets.
      if (this.fh) await this.drain();
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        // Between logrotate's rename and create the old file is still being followed: no failure.
        if (this.fh) this.st.state = 'waiting';
        else this.setWaiting(`${this.o.path} does not exist`);
      } else {
        this.setError(`cannot stat ${this.o.path}: ${(e as Error).message}`);
      }
      return;
    }
    this.startWatch();
    if (!s.isFile()) {
      this.setError(`${this.o.path} is not a regular file`);
      return;
    }
    if (!this.fh || s.ino !== this.ino || s.dev !== this.dev) {
      if (this.fh) {
        await this.drain();
        this.splitter.flush();
        await this.fh.close().catch(() => undefined);
        this.fh = undefined;
        this.st.rotations!++;
      }
      try {
        this.fh = await open(this.o.path, 'r');
      } catch (e) {
        this.setError(`cannot open ${this.o.path}: ${(e as Error).message}`);
        return;
      }
      // Only the file present at start is skipped to its end; a file appearing later is all new.
      const fst = await this.fh.stat();
      this.ino = fst.ino;
      this.dev = fst.dev;
      this.pos = initial ? fst.size : 0;
      this.splitter.reset();
    } else if (s.size < this.pos) {
      this.splitter.flush();
      this.pos = 0;
      this.st.truncations!++;
    }
    if (this.st.failure || this.st.state !== 'following') {
      delete this.st.failure;
      this.st.state = 'following';
    }
    await this.drain();
    if (!this.st.caughtUp) this.st.caughtUp = true;
    this.notify();
  }

  /** Reads from `pos` to the current end of the open file. */
  private async drain(): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    // Small reads keep a quiet follower small; a backlog read in them costs a thread-pool round
    // trip per 64 KiB, which dominated reading a big file.
    let buf = this.buf;
    for (;;) {
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, buf.length, this.pos));
      } catch (e) {
        this.setError(`cannot read ${this.o.path}: ${(e as Error).message}`);
        return;
      }
      if (n === 0 || this.stopped) break;
      this.pos += n;
      this.splitter.push(buf.subarray(0, n));
      if (n === buf.length && buf === this.buf && this.o.backlogChunkBytes > buf.length) buf = Buffer.allocUnsafe(this.o.backlogChunkBytes);
    }
    this.st.position = this.pos;
  }

  private setWaiting(message: string): void {
    this.st.state = 'waiting';
    this.st.failure = { reason: 'SourceUnavailable', message };
    this.st.lastError = message;
    this.notify();
  }

  private setError(message: string): void {
    this.st.state = 'error';
    this.st.failure = { reason: 'SourceUnavailable', message };
    this.st.lastError = message;
    this.notify();
  }
}
