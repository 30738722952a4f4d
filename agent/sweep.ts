import type { Logger } from 'pino';
import type { Clock } from '../platform/clock.js';
import type { Check, CheckResult, Finding } from '../checks/types.js';

/** A configured, running check and how long one run may take. */
export interface ActiveCheck {
  readonly id: string;
  readonly check: Check;
  readonly timeoutMs: number;
}

/**
 * Runs checks concurrently, each under its own timeout. A check that hangs is reported `unknown`
 * (`CheckTimeout`) when its timeout expires and is not started again until its previous run returns,
 * so a hung daemon costs one stuck promise, never a growing pile of them.
 */
export class Sweeper {
  private readonly inFlight = new Map<string, Promise<Finding>>();
  /** Ends the wait of every run in progress (see `abortAll`). */
  private readonly aborters = new Set<() => void>();
  private aborted = false;

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /**
   * For a stopping agent: every run in progress is signalled to abort and answered `unknown`
   * (`AgentStopping`) at once, and later runs are not started. A run that ignores its signal (a
   * call stuck in the kernel) stays in `running()`.
   */
  abortAll(): void {
    this.aborted = true;
    for (const abort of [...this.aborters]) abort();
  }

  /** Ids of checks whose last run has not returned. */
  running(): string[] {
    return [...this.inFlight.keys()];
  }

  /** Resolves when every run in progress has returned (a caller bounds the wait). */
  async drained(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight.values()]);
  }

  /** Runs the given checks; `onResult` sees each result as soon as it is known. */
  async sweep(checks: readonly ActiveCheck[], onResult?: (r: CheckResult) => void): Promise<CheckResult[]> {
    return Promise.all(
      checks.map(async (c) => {
        const r = await this.runOne(c);
        onResult?.(r);
        return r;
      }),
    );
  }

  private async runOne(c: ActiveCheck): Promise<CheckResult> {
    const started = performance.now();
    const finish = (f: Finding): CheckResult => ({
      check: c.id,
      status: f.status,
      reason: f.reason,
      message: f.message,
      observedAt: new Date(this.clock.now()).toISOString(),
      durationSeconds: Math.round(performance.now() - started) / 1000,
      evidence: f.evidence ?? {},
    });
    if (this.inFlight.has(c.id)) {
      return finish({
        status: 'unknown',
        reason: 'CheckStillRunning',
        message: `the previous run of ${c.id} has not returned yet (it exceeded its ${c.timeoutMs} ms timeout)`,
      });
    }
    if (this.aborted) return finish({ status: 'unknown', reason: 'AgentStopping', message: 'the agent is stopping' });
    const ac = new AbortController();
    const run = Promise.resolve()
      .then(() => c.check.run(ac.signal))
      .catch((e: unknown): Finding => {
        this.logger.error({ check: c.id, err: e }, 'check threw');
        return { status: 'unknown', reason: 'CheckFailed', message: `${c.id} failed: ${(e as Error)?.message ?? String(e)}` };
      });
    this.inFlight.set(c.id, run);
    void run.finally(() => this.inFlight.delete(c.id));
    let timer: NodeJS.Timeout | undefined;
    let abort: (() => void) | undefined;
    const timedOut = new Promise<Finding>((resolve) => {
      timer = setTimeout(() => {
        ac.abort();
        resolve({ status: 'unknown', reason: 'CheckTimeout', message: `${c.id} did not finish within ${c.timeoutMs} ms` });
      }, c.timeoutMs);
      abort = () => {
        ac.abort();
        resolve({ status: 'unknown', reason: 'AgentStopping', message: `${c.id} was cut short: the agent is stopping` });
      };
      this.aborters.add(abort);
    });
    try {
      return finish(await Promise.race([run, timedOut]));
    } finally {
      clearTimeout(timer);
      if (abort) this.aborters.delete(abort);
    }
  }
}
