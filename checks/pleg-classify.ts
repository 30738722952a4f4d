/**
 * Classifies one kubelet log line by what it says about PLEG (the pod lifecycle event generator).
 *
 * Pure and linear in the line length: every search is `indexOf`, and the few regexes run at a fixed
 * position (sticky) or over a bounded head of the line with bounded quantifiers, so an adversarial
 * 100 KB line costs about as much as scanning it once.
 *
 * Formats recognised (see test/fixtures/corpus/kubelet/): journald/syslog prefixes with or without a PID,
 * bare klog, structured `"Skipping pod synchronization" err="..."`, JSON lines (with a `10.0.0.1: `
 * talosctl prefix), kubelet inside docker (`docker[641]: ...`), and bare messages as shown by
 * `kubectl describe node`.
 */

/** The labels of test/fixtures/corpus/kubelet/kubelet-pleg.tsv, plus `other` for everything else. */
export type PlegLabel = 'pleg-unhealthy' | 'pleg-relist-error' | 'node-notready-pleg' | 'pleg-startup' | 'pleg-benign' | 'other';

export const PLEG_LABELS: readonly PlegLabel[] = [
  'pleg-unhealthy',
  'pleg-relist-error',
  'node-notready-pleg',
  'pleg-startup',
  'pleg-benign',
  'other',
];

/** A klog header's timestamp, `Lmmdd hh:mm:ss.uuuuuu` (klog carries no year and no zone). */
export interface KlogTime {
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  microsecond: number;
}

export interface PlegClassification {
  label: PlegLabel;
  /** `pleg was last seen active <this> ago`, as written (Go duration). */
  lastSeenActive?: string;
  /** `lastSeenActive` in milliseconds; absent when it does not parse or is the "never" sentinel. */
  lastSeenActiveMs?: number;
  /** True for `pleg has yet to be successful` and the max-Duration sentinel: PLEG never relisted. */
  neverRelisted?: boolean;
  /** `threshold is <this>`, as written (one corpus line was published cut short: `3m0`). */
  threshold?: string;
  /** `threshold` in milliseconds, when it is a valid Go duration. */
  thresholdMs?: number;
  /** klog severity letter of the header, when the line has one. */
  severity?: 'I' | 'W' | 'E' | 'F';
  klogTime?: KlogTime;
  /** The PID field of the klog header (glog writes the process id there). */
  klogPid?: number;
  /** The `"ts"` of a JSON-format line, in ms since the epoch. */
  jsonTimeMs?: number;
}

/** Go's `time.Duration` maximum, printed by kubelet when PLEG has never relisted. */
export const NEVER_RELISTED_SENTINEL = '2562047h47m16.854775807s';

const UNHEALTHY = 'PLEG is not healthy';
const RELIST_ERROR = 'GenericPLEG: Unable to retrieve pods';
/** Bounded so a hostile run of digits cannot make a detail regex scan far. */
const DETAIL = /PLEG is not healthy: pleg (?:was last seen active ([0-9a-zµ.]{1,40}) ago; threshold is ([0-9a-zµ.]{1,40})|has yet to be successful)/y;
/** Only this many occurrences of the unhealthy phrase are examined, keeping the work linear. */
const MAX_ATTEMPTS = 16;
/** The klog header sits after at most a syslog prefix; searching further only invites abuse. */
const HEADER_SPAN = 320;
const KLOG_HEADER = /([IWEF])(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) {1,16}(\d{1,10}) /;
const JSON_TS = /"ts":(\d{10,16}(?:\.\d{1,9})?)[,}]/;

/** Whether a label, on its own, says PLEG is unhealthy (`pleg-startup` depends on kubelet's uptime). */
export function isUnhealthyLabel(label: PlegLabel): boolean {
  return label === 'pleg-unhealthy' || label === 'node-notready-pleg';
}

/**
 * Every line that is not `other` contains one of these (case-sensitive, ASCII): a reader may skip
 * the lines without them unread (checks/log-source.ts `onlyLinesContaining`) and lose nothing.
 */
export const PLEG_LINE_NEEDLES: readonly string[] = Object.freeze(['PLEG', 'pleg']);

