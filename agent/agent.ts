import { EventEmitter } from 'node:events';
import cron, { type ScheduledTask, type Logger as CronLogger } from 'node-cron';
import type { Logger } from 'pino';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import type { CheckDefinition, CheckResult } from '../checks/types.js';
import { createRemediator } from '../remediations/index.js';
import { lazyKubeAccess } from '../platform/kube-client.js';
import { clusterViewStatus } from '../platform/kube-watch.js';
import { createKubernetesIntegration, type KubernetesIntegration } from '../remediations/kubernetes/index.js';
import type { DrainRebooter, Remediator } from '../remediations/types.js';
import { ClockStepDetector, monotonicNow, systemClock, type Clock } from '../platform/clock.js';
import { settlesWithin } from '../platform/deadline.js';
import type { Config } from './config.js';
import { parseDuration } from '../platform/duration.js';
import { RealHost, type Host } from '../platform/host.js';
import { AgentMetrics } from './metrics.js';
import { closeServer, openServer } from './server.js';
import { lockStateDir, StateDirLockedError, type StateDirLock } from './state-lock.js';
import { Sweeper, type ActiveCheck } from './sweep.js';
import { VERSION } from './version.js';

export interface AgentOptions {
  config: Config;
  /** Where the config came from, for logs and `/status`. */
  configSource?: string;
  logger: Logger;
  /** Default: the real node, with `hostCommandPrefix` applied. */
  host?: Host;
  clock?: Clock;
  /** Serve HTTP (the daemon does; `nodemedic check` does not). Default true. */
  serve?: boolean;
  /** The ladder's last step when Kubernetes access is configured. */
  drainRebooter?: DrainRebooter;
  /** Take the one-agent-per-stateDir lock at start. Default: when serving (the daemon). */
  lockStateDir?: boolean;
}

/** Events: `sweep` (results) after every sweep; `ready` once serving and the first sweep finished; `reloaded` after each reload attempt. */
export interface AgentEvents {
  sweep: [results: CheckResult[]];
  ready: [];
  reloaded: [outcome: ReloadOutcome];
}

/** How one reload went. */
export type ReloadOutcome =
  | { applied: true; kept: string[]; rebuilt: string[]; remediation: 'kept' | 'rebuilt'; listener: 'kept' | 'moved' }
  | { applied: false; why: string };

/** Reads (and validates) the config a reload applies; may reject (unreadable or invalid: the reload is rejected). */
export type ConfigLoader = () => { config: Config; source: string } | Promise<{ config: Config; source: string }>;

/** What a stop left behind: checks whose run or stop never returned (a call stuck in the kernel, e.g. on a hung mount). */
export interface StopReport {
  stuck: string[];
}

/** How long start (and a reload) waits for one check's start() before going on without it. */
export const CHECK_START_WAIT_MS = 5000;
/** How long stop waits for one check's stop(). */
export const CHECK_STOP_WAIT_MS = 3000;
/** Requests in flight get this long once the listener closes; then every connection is dropped. */
export const HTTP_CLOSE_GRACE_MS = 1500;

/** Everything the remediator and the Kubernetes integration are built from; equal keys: keep them across a reload. */
function remediationKey(c: Config): string {
  const units = Object.fromEntries(Object.entries(c.checks).map(([id, o]) => [id, (o as { unit?: unknown }).unit]));
  return JSON.stringify([c.remediation, c.stateDir, c.nodeName, c.kubernetes, c.hostCommandPrefix, units]);
}

/** Everything a check is built from; equal keys: the running check (its follower, its window) is kept across a reload. */
function checkKey(c: Config, id: string): string {
  return JSON.stringify([c.checks[id], c.hostCommandPrefix, c.nodeName, c.kubernetes.kubeconfig]);
}

const MIN_CHECK_TIMEOUT_MS = 30_000;

/** Least time between the starts of two runs a check asked for itself (CheckDeps.requestRun). */
export const REQUESTED_RUN_MIN_GAP_MS = 200;

