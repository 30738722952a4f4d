import { EventEmitter } from 'node:events';
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import type { CheckDefinition, CheckResult } from '../checks/types.js';
import { createRemediator } from '../remediations/index.js';
import { lazyKubeAccess } from '../platform/kube-client.js';
import { createKubernetesIntegration, type KubernetesIntegration } from '../remediations/kubernetes/index.js';
import type { DrainRebooter, Remediator } from '../remediations/types.js';
import { systemClock, type Clock } from '../platform/clock.js';
import type { Config } from './config.js';
import { parseDuration } from '../platform/duration.js';
import { RealHost, type Host } from '../platform/host.js';
import { AgentMetrics } from './metrics.js';
import { buildServer, parseListen } from './server.js';
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
}

/** Events: `sweep` (results) after every sweep; `ready` once serving and the first sweep finished. */
export interface AgentEvents {
  sweep: [results: CheckResult[]];
  ready: [];
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
 * remediation component, with a start/stop/reload lifecycle.
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
  private server: ReturnType<typeof buildServer> | undefined;
  /** The sweep in progress; `full` when it covers every check (only those feed remediation). */
  private sweeping: { run: Promise<CheckResult[]>; full: boolean } | undefined;
  private startedAt = 0;
  private lastSweepAt: number | undefined;
  private intervalMs = 15_000;
  private address: string | undefined;
  private readonly drainRebooter: DrainRebooter | undefined;
  /** Drain-reboot, post-boot recovery, Node conditions and events (remediations/kubernetes). */
  private kubernetes: KubernetesIntegration;
  /** Per check: the run the agent started whose result is not yet published (see `inTurn`). */
  private readonly turns = new Map<string, Promise<void>>();
  /** The `requestRun` triggers of the current checks. */
  private requesters: Requester[] = [];

  constructor(private readonly opts: AgentOptions) {
    super();
    this.config = opts.config;
    this.configSource = opts.configSource ?? '(inline)';
    this.logger = opts.logger;
    this.clock = opts.clock ?? systemClock;
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

  private makeRemediator(): Remediator {
    return createRemediator({
      config: this.config,
      host: this.host,
      logger: this.logger.child({ component: 'remediation' }),
      recordAction: this.metrics.recordAction,
      registry: this.metrics.registry,
      drainRebooter: this.drainRebooter ?? this.kubernetes.drainRebooter,
      requestSweep: (only) => this.sweep(only),
    });
  }

  private makeKubernetes(): KubernetesIntegration {
    return createKubernetesIntegration({ config: this.config, host: this.host, logger: this.logger, clock: this.clock, recordAction: this.metrics.recordAction });
  }

  private buildChecks(only?: readonly string[]): ActiveCheck[] {
    const out: ActiveCheck[] = [];
    // One lazily connected Kubernetes access per build, shared by the cluster-view checks; nothing is loaded unless one runs.
    const kube = lazyKubeAccess(this.config.kubernetes.kubeconfig);
    for (const def of CHECK_DEFINITIONS) {
      const options = this.config.checks[def.id];
      if (!options?.enabled || (only && !only.includes(def.id))) continue;
      const logger = this.logger.child({ check: def.id });
      const requester = coalescedRequester(() => this.runRequested(active), REQUESTED_RUN_MIN_GAP_MS, (e) => logger.error({ err: e }, 'requested run failed'));
      this.requesters.push(requester);
      const active: ActiveCheck = {
        id: def.id,
        check: def.create(options, { host: this.host, logger, nodeName: this.config.nodeName, kube, requestRun: requester.request, ...(this.opts.serve === false ? { oneShot: true } : {}) }),
        timeoutMs: checkRunTimeoutMs(def, options),
      };
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
    if (!this.checks.includes(c)) return;
    await this.inTurn(c.id, async () => {
      if (!this.checks.includes(c)) return;
      const [r] = await this.sweeper.sweep([c]);
      // Still running past its timeout: the scheduled sweeps report that; a request adds nothing.
      if (r && r.reason !== 'CheckStillRunning') this.publish(r);
    });
  }

  /** Cancels pending requested runs and waits for running ones (before checks are stopped). */
  private async closeRequesters(): Promise<void> {
    const rs = this.requesters;
    this.requesters = [];
    await Promise.all(rs.map((r) => r.close()));
  }

  private async startChecks(): Promise<void> {
    await Promise.all(
      this.checks.map(async (c) => {
        try {
          await c.check.start?.();
        } catch (e) {
          // A check whose background source cannot start reports `unknown` from run(); the agent goes on.
          this.logger.error({ check: c.id, err: e }, 'check failed to start');
        }
      }),
    );
  }

  private async stopChecks(checks: readonly ActiveCheck[]): Promise<void> {
    await Promise.all(
      checks.map(async (c) => {
        try {
          await c.check.stop?.();
        } catch (e) {
          this.logger.warn({ check: c.id, err: e }, 'check failed to stop cleanly');
        }
      }),
    );
  }

  /** Starts checks (only `only`, if given), and unless `serve: false`, the HTTP server, the schedule and remediation. */
  async start(only?: readonly string[]): Promise<void> {
    this.startedAt = this.clock.now();
    this.checks = this.buildChecks(only);
    await this.startChecks();
    if (this.opts.serve === false) return;
    // Finishes or rolls back a drain-reboot from before this start (or the reboot), before the ladder acts.
    await this.kubernetes.onStartup();
    await this.remediator.start();
    await this.listen();
    this.schedule();
    await this.sweep();
    this.logger.info({ url: this.address, mode: this.config.remediation.mode, checks: this.checks.map((c) => c.id), config: this.configSource }, 'nodemedic ready');
    this.emit('ready');
  }

  private async listen(): Promise<void> {
    const server = buildServer({
      healthy: () => this.healthy(),
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.render() }),
      status: () => this.status(),
    });
    const { host, port } = parseListen(this.config.http.listen);
    await server.listen({ host, port });
    const addr = server.server.address();
    if (addr && typeof addr === 'object') {
      const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      this.address = `http://${h === '0.0.0.0' ? '127.0.0.1' : h === '[::]' ? '[::1]' : h}:${addr.port}`;
    }
    this.server = server;
  }

