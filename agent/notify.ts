import { execa } from 'execa';
import type { Logger } from 'pino';
import type { CheckResult } from '../checks/types.js';
import { settlesWithin } from '../platform/deadline.js';

/**
 * The sd_notify(3) messages the daemon sends to its service manager. Every method resolves, never
 * rejects: a lost notification is logged, and systemd's own timeouts (TimeoutStartSec, WatchdogSec)
 * are what turns it into a restart.
 */
export interface ServiceNotifier {
  /** False when the process was not started by a service manager that listens (`NOTIFY_SOCKET` unset). */
  readonly enabled: boolean;
  /**
   * The watchdog timeout systemd set for this process (`WatchdogSec=`, from `WATCHDOG_USEC` and
   * `WATCHDOG_PID`), in ms; undefined when no watchdog applies to it.
   */
  readonly watchdogMs: number | undefined;
  /** Sends the given `KEY=VALUE` assignments (`READY=1`, `WATCHDOG=1`, `STATUS=...`) in one message. */
  send(assignments: readonly string[]): Promise<NotifyOutcome>;
}

/** How one notification went. */
export type NotifyOutcome =
  | { sent: true }
  | { sent: false; why: 'disabled' | 'busy' }
  | { sent: false; why: 'failed'; error: string };

export interface SystemdNotifierOptions {
  /** Where `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` are read. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /**
   * Remove those three variables from `env` once read, like `sd_notify(unset_environment=1)`, so the
   * commands the agent runs (systemctl, journalctl) do not inherit them. Default: true when `env` is
   * `process.env`.
   */
  unsetEnvironment?: boolean;
  /** The PID the messages are sent for (the service's main PID). Default `process.pid`. */
  pid?: number;
  /** The sender program. Default `systemd-notify` (looked up in PATH). */
  command?: string;
  /** Bound for one send, after which the sender is killed. Default 10 s (systemd-notify waits up to 5 s for PID 1). */
  timeoutMs?: number;
  logger: Logger;
}

/**
 * Reaches `NOTIFY_SOCKET` through systemd's own `systemd-notify` (Node has no AF_UNIX datagram
 * sockets; README "Running as a systemd service" says why this and not a native addon).
 *
 * `--pid=<our pid>` makes systemd-notify send the datagram with our PID in its SCM_CREDENTIALS
 * (it needs CAP_SYS_ADMIN for that, which the unit keeps), so PID 1 attributes the message to the
 * service's main process even after the short-lived sender has exited. Without it the message
 * would carry the sender's own PID, acceptable only under `NotifyAccess=all`, and on systemd < 246
 * (no barrier in systemd-notify) lost whenever the sender is reaped before PID 1 reads the datagram.
 */
export class SystemdNotifier implements ServiceNotifier {
  readonly enabled: boolean;
  readonly watchdogMs: number | undefined;
  private readonly socket: string | undefined;
  private readonly pid: number;
  private readonly command: string;
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  private inFlight = 0;
  private lastError: string | undefined;

  constructor(opts: SystemdNotifierOptions) {
    const env = opts.env ?? process.env;
    this.pid = opts.pid ?? process.pid;
    this.command = opts.command ?? 'systemd-notify';
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.logger = opts.logger;
    const socket = env.NOTIFY_SOCKET;
    this.socket = socket ? socket : undefined;
    this.enabled = this.socket !== undefined;
    this.watchdogMs = watchdogTimeoutMs(env, this.pid);
    if (opts.unsetEnvironment ?? env === process.env) {
      delete env.NOTIFY_SOCKET;
      delete env.WATCHDOG_USEC;
      delete env.WATCHDOG_PID;
    }
  }

  async send(assignments: readonly string[]): Promise<NotifyOutcome> {
    if (!this.socket) return { sent: false, why: 'disabled' };
    const bad = assignments.find((a) => !/^[A-Z_][A-Z0-9_]*=[^\n]*$/.test(a));
    if (bad !== undefined) {
      const error = `not a single-line KEY=VALUE notification: ${JSON.stringify(bad)}`;
      this.logger.error({ notify: assignments }, error);
      return { sent: false, why: 'failed', error };
    }
    // At most two senders at once: a WATCHDOG=1 never queues behind a sender stuck waiting on PID 1.
    if (this.inFlight >= 2) return { sent: false, why: 'busy' };
    this.inFlight++;
    try {
      const r = await execa(this.command, [`--pid=${this.pid}`, ...assignments], {
        reject: false,
        stdin: 'ignore',
        timeout: this.timeoutMs,
        forceKillAfterDelay: 1000,
        // Only what the sender needs; PATH so that it is found wherever the distribution puts it.
        env: { NOTIFY_SOCKET: this.socket, LC_ALL: 'C', ...(process.env.PATH ? { PATH: process.env.PATH } : {}) },
        extendEnv: false,
        maxBuffer: 64 * 1024,
      });
      if (r.exitCode === 0 && !r.timedOut) {
        if (this.lastError !== undefined) this.logger.info({ notify: assignments }, 'notifications to systemd work again');
        this.lastError = undefined;
        return { sent: true };
      }
      const error = r.timedOut
        ? `${this.command} did not finish within ${this.timeoutMs} ms`
        : (r as { code?: string }).code === 'ENOENT'
          ? `${this.command} not found in PATH (it ships with systemd); READY/WATCHDOG cannot reach systemd`
          : `${this.command} exited ${r.exitCode ?? r.signal}: ${(typeof r.stderr === 'string' ? r.stderr : '').trim().split('\n')[0] || r.shortMessage}`;
      // Logged once per distinct failure: a broken notifier must not flood the journal every ping.
      if (error !== this.lastError) this.logger.error({ notify: assignments, socket: this.socket }, `notification to systemd failed: ${error}`);
      this.lastError = error;
      return { sent: false, why: 'failed', error };
    } finally {
      this.inFlight--;
    }
  }
}

