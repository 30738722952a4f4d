import { monotonicNow } from '../platform/clock.js';
import { settlesWithin, within } from '../platform/deadline.js';
import { formatDuration, parseDuration } from '../platform/duration.js';
import type { CommandResult, Host } from '../platform/host.js';
import { pid1AnsweredSince, pid1AnswersInFlight, type Pid1Answer } from '../platform/systemd-unit.js';
import { bugVerdict, scanStuckRunc, symptomLines, type BugVerdict, type StuckRunc } from './systemd-pid1.js';
import { unknown, type BaseCheckOptions, type CheckDefinition, type Finding } from './types.js';

/**
 * Reasons this check reports:
 * - `SystemdResponsive` (ok): PID 1 answered within `timeout`: this check's own `systemctl show
 *   --property=Version`, or another check's `systemctl show` of the same sweep (`sharedProbe`).
 * - `SystemdNotAnswering` (unknown): it did not, on fewer than `failures` consecutive sweeps yet.
 * - `SystemdUnresponsive` (problem): it did not on `failures` consecutive sweeps. Evidence: stuck runc
 *   processes, the systemd version and whether it carries the sd-bus cookie overflow, journal lines
 *   of the symptom. The `reexec-systemd` ladder step acts on it.
 * - `NotInstalled` (unknown): no systemctl (or timeout) on the node.
 * - `SystemctlFailed` (unknown): systemctl failed fast (no systemd as PID 1, the host prefix failed).
 */
export interface SystemdOptions extends BaseCheckOptions {
  /** How long PID 1 has to answer one call. */
  timeout: string;
  /** Consecutive unanswered sweeps before `problem`: one slow answer under load is not a hang. */
  failures: number;
  /** runc processes older than this count as stuck (evidence; the optional kill after a reexec). */
  stuckRuncAfter: string;
  /**
   * Where the node's processes are listed: `/proc` for the service and for a DaemonSet with hostPID;
   * `/proc/<pid>/root/proc` reads another PID namespace's view (tests).
   */
  procPath: string;
  /** Read recent journal lines of the symptom when PID 1 does not answer (journalctl needs no PID 1). */
  journal: boolean;
}

export const systemdDefaults: SystemdOptions = {
  enabled: true,
  timeout: '10s',
  failures: 2,
  stuckRuncAfter: '10m',
  procPath: '/proc',
  journal: true,
};

/** timeout(1)'s grace between its SIGTERM and SIGKILL. */
const KILL_AFTER_MS = 500;
/** Budget for the evidence gathered when PID 1 does not answer (rpm, journal, /proc scan). */
const EVIDENCE_MS = 5000;
/**
 * While PID 1 answers, a /proc scan is reused this long: it feeds only the PLEG-plus-stuck-runc rule,
 * whose threshold (`stuckRuncAfter`, 10 min by default) is far longer, and scanning every sweep was
 * 16 % of the agent's busy time with real units (bench/RESULTS.md, footprint-units).
 */
const SCAN_REUSE_MS = 60_000;
/**
 * PID 1's version changes only when it re-executes (after a package upgrade): between this check's
 * own calls, which read it, the answers to other checks' calls (see `sharedProbe`) are enough.
 */
const VERSION_RECHECK_MS = 10 * 60_000;
/** A shared call that started at most this long before the systemd check belongs to the same sweep. */
const SAME_SWEEP_MS = 1000;
/** The least an own call gets after a shared one timed out at a shorter bound. */
const MIN_OWN_CALL_MS = 1000;
/** rpm's answer changes only with a package upgrade. */
const RPM_RECHECK_MS = 10 * 60_000;
const TIMEOUT_EXIT = new Set([124, 137]);

/** How one call to PID 1 ended. */
export type ProbeOutcome =
  | { kind: 'answered'; version: string; ms: number; via?: string }
  | { kind: 'timeout'; ms: number; via?: string }
  | { kind: 'missing'; why: string }
  | { kind: 'failed'; why: string };