  private schedule(): void {
    this.task?.destroy();
    this.task = cron.schedule(
      this.config.schedule,
      async () => {
        await this.sweep();
      },
      { noOverlap: true, name: 'nodemedic-sweep' },
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
    const targets = only ? this.checks.filter((c) => only.includes(c.id)) : this.checks;
    const run = Promise.all(targets.map((c) => this.inTurn(c.id, () => this.sweeper.sweep([c], (r) => this.publish(r))).then((rs) => rs[0]!)));
    const mine = { run, full: !only };
    this.sweeping = mine;
    try {
      const results = await run;
      if (!only) {
        this.lastSweepAt = this.clock.now();
        this.metrics.sweepFinished(this.lastSweepAt);
        this.emit('sweep', results);
        // Remediation acts on full sweeps only; a partial sweep is the ladder asking to judge a step.
        if (this.opts.serve !== false) await this.remediator.afterSweep(this.results());
        // Node conditions and post-boot recovery talk to the API server: never hold up the sweep loop.
        if (this.opts.serve !== false) void this.kubernetes.afterSweep(this.results());
      }
      return results;
    } catch (e) {
      this.logger.error({ err: e }, 'sweep failed');
      return [];
    } finally {
      if (this.sweeping === mine) this.sweeping = undefined;
    }
  }

  /** The latest result of every configured check, in the order of checks/index.ts. */
  results(): CheckResult[] {
    return this.checks.map((c) => this.latest.get(c.id)).filter((r): r is CheckResult => !!r);
  }

  healthy(): { ok: boolean; detail: string } {
    const since = this.lastSweepAt ?? this.startedAt;
    const age = this.clock.now() - since;
    const limit = 3 * this.intervalMs;
    if (age <= limit) return { ok: true, detail: 'sweeping' };
    return {
      ok: false,
      detail: this.lastSweepAt === undefined ? `no sweep finished in ${Math.round(age / 1000)}s since start` : `last sweep finished ${Math.round(age / 1000)}s ago (limit ${Math.round(limit / 1000)}s)`,
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
    };
  }

  /**
   * Applies a new, already validated config: checks and remediation are rebuilt, the schedule and
   * (if `http.listen` changed) the server restarted. Results of checks that remain are kept.
   */
  async reload(config: Config, source?: string): Promise<void> {
    const old = this.checks;
    const oldListen = this.config.http.listen;
    this.config = config;
    if (source) this.configSource = source;
    if (!this.hostInjected) this.host = new RealHost({ commandPrefix: config.hostCommandPrefix, clock: this.clock });
    await this.sweeping?.run;
    await this.closeRequesters();
    await this.stopChecks(old);
    await this.remediator.stop();
    await this.kubernetes.stop();
    this.checks = this.buildChecks();
    for (const c of old) {
      if (!this.checks.some((n) => n.id === c.id)) {
        this.latest.delete(c.id);
        this.metrics.forget(c.id);
      }
    }
    await this.startChecks();
    this.kubernetes = this.makeKubernetes();
    this.remediator = this.makeRemediator();
    await this.kubernetes.onStartup();
    await this.remediator.start();
    if (this.server && config.http.listen !== oldListen) {
      await this.server.close();
      await this.listen();
    }
    if (this.task) this.schedule();
    this.logger.info({ config: this.configSource, mode: config.remediation.mode }, 'configuration reloaded');
  }

  /** Stops the schedule, waits for a running sweep, then stops the server, remediation and checks. */
  async stop(): Promise<void> {
    this.task?.destroy();
    this.task = undefined;
    await this.sweeping?.run;
    await this.closeRequesters();
    await this.server?.close();
    this.server = undefined;
    await this.remediator.stop();
    await this.kubernetes.stop();
    await this.stopChecks(this.checks);
  }
}
