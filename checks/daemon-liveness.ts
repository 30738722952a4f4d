import type { Host } from '../platform/host.js';
import { showUnit } from '../platform/systemd-unit.js';
import { unknown, type BaseCheckOptions, type Finding } from './types.js';

/** Options of a container-runtime check (`docker`, `containerd`): its socket, its unit, a deadline. */
export interface RuntimeSocketOptions extends BaseCheckOptions {
  /** The daemon's API socket. */
  socket: string;
  /** The systemd unit that runs the daemon; tells "down" (unit active, socket dead) from "not installed". */
  unit: string;
  /** How long one probe may take before the daemon counts as hung. */
  timeout: string;
}

export const runtimeSocketSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean' },
    socket: { type: 'string', pattern: '^/', description: 'an absolute path' },
    unit: { type: 'string', minLength: 1 },
    timeout: { type: 'string', format: 'duration' },
  },
} as const;

/**
 * What systemd says about a daemon's unit (`systemctl show`), or why it could not be asked
 * (no systemd, no systemctl, timeout). Only consulted when the daemon's socket does not answer,
 * to tell a daemon that is down from one that is not installed or deliberately stopped.
 */
export type UnitQuery =
  | { known: true; loadState: string; activeState: string; subState: string; unitFileState: string }
  | { known: false; error: string };

/** The unit's state through `showUnit` (platform/systemd-unit.ts), reduced to what the verdict needs. */
export async function queryUnit(host: Host, unit: string, timeoutMs: number): Promise<UnitQuery> {
  const r = await showUnit(host, unit, timeoutMs);
  if (!r.ok) return { known: false, error: r.message };
  const u = r.unit;
  return { known: true, loadState: u.loadState, activeState: u.activeState, subState: u.subState, unitFileState: u.unitFileState ?? '' };
}

/** How connecting to the daemon's socket failed. */
export interface SocketFailure {
  /** errno: `ENOENT` (no socket file), `ECONNREFUSED` (a socket file nobody listens on), ... */
  code: string;
  message: string;
}

export interface AbsentDaemon {
  /** Reason prefix and display name, e.g. `Docker` -> `DockerDown`. */
  label: string;
  socket: string;
  unit: string;
  failure: SocketFailure;
  /** Undefined when the failure is not about the socket's existence (then the unit is not asked). */
  unitQuery?: UnitQuery;
}

/** Whether `absentDaemonFinding` needs the unit's state for this failure. */
export function needsUnitState(code: string): boolean {
  return code === 'ENOENT' || code === 'ECONNREFUSED';
}

const RUNNING_STATES = new Set(['active', 'activating', 'reloading', 'deactivating']);
const ENABLED_STATES = new Set(['enabled', 'enabled-runtime', 'linked', 'linked-runtime', 'alias']);

/**
 * The verdict when nothing answers on the daemon's socket. Pure.
 *
 * - The unit runs (or is enabled, or failed) but the socket is missing or refuses: `problem` `<Label>Down`.
 * - A socket file is left behind but no unit is known (not found, or no systemd to ask): `problem`
 *   `<Label>Down`: something ran the daemon here and it is gone.
 * - No socket and no unit: `unknown` `NotInstalled`.
 * - The unit exists but is stopped and not enabled (or masked): `unknown` `NotRunning`: an operator's
 *   choice or a node that uses another runtime, which must not trigger a restart.
 * - Any other socket error (`EACCES`, `ENOTSOCK`): `unknown` `SocketError`.
 */
export function absentDaemonFinding(a: AbsentDaemon): Finding {
  const { label, socket, unit, failure, unitQuery } = a;
  const evidence: Record<string, unknown> = { socket, unit, socketError: failure.code };
  if (!needsUnitState(failure.code)) {
    return unknown('SocketError', `cannot talk to ${label} on ${socket}: ${failure.message}`, evidence);
  }
  const missing = failure.code === 'ENOENT';
  const sock = missing ? `socket ${socket} does not exist` : `socket ${socket} refuses connections`;
  if (unitQuery?.known) {
    Object.assign(evidence, {
      unitLoadState: unitQuery.loadState,
      unitActiveState: unitQuery.activeState,
      unitSubState: unitQuery.subState,
      unitFileState: unitQuery.unitFileState,
    });
  } else if (unitQuery) {
    evidence.unitError = unitQuery.error;
  }
  const loaded = unitQuery?.known && unitQuery.loadState === 'loaded';
  if (loaded && unitQuery.known) {
    const u = `${unit} is ${unitQuery.activeState}${unitQuery.subState ? ` (${unitQuery.subState})` : ''}`;
    if (RUNNING_STATES.has(unitQuery.activeState) || unitQuery.activeState === 'failed') {
      return { status: 'problem', reason: `${label}Down`, message: `${label} is down: ${u} but its ${sock}`, evidence };
    }
    if (ENABLED_STATES.has(unitQuery.unitFileState)) {
      return {
        status: 'problem',
        reason: `${label}Down`,
        message: `${label} is down: ${unit} is enabled but ${unitQuery.activeState}, and its ${sock}`,
        evidence,
      };
    }
    return unknown('NotRunning', `${label} is not running: ${u} and not enabled (${unitQuery.unitFileState || 'no unit file state'}); its ${sock}`, evidence);
  }
  if (unitQuery?.known && unitQuery.loadState === 'masked') {
    return unknown('NotRunning', `${label} is not running: ${unit} is masked; its ${sock}`, evidence);
  }
  const noUnit = unitQuery?.known ? `unit ${unit} ${unitQuery.loadState === 'not-found' ? 'not found' : `is ${unitQuery.loadState}`}` : `unit state unknown (${unitQuery?.error ?? 'not asked'})`;
  if (!missing) {
    return {
      status: 'problem',
      reason: `${label}Down`,
      message: `${label} is down: its ${sock} (a socket left behind by a daemon that is gone; ${noUnit})`,
      evidence,
    };
  }
  return unknown('NotInstalled', `${label} does not seem to be installed: ${sock} and ${noUnit}`, evidence);
}

/**
 * Lets at most one probe per check be in flight: a probe that is still pending when the next run
 * starts means the daemon has not answered for a whole interval, and opening another connection to
 * a hung daemon would only pile up sockets.
 */
export class SingleFlight {
  private pendingSince: number | undefined;

  /** Milliseconds the pending probe has been waiting, or undefined when none is. */
  pendingFor(now: number): number | undefined {
    return this.pendingSince === undefined ? undefined : now - this.pendingSince;
  }

  async run<T>(now: number, probe: () => Promise<T>): Promise<T> {
    this.pendingSince = now;
    try {
      return await probe();
    } finally {
      this.pendingSince = undefined;
    }
  }
}

/** Milliseconds left of a budget that started at `t0` (performance.now()), at least `floor`. */
export function remaining(t0: number, budgetMs: number, floor = 0): number {
  return Math.max(floor, Math.round(budgetMs - (performance.now() - t0)));
}
