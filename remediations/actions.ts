import { formatDuration } from '../platform/duration.js';
import { within } from '../platform/deadline.js';
import type { Host } from '../platform/host.js';
import { describeUnitState, showUnit, type UnitQueryResult } from '../platform/systemd-unit.js';
import type { UnitFacts } from './types.js';

/** How long asking systemd about a unit may take; a PID 1 that does not answer in this is unhealthy. */
export const UNIT_QUERY_TIMEOUT_MS = 10_000;

/**
 * The ladder's view of a unit. The "last start" is the later of `InactiveExitTimestamp` (a start
 * began, even one that never reached active) and `ActiveEnterTimestamp`, so that a unit cycling
 * through `Restart=` counts as freshly started.
 */
export function unitFactsFrom(q: UnitQueryResult): UnitFacts | { error: string } {
  if (!q.ok) return { error: q.message };
  const u = q.unit;
  const starts = [u.inactiveExitAtMs, u.activeEnterAtMs].filter((x): x is number => x !== undefined);
  const facts: UnitFacts = { loadState: u.loadState, activeState: u.activeState, lastStartMs: starts.length ? Math.max(...starts) : null };
  if (u.job !== undefined) facts.jobPending = true;
  return facts;
}

const TRANSITIONAL = new Set(['activating', 'deactivating', 'reloading']);

/**
 * The unit is on its way somewhere: a state between two others, or a job systemd has not finished
 * (the start half of a restart is queued while the unit shows `failed`). Its start time may still move.
 */
export function unitBetweenStates(f: UnitFacts): boolean {
  return TRANSITIONAL.has(f.activeState) || f.jobPending === true;
}

/** The unit's facts, or why they could not be read; always within `timeoutMs` plus a second. */
export async function readUnitFacts(host: Host, unit: string, timeoutMs = UNIT_QUERY_TIMEOUT_MS): Promise<UnitFacts | { error: string }> {
  return within(
    showUnit(host, unit, timeoutMs).then(unitFactsFrom),
    timeoutMs + 1000,
    () => ({ error: `systemctl show ${unit} did not answer within ${formatDuration(timeoutMs)}` }),
  );
}

/**
 * `timeout(1)` in front of a host command, so that the command itself is killed on the node's side
 * when it overruns: through `nsenter`, killing the local process would leave it running.
 */
export function boundedArgv(argv: readonly string[], timeoutMs: number): string[] {
  return ['timeout', '--kill-after=1s', `${Math.max(1, timeoutMs) / 1000}s`, ...argv];
}
const TIMEOUT_EXIT = new Set([124, 137]);

export interface RestartOutcome {
  result: 'success' | 'failure';
  /** One sentence for logs and `/status`. */
  detail: string;
}

export interface RestartOptions {
  /** The whole restart, confirmation included, must finish within this. */
  timeoutMs: number;
  /** How often to look again while the unit is still starting. Default 250 ms. */
  pollMs?: number;
}

const SETTLING_STATES = new Set(['activating', 'reloading', 'deactivating']);

/**
 * `systemctl restart UNIT` through the host command prefix, bounded by `timeoutMs` (then killed),
 * followed by `systemctl show` until the unit is `active`. A zero exit alone is not enough: a unit
 * whose process dies right after starting reports success to `restart` and is `failed` a moment later.
 */
export async function restartUnit(host: Host, unit: string, opts: RestartOptions): Promise<RestartOutcome> {
  const started = host.clock.now();
  const deadline = started + opts.timeoutMs;
  const timedOut = { exitCode: undefined, stdout: '', stderr: '', timedOut: true, notFound: false, outputCapped: false, argv: [] };
  const r = await within(
    host.run(boundedArgv(['systemctl', 'restart', '--', unit], opts.timeoutMs), { timeoutMs: opts.timeoutMs + 3000, killAfterMs: 1000, maxOutputBytes: 64 * 1024 }),
    opts.timeoutMs + 5000,
    () => timedOut,
  );
  if (r.timedOut || (r.exitCode !== undefined && TIMEOUT_EXIT.has(r.exitCode))) return { result: 'failure', detail: `systemctl restart ${unit} did not finish within ${formatDuration(opts.timeoutMs)}` };
  if (r.notFound || r.exitCode === 127) return { result: 'failure', detail: `systemctl restart ${unit} could not run: ${r.notFound ? r.argv[0] : 'timeout or systemctl'} is not installed` };
  if (r.exitCode !== 0) {
    const why = (r.stderr.trim().split('\n')[0] || r.error || `exit code ${String(r.exitCode)}`).slice(0, 300);
    return { result: 'failure', detail: `systemctl restart ${unit} failed: ${why}` };
  }
  for (;;) {
    const left = deadline - host.clock.now();
    const budget = Math.max(1000, Math.min(UNIT_QUERY_TIMEOUT_MS, left));
    const q = await within(showUnit(host, unit, budget), budget + 1000, () => ({ ok: false as const, reason: 'CommandTimeout' as const, message: `systemctl show ${unit} did not answer within ${formatDuration(budget)}` }));
    if (!q.ok) return { result: 'failure', detail: `${unit} was restarted but its state cannot be read: ${q.message}` };
    const state = describeUnitState(q.unit);
    const took = formatDuration(host.clock.now() - started);
    if (q.unit.activeState === 'active') return { result: 'success', detail: `${unit} restarted and ${state} after ${took}` };
    // `activating (auto-restart)` included: systemd may still bring it up within the deadline.
    if (!SETTLING_STATES.has(q.unit.activeState)) {
      return { result: 'failure', detail: `${unit} is ${state} after the restart` };
    }
    if (host.clock.now() + (opts.pollMs ?? 250) > deadline) {
      return { result: 'failure', detail: `${unit} still ${state} ${took} after the restart` };
    }
    await new Promise((resolve) => setTimeout(resolve, opts.pollMs ?? 250));
  }
}