/** sd_watchdog_enabled(3): `WATCHDOG_USEC`, if set and `WATCHDOG_PID` (when present) is `pid`. */
export function watchdogTimeoutMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (!usec || !/^\d+$/.test(usec) || Number(usec) === 0) return undefined;
  const forPid = env.WATCHDOG_PID;
  if (forPid !== undefined && forPid !== '' && forPid !== String(pid)) return undefined;
  return Number(usec) / 1000;
}

/** What `superviseWithSystemd` needs from the agent (agent/agent.ts `Agent`). */
export interface SupervisedAgent {
  on(event: 'ready', listener: () => void): unknown;
  on(event: 'sweep', listener: (results: CheckResult[]) => void): unknown;
  off(event: 'ready', listener: () => void): unknown;
  off(event: 'sweep', listener: (results: CheckResult[]) => void): unknown;
  /** The `/healthz` verdict (Agent.healthy: a sweep finished recently enough, on the monotonic clock). */
  healthy(): { ok: boolean; detail: string };
}

export interface SystemdSupervision {
  /** Sends STOPPING=1; resolves when sent, or after at most `waitMs` (default 1 s). */
  stopping(waitMs?: number): Promise<void>;
  /** Stops the watchdog timer and listeners. */
  close(): void;
}

/** One line for `systemctl status`: how the last sweep went. */
export function sweepStatus(results: readonly CheckResult[]): string {
  const count = (s: string): number => results.filter((r) => r.status === s).length;
  const problems = results.filter((r) => r.status === 'problem').map((r) => `${r.check} (${r.reason})`);
  const head = `${results.length} checks: ${count('ok')} ok, ${count('problem')} problem, ${count('unknown')} unknown`;
  // One line: a newline would end the STATUS= assignment.
  return (problems.length ? `${head}; problem: ${problems.join(', ')}` : head).replace(/\s+/g, ' ').slice(0, 400);
}

/**
 * Ties the agent's lifecycle to systemd (Type=notify): READY=1 once the agent is serving and its
 * first sweep finished; STATUS= after every sweep; WATCHDOG=1 every half `WatchdogSec` while the
 * sweep loop is healthy (the `/healthz` rule); STOPPING=1 on shutdown. A no-op without
 * `NOTIFY_SOCKET`.
 *
 * Why a timer gated on health and not only a ping per sweep: the timer runs on the event loop, so
 * a wedged loop (a synchronous hang, SIGSTOP) stops it and systemd restarts the agent within
 * WatchdogSec; the health gate stops it too when the loop runs but sweeps stopped finishing. And
 * WatchdogSec stays independent of the configured schedule (a sweep every 5 min would otherwise
 * need WatchdogSec > 5 min).
 */
export function superviseWithSystemd(agent: SupervisedAgent, notifier: ServiceNotifier, logger: Logger): SystemdSupervision {
  let timer: NodeJS.Timeout | undefined;
  let readySent = false;
  let unhealthyLogged = false;

  const ping = (): void => {
    const h = agent.healthy();
    if (!h.ok) {
      // Withholding the ping is the point: systemd restarts us after WatchdogSec.
      if (!unhealthyLogged) logger.error({ detail: h.detail, watchdogMs: notifier.watchdogMs }, 'sweep loop unhealthy: withholding WATCHDOG=1, systemd will restart the agent');
      unhealthyLogged = true;
      return;
    }
    unhealthyLogged = false;
    void notifier.send(['WATCHDOG=1']);
  };

  const onReady = (): void => {
    readySent = true;
    void notifier.send(['READY=1', 'STATUS=serving; first sweep done']).then((o) => {
      if (o.sent) logger.info({ watchdogMs: notifier.watchdogMs }, 'told systemd READY=1');
    });
    if (notifier.watchdogMs !== undefined && !timer) {
      timer = setInterval(ping, Math.max(100, Math.floor(notifier.watchdogMs / 2)));
    }
  };

  const onSweep = (results: CheckResult[]): void => {
    if (!readySent) return;
    const msg = [`STATUS=${sweepStatus(results)}`];
    if (notifier.watchdogMs !== undefined && agent.healthy().ok) msg.push('WATCHDOG=1');
    void notifier.send(msg);
  };

  if (notifier.enabled) {
    agent.on('ready', onReady);
    agent.on('sweep', onSweep);
  }

  return {
    async stopping(waitMs = 1000) {
      if (!notifier.enabled) return;
      await settlesWithin(notifier.send(['STOPPING=1', 'STATUS=stopping']), waitMs);
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      agent.off('ready', onReady);
      agent.off('sweep', onSweep);
    },
  };
}
