import { monotonicNow } from './clock.js';
import type { CommandResult, Host } from './host.js';
import { formatDuration } from './duration.js';

/**
 * A unit as `systemctl show` describes it. Timestamps are undefined when systemd has none (the
 * unit never got there in this boot) or when this systemd does not know the property (old
 * versions: `NRestarts` exists since systemd 235).
 */
export interface UnitState {
  /** The unit's full name (`Id`), e.g. `kubelet.service` for a query of `kubelet`. */
  id: string;
  /** `loaded`, `not-found` (no such unit file), `masked`, `error`, `bad-setting`. */
  loadState: string;
  /** `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`. */
  activeState: string;
  /** Type-specific detail: `running`, `exited`, `dead`, `auto-restart`, `start-pre`, ... */
  subState: string;
  /** Why it last stopped or failed: `success`, `exit-code`, `signal`, `timeout`, `core-dump`, ... */
  result?: string;
  /** `enabled`, `disabled`, `static`, `masked`, ... (empty for units without a file). */
  unitFileState?: string;
  /** The main process (0 or undefined when none). */
  mainPid?: number;
  /** Automatic restarts (`Restart=`) since the unit was last started by hand. */
  nRestarts?: number;
  /**
   * When the unit last entered `active`, ms since the epoch. systemctl prints wall-clock times
   * to the second, so this is second-precise; use the monotonic value to order against journal
   * records (`__MONOTONIC_TIMESTAMP`, same boot).
   */
  activeEnterAtMs?: number;
  /** `ActiveEnterTimestampMonotonic`: µs of CLOCK_MONOTONIC since boot. */
  activeEnterMonotonicUs?: number;
  /**
   * When the unit last left `inactive` (its last start began), ms since the epoch. Unlike
   * `activeEnterAtMs` this is set also for a start that never reached `active`.
   */
  inactiveExitAtMs?: number;
  inactiveExitMonotonicUs?: number;
  /** When the current (or last) main process started, ms since the epoch. */
  execMainStartAtMs?: number;
  execMainStartMonotonicUs?: number;
  /**
   * The id of the job systemd has queued or is running for the unit (undefined when none). A unit
   * between the stop and the start of a restart job is `failed` or `inactive` for a moment, with
   * the start still queued: only the job tells it apart from a unit that stopped.
   */
  job?: number;
  /** Every property as printed, for evidence and for callers that need more. */
  properties: Record<string, string>;
}

/** Why a unit could not be asked about. Callers turn it into an `unknown` finding with this reason. */
export interface UnitQueryFailure {
  /**
   * `CommandTimeout`: systemctl did not answer within the timeout (PID 1 or D-Bus stuck).
   * `SystemctlFailed`: systemctl is missing, exited non-zero (no systemd on this host, the host
   * prefix failed) or printed something unreadable.
   * `InvalidUnitName`: the name is not a systemd unit name (never sent to systemctl).
   */
  reason: 'CommandTimeout' | 'SystemctlFailed' | 'InvalidUnitName';
  /** One sentence naming the unit and what went wrong. */
  message: string;
}

export type UnitQueryResult = { ok: true; unit: UnitState } | ({ ok: false } & UnitQueryFailure);

/** The properties `showUnit` asks for. */
export const UNIT_PROPERTIES = [
  'Id',
  'LoadState',
  'ActiveState',
  'SubState',
  'Result',
  'UnitFileState',
  'MainPID',
  'NRestarts',
  'ActiveEnterTimestamp',
  'ActiveEnterTimestampMonotonic',
  'InactiveExitTimestamp',
  'InactiveExitTimestampMonotonic',
  'ExecMainStartTimestamp',
  'ExecMainStartTimestampMonotonic',
  'Job',
] as const;

/** How long timeout(1) waits after SIGTERM before SIGKILL. */
const KILL_AFTER_MS = 500;

/**
 * Unit names as systemd.unit(5) allows them (letters, digits, `:-_.\` and `@` for instances). A
 * leading `-` is refused so that a name can never be read as an option.
 */
const UNIT_NAME = /^[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\-]{0,255}$/;

/** `Key=Value` lines of `systemctl show` into a record (values may contain `=`). Pure. */
export function parseSystemctlShow(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1).trim();
  }
  return out;
}