/** A coalescing, rate-limited trigger (see `coalescedRequester`). */
export interface Requester {
  request(): void;
  /** Cancels a pending run and waits for a running one; later requests are ignored. */
  close(): Promise<void>;
}

/**
 * Turns any number of `request()` calls into runs of `run`: never two at once, starts at least
 * `minGapMs` apart, and a request made while a run is going gets one more run after it (that run
 * may not have seen what prompted the request). A flood of requests costs one run per `minGapMs`.
 */
export function coalescedRequester(run: () => Promise<unknown>, minGapMs: number, onError: (e: unknown) => void): Requester {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;
  let lastStart = -Infinity;
  const arm = (): void => {
    if (closed || timer || running) return;
    timer = setTimeout(fire, Math.max(0, lastStart + minGapMs - performance.now()));
  };
  const fire = (): void => {
    timer = undefined;
    lastStart = performance.now();
    running = Promise.resolve()
      .then(run)
      .then(
        () => undefined,
        (e: unknown) => onError(e),
      )
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          arm();
        }
      });
  };
  return {
    request: () => {
      if (running) again = true;
      else arm();
    },
    close: async () => {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}

/** How long the scheduler lets a check run before reporting it `unknown`. */
export function checkRunTimeoutMs(def: CheckDefinition<any>, options: Record<string, unknown>): number {
  if (def.runTimeoutMs) return def.runTimeoutMs(options as never);
  if (typeof options.timeout === 'string') return parseDuration(options.timeout) + 2000;
  return MIN_CHECK_TIMEOUT_MS;
}

/**
 * The daemon: checks on a schedule, the latest results, metrics, the HTTP endpoints and the
 * remediation component.
 *
 * It is the one owner of its lifecycle (STYLE.md): start, reload and stop go through one serialised
 * path. Start takes the state directory's lock, then opens the listener before anything that may
 * wait on the node or the cluster. A reload builds what can fail (the new listener) before it
 * touches the running whole, keeps every part whose config did not change (a check keeps its log
 * follower and window, the remediator its in-flight action), and a reload asked for during another
 * runs once, after it. Stop undoes in reverse order of danger: abort a drain in flight (its
 * rollback uncordons and releases the slot), then the remediator, the checks, the listener, each
 * bounded in time.
 */
export class Agent extends EventEmitter<AgentEvents> {
  private config: Config;
  private configSource: string;
  private readonly logger: Logger;
  private host: Host;
  private readonly hostInjected: boolean;
  readonly clock: Clock;
  readonly metrics = new AgentMetrics();
  private readonly sweeper: Sweeper;
  private checks: ActiveCheck[] = [];
  private readonly latest = new Map<string, CheckResult>();
  private remediator: Remediator;
  private task: ScheduledTask | undefined;
  private server: { app: Awaited<ReturnType<typeof openServer>>['app']; listen: string } | undefined;
  /** The sweep in progress; `full` when it covers every check (only those feed remediation). */
  private sweeping: { run: Promise<CheckResult[]>; full: boolean } | undefined;
  /** Monotonic ms of the start and of the last full sweep's end: what liveness is judged by. */
  private startedAtMono = 0;
  private lastSweepMono: number | undefined;
  /** Wall-clock time of the last full sweep's end, for display only. */
  private lastSweepAt: number | undefined;
  private intervalMs = 15_000;
  private address: string | undefined;
  private readonly drainRebooter: DrainRebooter | undefined;
  /** Drain-reboot, post-boot recovery, Node conditions and events (remediations/kubernetes). */
  private kubernetes: KubernetesIntegration;
  /** Per check: the run the agent started whose result is not yet published (see `inTurn`). */
  private readonly turns = new Map<string, Promise<void>>();
  /** The `requestRun` trigger of each current check. */
  private readonly requesters = new Map<ActiveCheck, Requester>();
  private lock: StateDirLock | undefined;
  private readonly stepDetector: ClockStepDetector;
  /** The start, a reload, in progress (one at a time). */
  private op: Promise<unknown> = Promise.resolve();
  /** Settles when start() has finished (or failed): reloads asked for before, even before start() is called, wait for it. */
  private readonly startSettled: Promise<void>;
  private settleStart!: () => void;
  private reloadWanted: ConfigLoader | undefined;
  private reloadLoop: Promise<void> | undefined;
  private stopping = false;
  private stopped: Promise<StopReport> | undefined;
  /** Remediators started and not yet stopped: one, always (counted for /status, not assumed). */
  private liveRemediators = 0;
  private reloads = { applied: 0, rejected: 0 };
  private clockSteps = 0;

  constructor(private readonly opts: AgentOptions) {
    super();
    this.startSettled = new Promise((resolve) => (this.settleStart = resolve));
    this.config = opts.config;
    this.configSource = opts.configSource ?? '(inline)';
    this.logger = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.stepDetector = new ClockStepDetector(this.clock);
    this.hostInjected = !!opts.host;
    this.host = opts.host ?? new RealHost({ commandPrefix: this.config.hostCommandPrefix, clock: this.clock });
    this.sweeper = new Sweeper(this.clock, this.logger);
    this.drainRebooter = opts.drainRebooter;
    this.kubernetes = this.makeKubernetes();
    this.remediator = this.makeRemediator();
  }

  get nodeName(): string {
    return this.config.nodeName;
  }

  /** The URL the HTTP server listens on, once started. */
  get url(): string | undefined {
    return this.address;
  }

  private get serving(): boolean {
    return this.opts.serve !== false;
  }

  private makeRemediator(): Remediator {
    return createRemediator({
      config: this.config,
      host: this.host,
      logger: this.logger.child({ component: 'remediation' }),
      recordAction: this.metrics.recordAction,
      registry: this.metrics.registry,
      drainRebooter: this.drainRebooter ?? this.kubernetes.drainRebooter,
      requestSweep: (only) => this.sweep(only),
      clock: this.clock,
    });
  }

  private makeKubernetes(): KubernetesIntegration {
    return createKubernetesIntegration({ config: this.config, host: this.host, logger: this.logger, clock: this.clock, recordAction: this.metrics.recordAction });
  }

  /** Builds the enabled checks (only `only`, if given) from the current config, not started. */
  private buildChecks(only?: readonly string[]): ActiveCheck[] {
    const out: ActiveCheck[] = [];
    // One lazily connected Kubernetes access per build, shared by the cluster-view checks; nothing is loaded unless one runs.
    const kube = lazyKubeAccess(this.config.kubernetes.kubeconfig);
    for (const def of CHECK_DEFINITIONS) {
      const options = this.config.checks[def.id];
      if (!options?.enabled || (only && !only.includes(def.id))) continue;
      const logger = this.logger.child({ check: def.id });
      const requester = coalescedRequester(() => this.runRequested(active), REQUESTED_RUN_MIN_GAP_MS, (e) => logger.error({ err: e }, 'requested run failed'));
      const active: ActiveCheck = {
        id: def.id,
        check: def.create(options, { host: this.host, logger, nodeName: this.config.nodeName, kube, requestRun: requester.request, ...(this.opts.serve === false ? { oneShot: true } : {}) }),
        timeoutMs: checkRunTimeoutMs(def, options),
      };
      this.requesters.set(active, requester);
      out.push(active);
    }
    return out;
  }

  /**
   * Runs `fn` once the previous run of check `id` that the agent started has published its result,
   * so a requested run and a sweep never collide on a check (the Sweeper would answer the second
   * `CheckStillRunning`); other checks of the sweep are not held up.
   */
  private async inTurn<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.turns.get(id);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = (prev ?? Promise.resolve()).then(() => mine);
    this.turns.set(id, chained);
    try {
      await prev;
      return await fn();
    } finally {
      release();
      if (this.turns.get(id) === chained) this.turns.delete(id);
    }
  }

  private publish(r: CheckResult): void {
    this.latest.set(r.check, r);
    this.metrics.observe(r);
  }

  /** A run a check asked for (CheckDeps.requestRun): published like a sweep's; remediation waits for the next full sweep. */
  private async runRequested(c: ActiveCheck): Promise<void> {
    if (!this.checks.includes(c) || this.stopping) return;
    await this.inTurn(c.id, async () => {
      if (!this.checks.includes(c) || this.stopping) return;
      const [r] = await this.sweeper.sweep([c]);
      // Still running past its timeout: the scheduled sweeps report that; a request adds nothing.
      if (r && r.reason !== 'CheckStillRunning') this.publish(r);
    });
  }

  /** Cancels pending requested runs of `checks`; a running one is waited for at most `waitMs`. */
  private async closeRequesters(checks: readonly ActiveCheck[], waitMs = 1000): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const c of checks) {
      const r = this.requesters.get(c);
      this.requesters.delete(c);
      if (r) closing.push(r.close());
    }
    await settlesWithin(Promise.all(closing), waitMs);
  }

  /**
   * Starts `checks`, each given CHECK_START_WAIT_MS: a check whose start waits on the node (a log
   * file on a hung mount, a PID 1 that does not answer) goes on starting in the background, and
   * reports from run() meanwhile; the agent is not held up.
   */
  private async startChecks(checks: readonly ActiveCheck[]): Promise<void> {
    await Promise.all(
      checks.map(async (c) => {
        const started = Promise.resolve()
          .then(() => c.check.start?.())
          .catch((e: unknown) => {
            // A check whose background source cannot start reports `unknown` from run(); the agent goes on.
            this.logger.error({ check: c.id, err: e }, 'check failed to start');
          });
        if (!(await settlesWithin(started, CHECK_START_WAIT_MS))) {
          this.logger.warn({ check: c.id, waitedMs: CHECK_START_WAIT_MS }, 'check still starting; going on without waiting for it');
        }
      }),
    );
  }

  /** Stops `checks`, each bounded; returns the ids of those whose stop did not return in time. */
  private async stopChecks(checks: readonly ActiveCheck[]): Promise<string[]> {
    const stuck: string[] = [];
    await Promise.all(
      checks.map(async (c) => {
        const stopping = Promise.resolve()
          .then(() => c.check.stop?.())
          .catch((e: unknown) => this.logger.warn({ check: c.id, err: e }, 'check failed to stop cleanly'));
        if (!(await settlesWithin(stopping, CHECK_STOP_WAIT_MS))) {
          stuck.push(c.id);
          this.logger.warn({ check: c.id, waitedMs: CHECK_STOP_WAIT_MS }, 'check did not stop in time; abandoning it');
        }
      }),
    );
    return stuck;
  }

  /**
   * Starts the agent. With `serve: false` (`nodemedic check`) only the checks (or `only`). The daemon:
   * the state directory's lock (a StateDirLockedError if another agent holds it), the listener (a
   * ListenError if it cannot listen), the checks, post-boot recovery, remediation, the schedule and
   * the first sweep, then `ready`. A stop during the start ends it at the next step.
   */
  async start(only?: readonly string[]): Promise<void> {
    this.startedAtMono = monotonicNow(this.clock);
    if (!this.serving) {
      this.checks = this.buildChecks(only);
      await this.startChecks(this.checks);
      return;
    }
    const run = this.startServing();
    this.op = run.catch(() => undefined);
    try {
      await run;
    } finally {
      this.settleStart();
    }
  }

  private async startServing(): Promise<void> {
    // Before anything in stateDir is read (the ladder's state, the drain plan): one agent per stateDir.
    if (this.opts.lockStateDir ?? true) {
      try {
        this.lock = await lockStateDir(this.config.stateDir);
      } catch (e) {
        if (e instanceof StateDirLockedError) throw e;
        // A state directory that cannot be written (a read-only root) also leaves the ladder without
        // its state: it stays idle and says why in /status. Checks and reporting go on.
        this.logger.error({ err: e, stateDir: this.config.stateDir }, 'cannot take the state directory lock; running without it');
      }
    }
    try {
      // The listener first: /healthz and /status answer even while the rest waits on the node or the cluster.
      await this.listen(this.config.http.listen);
    } catch (e) {
      await this.lock?.release();
      this.lock = undefined;
      throw e;
    }
    if (this.stopping) return;
    this.checks = this.buildChecks();
    await this.startChecks(this.checks);
    if (this.stopping) return;
    // Finishes or rolls back a drain-reboot from before this start (or the reboot), before the ladder acts.
    await this.kubernetes.onStartup();
    if (this.stopping) return;
    await this.remediator.start();
    this.countRemediators(+1);
    if (this.stopping) return;
    this.schedule();
    await this.sweep();
    if (this.stopping) return;
    this.logger.info({ url: this.address, mode: this.config.remediation.mode, checks: this.checks.map((c) => c.id), config: this.configSource }, 'nodemedic ready');
    this.emit('ready');
  }

  private source(): Parameters<typeof openServer>[0] {
    return {
      healthy: () => this.healthy(),
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.render() }),
      status: () => this.status(),
    };
  }

  private async listen(listen: string): Promise<void> {
    const { app, url } = await openServer(this.source(), listen);
    this.server = { app, listen };
    this.address = url;
  }

  /** node-cron's own messages (ANSI-coloured console lines) go into the JSON log instead. */
  private cronLogger(): CronLogger {
    const log = this.logger.child({ component: 'scheduler' });
    return {
      info: (m) => log.debug(String(m)),
      warn: (m) => log.debug(String(m)),
      error: (m, err) => log.error({ err: err ?? m }, typeof m === 'string' ? m : 'scheduler error'),
      debug: (m) => log.debug(String(m)),
    };
  }

  private schedule(): void {
    this.task?.destroy();
    this.task = cron.schedule(
      this.config.schedule,
      async () => {
        // A tick while a sweep runs is skipped here (not by node-cron's noOverlap, which would log it).
        if (this.sweeping || this.stopping) return;
        await this.sweep();
      },
      { name: 'nodemedic-sweep', logger: this.cronLogger() },
    );
    const next = this.task.getNextRuns(3);
    if (next.length >= 3) this.intervalMs = Math.max(1000, next[2]!.getTime() - next[1]!.getTime());
  }

  /**
   * One sweep of all configured checks (or of `only`). Sweeps never overlap: a call while one runs
   * waits for it. Each result is published as soon as its check returns.
   */
  async sweep(only?: readonly string[]): Promise<CheckResult[]> {
    // Wait for the sweep in progress. A full sweep may reuse a running full sweep's results, but not a
    // partial one's: that would skip remediation and the /healthz heartbeat for this round.
    while (this.sweeping) {
      const current = this.sweeping;
      const results = await current.run;
      if (!only && current.full) return results;
      if (this.sweeping === current) break;
    }
    if (this.stopping) return [];
    const targets = only ? this.checks.filter((c) => only.includes(c.id)) : this.checks;
    const run = Promise.all(targets.map((c) => this.inTurn(c.id, () => this.sweeper.sweep([c], (r) => this.publish(r))).then((rs) => rs[0]!)));
    const mine = { run, full: !only };
    this.sweeping = mine;
    try {
      const results = await run;
      if (!only) {
        this.noticeClockStep();
        this.lastSweepMono = monotonicNow(this.clock);
        this.lastSweepAt = this.clock.now();
        this.metrics.sweepFinished(this.lastSweepAt);
        this.emit('sweep', results);
        // Remediation acts on full sweeps only; a partial sweep is the ladder asking to judge a step.
        if (this.serving && !this.stopping) await this.remediator.afterSweep(this.results());
        // Node conditions and post-boot recovery talk to the API server: never hold up the sweep loop.
        if (this.serving && !this.stopping) void this.kubernetes.afterSweep(this.results());
      }
      return results;
    } catch (e) {
      this.logger.error({ err: e }, 'sweep failed');
      return [];
    } finally {
      if (this.sweeping === mine) this.sweeping = undefined;
    }
  }

  /** Logs a wall-clock step (intervals are monotonic and unaffected; persisted times are not). */
  private noticeClockStep(): void {
    const step = this.stepDetector.look();
    if (step === undefined) return;
    this.clockSteps++;
    this.logger.warn(
      { stepMs: Math.round(step), now: new Date(this.clock.now()).toISOString() },
      `the wall clock stepped ${step > 0 ? 'forward' : 'back'} by ${Math.round(Math.abs(step) / 1000)}s; liveness, the watchdog and the PLEG window use the monotonic clock and are not affected`,
    );
  }

  /** The latest result of every configured check, in the order of checks/index.ts. */
  results(): CheckResult[] {
    return this.checks.map((c) => this.latest.get(c.id)).filter((r): r is CheckResult => !!r);
  }

  /**
   * How long after the last sweep (or the start) the loop still counts as alive. A sweep lasts at
   * most as long as its slowest check's timeout, and the next starts at most one interval after that
   * ends, so with a 1 s schedule and a check that may take 5 s, sweeps end up to 6 s apart in normal
   * work: the limit is three intervals, or twice (interval + slowest check timeout) if more.
   */
  livenessLimitMs(): number {
    const slowest = Math.max(0, ...this.checks.map((c) => c.timeoutMs));
    return Math.max(3 * this.intervalMs, 2 * (this.intervalMs + slowest));
  }

  /** The `/healthz` verdict, judged on the monotonic clock (a wall-clock step changes nothing). */
  healthy(): { ok: boolean; detail: string } {
    const since = this.lastSweepMono ?? this.startedAtMono;
    const age = monotonicNow(this.clock) - since;
    const limit = this.livenessLimitMs();
    if (age <= limit) return { ok: true, detail: 'sweeping' };
    return {
      ok: false,
      detail: this.lastSweepMono === undefined ? `no sweep finished in ${Math.round(age / 1000)}s since start` : `last sweep finished ${Math.round(age / 1000)}s ago (limit ${Math.round(limit / 1000)}s)`,
    };
  }

  status(): Record<string, unknown> {
    return {
      node: this.config.nodeName,
      version: VERSION,
      mode: this.config.remediation.mode,
      config: this.configSource,
      lastSweep: this.lastSweepAt === undefined ? null : new Date(this.lastSweepAt).toISOString(),
      healthy: this.healthy().ok,
      results: this.results(),
      remediation: this.remediator.status(),
      kubernetes: this.kubernetes.status(),
      lifecycle: {
        state: this.stopping ? 'stopping' : 'running',
        remediators: this.liveRemediators,
        reloads: { ...this.reloads, pending: !!this.reloadWanted },
        clockSteps: this.clockSteps,
        stateDirLock: this.lock?.address ?? null,
      },
      // How the cluster-view checks follow the API: watching, or polling and why (platform/kube-watch.ts).
      clusterView: clusterViewStatus(),
    };
  }

  /**
   * Asks for a reload with the config `load` returns (read when the reload runs, so the newest file
   * wins). Reloads never overlap: any number asked for while one runs (or while the agent starts)
   * make one more, after it. Resolves when no reload is pending. `load` may throw (an invalid
   * config): the reload is rejected and the running config kept whole.
   */
  requestReload(load: ConfigLoader): Promise<void> {
    if (this.stopping) return Promise.resolve();
    this.reloadWanted = load;
    if (!this.reloadLoop) {
      this.reloadLoop = (async () => {
        try {
          while (this.reloadWanted && !this.stopping) {
            // After the start (a SIGHUP can come before it began) and the reload in progress.
            await this.startSettled;
            await this.op;
            const next = this.reloadWanted;
            this.reloadWanted = undefined;
            if (!next || this.stopping) break;
            const run = this.reloadOnce(next);
            this.op = run.catch(() => undefined);
            await run;
          }
        } finally {
          this.reloadLoop = undefined;
        }
      })();
    }
    return this.reloadLoop;
  }

  /** Applies an already validated config (see `requestReload`). */
  async reload(config: Config, source?: string): Promise<void> {
    await this.requestReload(() => ({ config, source: source ?? this.configSource }));
  }

  private countRemediators(delta: number): void {
    this.liveRemediators += delta;
    this.metrics.setRemediators(this.liveRemediators);
  }

  private reject(why: string, extra: Record<string, unknown> = {}): void {
    this.reloads.rejected++;
    this.metrics.reloaded('rejected');
    this.logger.error({ ...extra, config: this.configSource }, `reload rejected: ${why}; keeping the current config`);
    this.emit('reloaded', { applied: false, why });
  }

  private async reloadOnce(load: ConfigLoader): Promise<void> {
    let loaded: { config: Config; source: string };
    try {
      loaded = await load();
    } catch (e) {
      const problems = (e as { problems?: unknown }).problems;
      this.reject('invalid config', { err: problems ?? e });
      return;
    }
    const { config, source } = loaded;
    const old = this.config;

    // 1. What can fail, while the running whole goes on untouched.
    let moved: Awaited<ReturnType<typeof openServer>> | undefined;
    if (this.server && config.http.listen !== this.server.listen) {
      try {
        moved = await openServer(this.source(), config.http.listen);
      } catch (e) {
        this.reject((e as Error).message, { listen: config.http.listen });
        return;
      }
    }
    let newLock: StateDirLock | undefined;
    if (this.lock && config.stateDir !== old.stateDir) {
      try {
        newLock = await lockStateDir(config.stateDir);
      } catch (e) {
        if (moved) await closeServer(moved.app, HTTP_CLOSE_GRACE_MS);
        this.reject((e as Error).message, { stateDir: config.stateDir });
        return;
      }
    }
    if (this.stopping) {
      if (moved) await closeServer(moved.app, HTTP_CLOSE_GRACE_MS);
      await newLock?.release();
      return;
    }

    // 2. Commit: from here on nothing can make the new config invalid.
    this.config = config;
    this.configSource = source;
    if (!this.hostInjected && JSON.stringify(config.hostCommandPrefix) !== JSON.stringify(old.hostCommandPrefix)) {
      this.host = new RealHost({ commandPrefix: config.hostCommandPrefix, clock: this.clock });
    }
    if (moved && this.server) {
      const previous = this.server.app;
      this.server = { app: moved.app, listen: config.http.listen };
      this.address = moved.url;
      await closeServer(previous, HTTP_CLOSE_GRACE_MS);
    }

    // Checks: a check whose inputs did not change keeps running (its follower, its window, its verdict).
    const wanted = new Set(CHECK_DEFINITIONS.filter((d) => config.checks[d.id]?.enabled).map((d) => d.id));
    const kept = this.checks.filter((c) => wanted.has(c.id) && checkKey(config, c.id) === checkKey(old, c.id));
    const dropped = this.checks.filter((c) => !kept.includes(c));
    const toBuild = [...wanted].filter((id) => !kept.some((c) => c.id === id));
    let built: ActiveCheck[] = [];
    if (dropped.length || toBuild.length) {
      // A dropped check may be running in the sweep in progress: let that sweep finish (each check is bounded).
      if (dropped.length) await this.sweeping?.run;
      await this.closeRequesters(dropped);
      await this.stopChecks(dropped);
      built = this.buildChecks(toBuild);
      const order = CHECK_DEFINITIONS.map((d) => d.id);
      this.checks = [...kept, ...built].sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
      for (const c of dropped) {
        if (!wanted.has(c.id)) {
          this.latest.delete(c.id);
          this.metrics.forget(c.id);
        }
      }
      await this.startChecks(built);
    }

    // Remediation: kept whole unless its inputs changed; then the drain is aborted first.
    const remediationChanged = remediationKey(config) !== remediationKey(old);
    if (remediationChanged && !this.stopping) {
      await this.kubernetes.stop();
      await this.remediator.stop();
      this.countRemediators(-1);
      const oldLock = newLock ? this.lock : undefined;
      if (newLock) this.lock = newLock;
      await oldLock?.release();
      this.kubernetes = this.makeKubernetes();
      this.remediator = this.makeRemediator();
      await this.kubernetes.onStartup();
      await this.remediator.start();
      this.countRemediators(+1);
    }
    // A lock taken for a new stateDir that did not come into use (a stop came first) is given back.
    if (newLock && this.lock !== newLock) await newLock.release();
    if (this.task && config.schedule !== old.schedule) this.schedule();
    const outcome: ReloadOutcome = {
      applied: true,
      kept: kept.map((c) => c.id),
      rebuilt: built.map((c) => c.id),
      remediation: remediationChanged ? 'rebuilt' : 'kept',
      listener: moved ? 'moved' : 'kept',
    };
    this.reloads.applied++;
    this.metrics.reloaded('applied');
    this.logger.info({ config: this.configSource, mode: config.remediation.mode, ...outcome, url: this.address }, 'configuration reloaded');
    this.emit('reloaded', outcome);
  }

  /**
   * Stops, in reverse order of danger: the schedule; a drain in flight is aborted and rolled back
   * (uncordon if ours, release the slot) before anything else; then the remediator, the checks
   * (each bounded: a check stuck on a hung mount is abandoned and reported) and the listener
   * (requests in flight get HTTP_CLOSE_GRACE_MS, then every connection is dropped). A start or a
   * reload in progress ends at its next step. Idempotent.
   */
  stop(): Promise<StopReport> {
    this.stopped ??= this.stopAll();
    return this.stopped;
  }

  private async stopAll(): Promise<StopReport> {
    this.stopping = true;
    // A reload waiting for a start that never came ends (it sees `stopping`).
    this.settleStart();
    this.reloadWanted = undefined;
    this.task?.destroy();
    this.task = undefined;
    if (!this.serving) {
      await this.closeRequesters(this.checks);
      return { stuck: await this.stopChecks(this.checks) };
    }
    // The drain first: its rollback talks to the API server, and systemd's TimeoutStopSec runs.
    const k8s = this.kubernetes;
    const abortDrain = k8s.stop().catch((e: unknown) => this.logger.error({ err: e }, 'stopping the Kubernetes side failed'));
    // A sweep in progress ends now (its checks are cut short); a start or reload in progress
    // notices `stopping` at its next step.
    this.sweeper.abortAll();
    await this.op;
    await abortDrain;
    if (this.kubernetes !== k8s) await this.kubernetes.stop().catch(() => undefined);
    await this.remediator.stop();
    if (this.liveRemediators > 0) this.countRemediators(-1);
    await this.closeRequesters(this.checks);
    const stuck = await this.stopChecks(this.checks);
    // A run cut short by abortAll() usually returns at once; one that does not within the grace is
    // stuck (a call in the kernel on a hung mount).
    await settlesWithin(this.sweeper.drained(), CHECK_STOP_WAIT_MS);
    for (const id of this.sweeper.running()) if (!stuck.includes(id)) stuck.push(id);
    if (this.server) await closeServer(this.server.app, HTTP_CLOSE_GRACE_MS);
    this.server = undefined;
    await this.lock?.release();
    this.lock = undefined;
    return { stuck };
  }
}