export function classifyKubeletLine(line: string): PlegClassification {
  // Every PLEG line contains one of PLEG_LINE_NEEDLES; the rest of kubelet's chatter exits here cheaply.
  if (line.indexOf('PLEG') === -1 && line.indexOf('pleg') === -1) return { label: 'other' };
  const result: PlegClassification = { label: 'other' };
  addHeader(line, result);

  let at = line.indexOf(UNHEALTHY);
  for (let attempt = 0; at !== -1 && attempt < MAX_ATTEMPTS; attempt++) {
    DETAIL.lastIndex = at;
    const m = DETAIL.exec(line);
    if (m) {
      const lastSeen = m[1];
      // klog 1.14 ended the message with a period, which the character class also takes.
      const threshold = m[2]?.endsWith('.') ? m[2].replace(/\.+$/, '') : m[2];
      if (lastSeen === undefined) {
        result.neverRelisted = true;
        result.label = 'pleg-startup';
        return result;
      }
      result.lastSeenActive = lastSeen;
      result.threshold = threshold;
      const thresholdMs = parseGoDuration(threshold ?? '');
      if (thresholdMs !== undefined) result.thresholdMs = thresholdMs;
      if (lastSeen === NEVER_RELISTED_SENTINEL) {
        result.neverRelisted = true;
        result.label = 'pleg-startup';
        return result;
      }
      const lastSeenMs = parseGoDuration(lastSeen);
      if (lastSeenMs !== undefined) result.lastSeenActiveMs = lastSeenMs;
      // The NotReady transition and `kubectl describe node` rows name the condition reason first.
      const before = line.slice(0, at);
      result.label =
        before.indexOf('Node became not ready') !== -1 || before.indexOf('KubeletNotReady') !== -1
          ? 'node-notready-pleg'
          : 'pleg-unhealthy';
      return result;
    }
    at = line.indexOf(UNHEALTHY, at + UNHEALTHY.length);
  }
  // The phrase alone (as in a message quoting it, nodemedic's own included) is not kubelet's report.

  if (line.indexOf(RELIST_ERROR) !== -1) {
    result.label = 'pleg-relist-error';
    return result;
  }
  result.label = 'pleg-benign';
  return result;
}

function addHeader(line: string, out: PlegClassification): void {
  const head = line.length > HEADER_SPAN ? line.slice(0, HEADER_SPAN) : line;
  const k = KLOG_HEADER.exec(head);
  if (k) {
    out.severity = k[1] as PlegClassification['severity'];
    out.klogTime = {
      month: Number(k[2]),
      day: Number(k[3]),
      hour: Number(k[4]),
      minute: Number(k[5]),
      second: Number(k[6]),
      microsecond: Number(k[7]),
    };
    out.klogPid = Number(k[8]);
    return;
  }
  const j = JSON_TS.exec(head);
  if (j) out.jsonTimeMs = Number(j[1]);
}

const GO_UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/**
 * Milliseconds in a Go `time.Duration` string (`4m51.763621609s`, `2h33m12.7s`, `0s`), or undefined
 * when it is not one (`3m0`, a unit missing). A hand-written scanner: one pass, no backtracking.
 */
export function parseGoDuration(text: string): number | undefined {
  if (text.length === 0 || text.length > 64) return undefined;
  if (text === '0') return 0;
  let i = 0;
  let totalNs = 0;
  while (i < text.length) {
    const numStart = i;
    let digits = 0;
    while (i < text.length && isDigit(text.charCodeAt(i))) (i++, digits++);
    if (text[i] === '.') {
      i++;
      while (i < text.length && isDigit(text.charCodeAt(i))) (i++, digits++);
    }
    if (digits === 0) return undefined;
    const value = Number(text.slice(numStart, i));
    const unitStart = i;
    while (i < text.length && !isDigit(text.charCodeAt(i)) && text[i] !== '.') i++;
    const unit = text.slice(unitStart, i);
    const scale = GO_UNIT_NS[unit];
    if (scale === undefined || !Number.isFinite(value)) return undefined;
    totalNs += value * scale;
  }
  return totalNs / 1e6;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