/** Reads a finished `timeout ... systemctl show --property=Version`. Pure. */
export function probeOutcome(r: CommandResult, ms: number): ProbeOutcome {
  if (r.timedOut || (r.exitCode !== undefined && TIMEOUT_EXIT.has(r.exitCode))) return { kind: 'timeout', ms };
  if (r.notFound || r.exitCode === 127 || r.exitCode === 126) return { kind: 'missing', why: (r.stderr.trim().split('\n')[0] || `${r.argv[0]} not found`).slice(0, 300) };
  const m = /^Version=(.*)$/m.exec(r.stdout);
  if (r.exitCode === 0 && m) return { kind: 'answered', version: (m[1] ?? '').trim(), ms };
  return { kind: 'failed', why: (r.stderr.trim().split('\n')[0] || r.error || `exit code ${String(r.exitCode)}`).slice(0, 300) };
}

/** Counts consecutive unanswered sweeps. Pure: the check keeps the returned state. */
export function countFailures(previous: number, o: ProbeOutcome): number {
  return o.kind === 'timeout' ? previous + 1 : o.kind === 'answered' ? 0 : previous;
}

export function describeStuck(s: StuckRunc | undefined): string {
  if (!s) return '';
  if (!s.count) return `no runc process older than ${formatDuration(s.olderThanSeconds * 1000)}`;
  return `${s.count} runc process${s.count === 1 ? '' : 'es'} older than ${formatDuration(s.olderThanSeconds * 1000)} (oldest ${formatDuration(s.oldestSeconds * 1000)})`;
}