const TIMESTAMP = /^(?:[A-Za-z]{3} )?(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? UTC$/;

/**
 * A timestamp as `systemctl show` prints it with `TZ=UTC` (`Thu 2026-11-27 10:00:00 UTC`, with
 * microseconds when asked for), in ms since the epoch. Undefined for an empty value (never
 * happened), `n/a`, or anything else. Pure.
 */
export function parseSystemdTimestamp(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const m = TIMESTAMP.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  return ms + (frac ? Math.floor(Number(frac.padEnd(6, '0')) / 1000) : 0);
}

function positiveInt(text: string | undefined): number | undefined {
  if (!text || !/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n > 0 ? n : undefined;
}

function count(text: string | undefined): number | undefined {
  return text && /^\d+$/.test(text) ? Number(text) : undefined;
}

/**
 * The state of a unit from `systemctl show` output, or why it cannot be read. Pure. `query` is the
 * name the caller asked for, used in messages.
 */
export function unitStateFromShow(query: string, stdout: string): UnitQueryResult {
  const p = parseSystemctlShow(stdout);
  const loadState = p.LoadState;
  const activeState = p.ActiveState;
  if (!loadState || !activeState) {
    return {
      ok: false,
      reason: 'SystemctlFailed',
      message: `systemctl show ${query} printed no LoadState/ActiveState: ${JSON.stringify(stdout.slice(0, 200))}`,
    };
  }
  const unit: UnitState = { id: p.Id || query, loadState, activeState, subState: p.SubState ?? '', properties: p };
  const set = <K extends keyof UnitState>(key: K, value: UnitState[K] | undefined): void => {
    if (value !== undefined && value !== '') unit[key] = value;
  };
  set('result', p.Result);
  set('unitFileState', p.UnitFileState);
  set('mainPid', positiveInt(p.MainPID));
  set('nRestarts', count(p.NRestarts));
  set('activeEnterAtMs', parseSystemdTimestamp(p.ActiveEnterTimestamp));
  set('activeEnterMonotonicUs', positiveInt(p.ActiveEnterTimestampMonotonic));
  set('inactiveExitAtMs', parseSystemdTimestamp(p.InactiveExitTimestamp));
  set('inactiveExitMonotonicUs', positiveInt(p.InactiveExitTimestampMonotonic));
  set('execMainStartAtMs', parseSystemdTimestamp(p.ExecMainStartTimestamp));
  set('execMainStartMonotonicUs', positiveInt(p.ExecMainStartTimestampMonotonic));
  // `Job=` is empty (or, on older systemd, left out) when the unit has no job.
  set('job', positiveInt(p.Job));
  return { ok: true, unit };
}

/** Why a finished `systemctl` run failed, or undefined when it succeeded. */
export function systemctlFailure(query: string, r: CommandResult, timeoutMs: number): UnitQueryFailure | undefined {
  const what = `systemctl show ${query}`;
  if (r.timedOut) return { reason: 'CommandTimeout', message: `${what} did not answer within ${formatDuration(timeoutMs)}` };
  if (r.notFound) return { reason: 'SystemctlFailed', message: `${what} could not run: ${r.argv[0]} is not installed` };
  // timeout(1): 124 when it stopped the command with SIGTERM, 128+9 when SIGKILL was needed.
  if (r.exitCode === 124 || r.exitCode === 137) {
    return { reason: 'CommandTimeout', message: `${what} did not answer within ${formatDuration(timeoutMs)}` };
  }
  // timeout(1) and env(1) exit 126/127 when the command they should run cannot be run.
  if (r.exitCode === 126 || r.exitCode === 127) {
    const why = r.stderr.trim().split('\n')[0] || 'command not found';
    return { reason: 'SystemctlFailed', message: `${what} could not run: ${why.slice(0, 300)}` };
  }
  if (r.outputCapped) return { reason: 'SystemctlFailed', message: `${what} printed more output than expected` };
  if (r.exitCode !== 0) {
    const why = (r.stderr.trim().split('\n')[0] || r.error || `exit code ${String(r.exitCode)}`).slice(0, 300);
    return { reason: 'SystemctlFailed', message: `${what} failed: ${why}` };
  }
  return undefined;
}

/**
 * `systemctl show UNIT` through the host command prefix, bounded by `timeoutMs` (then killed).
 * Never rejects. A unit that does not exist is not a failure: it comes back with
 * `loadState: 'not-found'`.
 *
 * Runs systemctl with `TZ=UTC` so that its wall-clock timestamps are unambiguous whatever the
 * node's time zone (systemctl prints zone abbreviations, which cannot be parsed reliably), and
 * without `--timestamp=`, which systemd before 248 (CentOS 7 has 219) rejects.
 */
export async function showUnit(host: Host, unit: string, timeoutMs: number): Promise<UnitQueryResult> {
  return (await showUnitTimed(host, unit, timeoutMs)).result;
}

/**
 * What one `systemctl show` said about PID 1 itself, whatever the unit: systemctl asks PID 1, so an
 * answer is PID 1 answering (in `ms`), and a timeout is PID 1 not answering within `timeoutMs`.
 * Undefined when the call failed for another reason (no systemd, no systemctl).
 */
export type Pid1Answer = { kind: 'answered'; unit: string; ms: number } | { kind: 'timeout'; unit: string; timeoutMs: number };

interface TimedQuery {
  result: UnitQueryResult;
  pid1: Pid1Answer | undefined;
}

async function showUnitTimed(host: Host, unit: string, timeoutMs: number): Promise<TimedQuery> {
  if (!UNIT_NAME.test(unit)) {
    return {
      result: {
        ok: false,
        reason: 'InvalidUnitName',
        message: `${JSON.stringify(unit)} is not a systemd unit name (letters, digits and :-_.@\\ only, not starting with -)`,
      },
      pid1: undefined,
    };
  }
  const t0 = performance.now();
  // timeout(1) runs on the node's side of the host prefix: killing `nsenter` (what host.run can
  // reach) does not reach the systemctl it forked, which then blocks on a hung PID 1 (and keeps
  // our pipe open) until its own D-Bus timeout, 25-90 s later.
  const argv = [
    'timeout',
    '-k',
    `${KILL_AFTER_MS / 1000}s`,
    `${timeoutMs / 1000}s`,
    'env',
    'TZ=UTC',
    'systemctl',
    'show',
    `--property=${UNIT_PROPERTIES.join(',')}`,
    '--',
    unit,
  ];
  const r = await host.run(argv, {
    // A backstop only: timeout(1) has ended systemctl before this fires.
    timeoutMs: timeoutMs + KILL_AFTER_MS + 1000,
    killAfterMs: 500,
    maxOutputBytes: 64 * 1024,
  });
  const ms = Math.round(performance.now() - t0);
  const failure = systemctlFailure(unit, r, timeoutMs);
  if (failure) {
    return { result: { ok: false, ...failure }, pid1: failure.reason === 'CommandTimeout' ? { kind: 'timeout', unit, timeoutMs } : undefined };
  }
  // Exit 0 is PID 1's answer even for a unit it does not know (LoadState=not-found).
  return { result: unitStateFromShow(unit, r.stdout), pid1: { kind: 'answered', unit, ms } };
}

const inFlight = new WeakMap<Host, Map<string, Promise<TimedQuery>>>();
/** The last shared query PID 1 answered, by when it started (the host clock's monotonic reading). */
const lastAnswered = new WeakMap<Host, { startedAt: number; answer: Pid1Answer }>();

/**
 * `showUnit`, but concurrent callers asking about the same unit on the same host share one
 * `systemctl show` (the kubelet and pleg checks both ask about kubelet at the start of every sweep).
 * Nothing is cached past the call itself, so an answer is never older than the question: the
 * ladder, which confirms its own restarts, keeps calling `showUnit` directly.
 */
export function showUnitShared(host: Host, unit: string, timeoutMs: number): Promise<UnitQueryResult> {
  let byUnit = inFlight.get(host);
  if (!byUnit) inFlight.set(host, (byUnit = new Map()));
  let pending = byUnit.get(unit);
  if (!pending) {
    const startedAt = monotonicNow(host.clock);
    const p = showUnitTimed(host, unit, timeoutMs).finally(() => byUnit!.delete(unit));
    void p.then((q) => {
      if (q.pid1?.kind === 'answered') lastAnswered.set(host, { startedAt, answer: q.pid1 });
    });
    byUnit.set(unit, p);
    pending = p;
  }
  return pending.then((q) => q.result);
}

/**
 * What the shared unit queries in flight on this host will say about PID 1 (see `Pid1Answer`): the
 * systemd check waits for these rather than start a call of its own beside them. Empty when none is
 * in flight. Never rejects.
 */
export function pid1AnswersInFlight(host: Host): Promise<Pid1Answer | undefined>[] {
  return [...(inFlight.get(host)?.values() ?? [])].map((p) => p.then((q) => q.pid1));
}

/**
 * PID 1's answer to a shared query that started at or after `since` (the host clock's monotonic
 * reading) and has already finished: a sibling check's call of the same sweep can end before the
 * systemd check looks (a fast PID 1, a check that started late).
 */
export function pid1AnsweredSince(host: Host, since: number): Pid1Answer | undefined {
  const last = lastAnswered.get(host);
  return last && last.startedAt >= since ? last.answer : undefined;
}

/** `active (running)` / `failed (exit-code)`: a unit's state for messages. */
export function describeUnitState(u: UnitState): string {
  const detail = u.activeState === 'failed' && u.result && u.result !== 'success' ? u.result : u.subState;
  return detail && detail !== u.activeState ? `${u.activeState} (${detail})` : u.activeState;
}