export const systemdCheck: CheckDefinition<SystemdOptions> = {
  id: 'systemd',
  reasons: ['SystemdUnresponsive', 'SystemdResponsive', 'SystemdNotAnswering', 'NotInstalled', 'SystemctlFailed'],
  defaults: systemdDefaults,
  restartCures: true, // by `reexec-systemd`, not by a unit restart
  // Not published where systemctl is missing or fails at once: nothing there to be unresponsive.
  nodeCondition: { type: 'SystemdUnresponsive', healthyReason: 'SystemdIsResponsive', silentWhen: ['NotInstalled', 'SystemctlFailed'] },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      timeout: { type: 'string', format: 'duration' },
      failures: { type: 'integer', minimum: 1 },
      stuckRuncAfter: { type: 'string', format: 'duration' },
      procPath: { type: 'string', pattern: '^/' },
      journal: { type: 'boolean' },
    },
  },
  // One call (timeout + timeout(1)'s grace + the backstop), then the evidence, then a margin.
  runTimeoutMs: (o) => parseDuration(o.timeout) + KILL_AFTER_MS + 1000 + EVIDENCE_MS + 2000,
  create(options, { host }) {
    const timeoutMs = parseDuration(options.timeout);
    const stuckAfterS = Math.round(parseDuration(options.stuckRuncAfter) / 1000);
    let failures = 0;
    let lastVersion: string | undefined;
    let rpm: { text: string | undefined; at: number } | undefined;
    let scan: { stuck: StuckRunc | undefined; at: number; mono: number } | undefined;
    // The previous call's process, if it outlived its bound: never start a second one beside it.
    let inFlight: Promise<unknown> | undefined;
    /** When this check's own call last read PID 1's version (monotonic ms). */
    let versionAt: number | undefined;

    /**
     * PID 1's answer to the call another check of this sweep already makes (kubelet's and pleg's
     * `systemctl show kubelet`): every process the agent starts was most of its idle CPU, and any
     * systemctl call is a call to PID 1. Undefined when no such call is in flight, when PID 1's
     * version is not known or is old (only this check's own call reads it), or when the shared call
     * failed for another reason; `retryWithinMs` when it timed out at a shorter bound than ours.
     */
    async function sharedProbe(): Promise<ProbeOutcome | { retryWithinMs: number } | undefined> {
      if (!lastVersion || versionAt === undefined || monotonicNow(host.clock) - versionAt >= VERSION_RECHECK_MS) return undefined;
      const started = monotonicNow(host.clock);
      // A sweep starts every check at once; let the others start their calls before looking.
      await new Promise((r) => setImmediate(r));
      const pending = pid1AnswersInFlight(host);
      if (!pending.length) {
        // Or one already finished: a call of this sweep (started at most SAME_SWEEP_MS before this check).
        const done = pid1AnsweredSince(host, started - SAME_SWEEP_MS);
        return done?.kind === 'answered' && done.ms <= timeoutMs ? { kind: 'answered', version: lastVersion, ms: done.ms, via: done.unit } : undefined;
      }
      const t0 = performance.now();
      const answers = await within<(Pid1Answer | undefined)[] | undefined>(Promise.all(pending), timeoutMs + KILL_AFTER_MS + 1000, () => undefined);
      const waited = Math.round(performance.now() - t0);
      // The calls started with this sweep: no answer by our own call's backstop is no answer.
      if (!answers) return { kind: 'timeout', ms: waited };
      const answered = answers.find((a) => a?.kind === 'answered' && a.ms <= timeoutMs);
      if (answered?.kind === 'answered') return { kind: 'answered', version: lastVersion, ms: answered.ms, via: answered.unit };
      const slow = answers.find((a) => a && (a.kind === 'answered' || a.timeoutMs >= timeoutMs));
      if (slow) return { kind: 'timeout', ms: slow.kind === 'answered' ? slow.ms : waited, via: slow.unit };
      // Timed out at a shorter bound: PID 1 has had `waited` already; our own call gets the rest.
      if (answers.some((a) => a?.kind === 'timeout')) return { retryWithinMs: timeoutMs - waited };
      return undefined;
    }

    async function probe(): Promise<ProbeOutcome> {
      const shared = await sharedProbe();
      if (shared && 'kind' in shared) return shared;
      const boundMs = shared ? Math.max(MIN_OWN_CALL_MS, shared.retryWithinMs) : timeoutMs;
      const t0 = performance.now();
      const ms = (): number => Math.round(performance.now() - t0);
      if (inFlight) return { kind: 'timeout', ms: 0 };
      // timeout(1) runs on the node's side of the host prefix, so systemctl itself is killed there:
      // killing nsenter would leave it blocked on PID 1, holding our pipes (platform/systemd-unit.ts).
      const call = host.run(['timeout', '-k', `${KILL_AFTER_MS / 1000}s`, `${boundMs / 1000}s`, 'systemctl', 'show', '--property=Version'], {
        timeoutMs: boundMs + KILL_AFTER_MS + 1000,
        killAfterMs: 500,
        maxOutputBytes: 4096,
      });
      inFlight = call;
      void call.finally(() => {
        if (inFlight === call) inFlight = undefined;
      });
      const r = await within<CommandResult | undefined>(call, boundMs + KILL_AFTER_MS + 3000, () => undefined);
      const o = r ? probeOutcome(r, ms()) : ({ kind: 'timeout', ms: ms() } as const);
      if (o.kind === 'answered') versionAt = monotonicNow(host.clock);
      return o;
    }

    async function readRpm(): Promise<string | undefined> {
      const now = host.clock.now();
      if (rpm && now - rpm.at < RPM_RECHECK_MS) return rpm.text;
      const r = await host.run(['timeout', '-k', '1s', '4s', 'rpm', '-q', 'systemd'], { timeoutMs: 6000, killAfterMs: 500, maxOutputBytes: 4096 });
      const text = r.exitCode === 0 && /^systemd-/.test(r.stdout.trim()) ? r.stdout.trim() : undefined;
      rpm = { text, at: now };
      return text;
    }

    async function journalSymptoms(): Promise<string[] | { error: string }> {
      const r = await host.run(['timeout', '-k', '1s', '4s', 'journalctl', '-q', '--no-pager', '-o', 'short-iso', '--since=-1h', '-n', '2000'], {
        timeoutMs: 6000,
        killAfterMs: 500,
        maxOutputBytes: 512 * 1024,
      });
      if (r.exitCode !== 0 && !r.outputCapped) return { error: (r.stderr.trim().split('\n')[0] || r.error || `exit ${String(r.exitCode)}`).slice(0, 200) };
      return symptomLines(r.stdout);
    }

    /** What the node shows besides PID 1's silence, each part bounded; missing parts say why. */
    async function evidence(signal: AbortSignal, withJournal: boolean): Promise<Record<string, unknown>> {
      const out: Record<string, unknown> = {};
      const parts: Promise<void>[] = [
        scanStuckRunc(host, options.procPath, stuckAfterS, signal).then(
          (s) => void (out.stuckRunc = { count: s.count, olderThanSeconds: s.olderThanSeconds, oldestSeconds: s.oldestSeconds, sample: s.sample }),
          (e: Error) => void (out.stuckRuncError = e.message),
        ),
        readRpm().then((text) => {
          const verdict: BugVerdict = bugVerdict({ ...(text ? { rpm: text } : {}), ...(lastVersion ? { version: lastVersion } : {}) });
          if (text) out.rpm = text;
          out.bug = verdict;
        }),
      ];
      if (withJournal && options.journal) {
        parts.push(journalSymptoms().then((j) => void (Array.isArray(j) ? (out.journal = j) : (out.journalError = j.error))));
      }
      await settlesWithin(Promise.allSettled(parts), EVIDENCE_MS);
      return out;
    }

    return {
      id: 'systemd',
      async run(signal): Promise<Finding> {
        const o = await probe();
        failures = countFailures(failures, o);
        const base = { timeoutMs, failures, failuresNeeded: options.failures, procPath: options.procPath };
        if (o.kind === 'missing') return unknown('NotInstalled', `cannot ask PID 1: ${o.why}`, base);
        if (o.kind === 'failed') return unknown('SystemctlFailed', `systemctl show --property=Version failed: ${o.why}`, base);
        if (o.kind === 'answered') {
          lastVersion = o.version || lastVersion;
          // The /proc scan is cheap (stat files only); it lets the ladder see runc piling up on an
          // affected systemd while PID 1 still answers (PLEG plus stuck runc, remediations/README.md).
          const mono = monotonicNow(host.clock);
          if (!scan || mono - scan.mono >= SCAN_REUSE_MS) {
            scan = { stuck: await scanStuckRunc(host, options.procPath, stuckAfterS, signal).catch(() => undefined), at: host.clock.now(), mono };
          }
          const stuck = scan.stuck;
          const ev: Record<string, unknown> = { ...base, version: o.version, answeredMs: o.ms, scannedAt: new Date(scan.at).toISOString() };
          // Which call PID 1 answered: another check's of this sweep, or this check's own (no `answeredVia`).
          if (o.via) ev.answeredVia = `systemctl show ${o.via}`;
          if (stuck) ev.stuckRunc = { count: stuck.count, olderThanSeconds: stuck.olderThanSeconds, oldestSeconds: stuck.oldestSeconds, sample: stuck.sample };
          if (stuck?.count) ev.bug = bugVerdict({ ...(await readRpm().then((text) => (text ? { rpm: text } : {}))), version: o.version });
          const note = stuck?.count ? `; ${describeStuck(stuck)}` : '';
          return { status: 'ok', reason: 'SystemdResponsive', message: `PID 1 (systemd ${o.version}) answered in ${formatDuration(o.ms)}${note}`, evidence: ev };
        }
        scan = undefined;
        const ev: Record<string, unknown> = { ...base, ...(o.via ? { unansweredVia: `systemctl show ${o.via}` } : {}), ...(await evidence(signal, failures >= options.failures)) };
        const stuck = ev.stuckRunc as StuckRunc | undefined;
        const bug = ev.bug as BugVerdict | undefined;
        const silent = `PID 1 (systemd) did not answer systemctl within ${formatDuration(timeoutMs)}`;
        if (failures < options.failures) {
          return unknown('SystemdNotAnswering', `${silent} (${failures} of ${options.failures} consecutive sweeps before it counts as unresponsive)`, ev);
        }
        const facts = [describeStuck(stuck), bug?.why].filter(Boolean).join('; ');
        return {
          status: 'problem',
          reason: 'SystemdUnresponsive',
          message:
            `${silent} on ${failures} consecutive sweeps${facts ? `; ${facts}` : ''}: runc and kubelet calls to systemd hang and PLEG goes unhealthy; ` +
            'restarting kubelet or the runtime does not help. Fix: systemctl daemon-reexec (or kill -TERM 1 when the bus does not answer), kill the stuck runc, upgrade systemd',
          evidence: ev,
        };
      },
    };
  },
};
