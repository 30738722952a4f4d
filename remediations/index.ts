import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Clock } from '../platform/clock.js';
import type { RemediationConfig as Config } from './config.js';
import { parseDuration } from '../platform/duration.js';
import { ConfigError } from '../platform/errors.js';
import type { Host } from '../platform/host.js';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import type { CheckResult } from '../checks/types.js';
import { readUnitFacts, restartUnit, unitBetweenStates } from './actions.js';
import { evidenceCollectorFor, type EvidenceCollector } from './evidence.js';
import { NEVER_TRIGGERS, remediationProblems } from './config.js';
import { applyOutcome, decide, emptyState, judgeInterrupted, pauseActive, type Decision, type LadderPolicy } from './decide.js';
import { LadderMetrics } from './metrics.js';
import { clearApproval, readApproval } from './approval.js';
import { readPause } from './pause.js';
import { maintenanceGate, maintenanceStatus, readMaintenance } from './maintenance.js';
import { reexecSystemd } from './reexec.js';
import { createRebootRequester } from './reboot-request.js';
import { StateStore } from './state.js';
import type { ActionOutcome, ActionRecord, ActionRecorder, ApprovalAnswer, DrainRebooter, LadderState, PauseState, Proposal, Remediator, UnitFacts } from './types.js';
import { settlesWithin } from '../platform/deadline.js';

/** What the agent hands the remediation component. */
export interface RemediatorDeps {
  config: Config;
  host: Host;
  logger: Logger;
  recordAction: ActionRecorder;
  /** The last step's implementation; without Kubernetes it only records a reboot request. */
  drainRebooter?: DrainRebooter;
  /**
   * Runs the given checks now (outside the schedule) and returns their results; used to judge a step
   * the moment settle ends (and to start an episode the moment grace ends) instead of at the next
   * scheduled sweep. Without it, judgments happen on the first sweep after the deadline.
   */
  requestSweep?: (only?: readonly string[]) => Promise<readonly CheckResult[]>;
  /** Default: the host's clock. */
  clock?: Clock;
  /**
   * The agent's metrics registry; the ladder adds its episode and budget series there
   * (remediations/metrics.ts). Without it only `recordAction` is counted.
   */
  registry?: Registry;
}

const BOOT_ID = '/proc/sys/kernel/random/boot_id';
/** How many recent actions `/status` shows (the state file keeps 100). */
const STATUS_ACTIONS = 20;
/** On stop, how much longer than the command timeout to wait for an action in flight before abandoning it. */
const STOP_GRACE_MS = 5000;
/** At start, how long an interrupted restart may still be under way before it is judged anyway. */
const INTERRUPTED_SETTLE_MAX_MS = 30_000;
/** How far before an episode's start its evidence bundle's journals begin (a trigger's window plus grace). */
const EVIDENCE_LOOKBACK_MS = 15 * 60_000;

/** The ladder's policy from the config and the current pause. */
export function ladderPolicy(config: Config, pause: PauseState | null): LadderPolicy {
  const r = config.remediation;
  const unit = (check: string, fallback: string): string => {
    const u = config.checks[check]?.unit;
    return typeof u === 'string' && u ? u : fallback;
  };
  return {
    mode: r.mode,
    graceMs: parseDuration(r.grace),
    settleMs: parseDuration(r.settle),
    triggers: r.triggers.filter((t) => !NEVER_TRIGGERS.includes(t)),
    steps: r.steps,
    firstStep: r.firstStep,
    restartsPerHour: r.restartsPerHour,
    rebootsPerDay: r.rebootsPerDay,
    reexecsPerDay: r.reexecsPerDay,
    allowRuntimeRestartWithoutLiveRestore: r.allowRuntimeRestartWithoutLiveRestore,
    units: { kubelet: unit('kubelet', 'kubelet'), docker: unit('docker', 'docker'), containerd: unit('containerd', 'containerd') },
    pause,
    retryInitialMs: parseDuration(r.retryBackoff.initial),
    retryMaxMs: parseDuration(r.retryBackoff.max),
    approvalSteps: r.approval.steps,
    approvalExpiryMs: parseDuration(r.approval.expiry),
  };
}

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/**
 * The remediation ladder (issue 4): after every sweep, `decide()` says what to do; this carries it
 * out, persisting the intent before acting and the outcome after, so that a crash never repeats or
 * loses an action. Decisions are serialized; an action runs in the background so that a slow
 * `systemctl restart` never holds up the sweep loop.
 */
class LadderRemediator implements Remediator {
  private state: LadderState = emptyState();
  private readonly store: StateStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly rebooter: DrainRebooter;
  private readonly commandTimeoutMs: number;
  private latest = new Map<string, CheckResult>();
  private pause: PauseState | null = null;
  /** `nodemedic maintain` in progress (or failed), read before every decision like the pause. */
  private maintenance: Awaited<ReturnType<typeof readMaintenance>> = { maintenance: null };
  private bootId: string | undefined;
  private started = false;
  private stopped = false;
  /** Decisions and outcome writes, one at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private inflight: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private nextDecisionAt: number | null = null;
  private waitingFor: string | null = null;
  private lastError: string | null = null;
  /** A drain-reboot issued its reboot: no further decision in this boot (the next start judges it). */
  private rebootIssued = false;
  /** The state file was found corrupt at start and replaced: shown on /status until the agent restarts. */
  private stateFileNotice: string | null = null;
  /** start() ran (successfully or not); afterSweep retries a failed one. */
  private startAttempted = false;
  /** Set when stop() gave up waiting for an action: this instance then never writes state again. */
  private abandoned = false;
  /** The evidence bundle of the waiting proposal, for `/status`. */
  private proposalEvidence: string | null = null;
  private readonly metrics: LadderMetrics | undefined;
  private readonly evidence: EvidenceCollector;

  constructor(private readonly deps: RemediatorDeps) {
    const problems = remediationProblems(deps.config.remediation, CHECK_DEFINITIONS.map((d) => d.id));
    if (problems.length) throw new ConfigError('remediation', problems);
    this.clock = deps.clock ?? deps.host.clock;
    this.logger = deps.logger;
    this.store = new StateStore(deps.config.stateDir, deps.logger);
    this.rebooter = deps.drainRebooter ?? createRebootRequester(deps.logger, deps.recordAction);
    this.commandTimeoutMs = parseDuration(deps.config.remediation.commandTimeout);
    this.metrics = deps.registry
      ? new LadderMetrics(deps.registry, { state: () => this.state, policy: () => this.policy(), now: () => this.clock.now(), waiting: () => this.waitingReasons() })
      : undefined;
    // Issue 16: what an action destroys is captured first, within `remediation.evidence.timeout`, never failing it.
    this.evidence = evidenceCollectorFor(deps.config, deps.host, deps.logger.child({ component: 'evidence' }), {
      status: () => ({ remediation: this.status(), checks: [...this.latest.values()] }),
    });
  }

  private policy(): LadderPolicy {
    return ladderPolicy(this.deps.config, this.pause);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.startAttempted = true;
    try {
      await this.serial(async () => {
        const now = this.clock.now();
        const loaded = await this.store.load(now);
        this.state = loaded.state;
        // Kept for the life of this agent, not cleared by the next good decision: an operator must
        // learn that the budget history was lost, whenever they look at /status.
        if (loaded.corrupt) this.stateFileNotice = `state file was corrupt (${loaded.corrupt.error}); kept at ${loaded.corrupt.keptAt}; budgets restarted conservatively`;
        this.lastError = null;
        this.bootId = await this.deps.host
          .readFile(this.deps.config.remediation.bootIdFile || BOOT_ID, 4096)
          .then((s) => s.trim() || undefined)
          .catch(() => undefined);
        this.pause = await readPause(this.deps.config.stateDir);
        await this.resolveInterrupted();
        const ep = this.state.episode;
        if (ep?.state === 'active') {
          this.logger.info(
            { episodeId: ep.id, step: ep.ladder[ep.stepIndex], phase: ep.phase, judgeAt: iso(ep.judgeAt) },
            'resuming remediation episode from the state file',
          );
        }
      });
    } catch (e) {
      // Without its state the ladder cannot know its budgets or what it already did: it stays idle.
      this.lastError = `cannot load remediation state (remediation takes no action; tried again after every sweep): ${(e as Error).message}`;
      this.logger.error({ err: e, stateDir: this.deps.config.stateDir }, 'remediation idle: cannot load its state; retrying after every sweep');
      return;
    }
    this.started = true;
  }

  /**
   * Actions whose intent was written but not their outcome: the agent died while carrying them out.
   * Each is judged from what the node says now (unit start time, boot id), never carried out again.
   */
  private async resolveInterrupted(): Promise<void> {
    const pending = this.state.actions.filter((a) => !a.outcome);
    if (!pending.length) return;
    let next = this.state;
    const outcomes: [ActionRecord, ActionOutcome][] = [];
    for (const a of pending) {
      const facts = a.unit && a.step !== 'drain-reboot' ? await this.settledFacts(a.unit) : undefined;
      const outcome = judgeInterrupted(a, facts, this.bootId, this.clock.now());
      next = applyOutcome(next, a.id, outcome, this.policy());
      outcomes.push([a, outcome]);
    }
    await this.store.save(next);
    this.state = next;
    for (const [a, o] of outcomes) {
      if (a.action && a.step !== 'drain-reboot') this.deps.recordAction(a.action, o.result);
      this.logger.warn({ episodeId: a.episodeId, step: a.step, action: a.action, unit: a.unit, result: o.result, detail: o.detail }, 'interrupted action judged after restart');
    }
  }

  /**
   * A unit's facts once it is no longer between states: a restart ordered just before the agent died
   * may still be running (a slow stop), and judging it half-way would call it failed.
   */
  private async settledFacts(unit: string): Promise<UnitFacts | { error: string }> {
    const deadline = this.clock.now() + Math.min(this.commandTimeoutMs, INTERRUPTED_SETTLE_MAX_MS);
    for (;;) {
      const f = await readUnitFacts(this.deps.host, unit);
      if ('error' in f || !unitBetweenStates(f) || this.clock.now() >= deadline) return f;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  async afterSweep(results: readonly CheckResult[]): Promise<void> {
    this.latest = new Map(results.map((r) => [r.check, r]));
    // A state that could not be loaded (a directory in its place, a hung disk) is tried again: the
    // operator's fix takes effect without restarting the agent.
    if (!this.started && !this.stopped && this.startAttempted) await this.start();
    if (!this.started || this.stopped) return;
    await this.decideNow();
  }

  /** One decision (serialized); never throws. */
  private decideNow(): Promise<void> {
    return this.serial(async () => {
      // After `systemctl reboot` was issued, the machine is going down: judging the step now (before
      // the boot) would call a reboot that has not happened yet a failure.
      if (this.stopped || this.inflight || this.rebootIssued) return;
      try {
        await this.decideLocked();
      } catch (e) {
        this.lastError = `decision failed: ${(e as Error).message}`;
        this.logger.error({ err: e }, 'remediation decision failed');
      }
    });
  }

  private async decideLocked(): Promise<void> {
    this.pause = await readPause(this.deps.config.stateDir);
    if (this.pause?.error) this.logger.error({ error: this.pause.error }, 'pause file unreadable: staying paused');
    this.maintenance = await readMaintenance(this.deps.config.stateDir);
    const gate = maintenanceGate(this.state.episode?.state === 'active', [...this.latest.values()], this.maintenance.maintenance);
    if ('hold' in gate) {
      [this.waitingFor, this.nextDecisionAt] = [gate.hold, null];
      return;
    }
    const policy = this.policy();
    const units: Record<string, UnitFacts | { error: string }> = {};
    const results = gate.results;
    const proposed = this.state.proposal ?? null;
    const approval = await this.answerTo(proposed);
    let d: Decision;
    for (let round = 0; ; round++) {
      const now = this.clock.now();
      d = decide(this.state, { results, units, approval }, now, policy);
      if (d.next.kind !== 'need') break;
      if (round > 5) throw new Error(`decide kept asking for unit facts: ${d.next.units.join(', ')}`);
      for (const u of d.next.units) units[u] = await readUnitFacts(this.deps.host, u);
    }
    if (d.next.kind === 'act' && d.next.action.step === 'drain-reboot' && this.bootId) {
      const id = d.next.action.id;
      d.next.action.bootId = this.bootId;
      const rec = d.state.actions.find((a) => a.id === id);
      if (rec) rec.bootId = this.bootId;
    }
    if (JSON.stringify(d.state) !== JSON.stringify(this.state)) {
      try {
        await this.store.save(d.state);
      } catch (e) {
        // Acting without a durable intent could repeat the action after a crash: do nothing now.
        this.lastError = `cannot write ${this.store.path}: ${(e as Error).message}`;
        this.logger.error({ err: e, stateFile: this.store.path }, 'cannot persist remediation state; taking no action');
        return;
      }
    }
    this.state = d.state;
    this.lastError = null;
    for (const r of d.recorded) if (r.action) this.deps.recordAction(r.action, 'skipped');
    for (const ep of d.ended) this.metrics?.episodeEnded(d.state, ep);
    this.log(d);
    const next = d.next;
    this.nextDecisionAt = next.kind === 'wait' ? next.until : next.kind === 'propose' ? next.proposal.expiresAt : null;
    this.waitingFor = next.kind === 'wait' || next.kind === 'none' ? next.why : next.kind === 'propose' ? `approval of ${next.proposal.step} (proposal ${next.proposal.id})` : null;
    if (proposed && d.state.proposal?.id !== proposed.id) await this.proposalEnded(proposed, d);
    if (next.kind === 'act') {
      const action = next.action;
      this.inflight = this.carryOut(action).finally(() => {
        this.inflight = null;
      });
    } else if (next.kind === 'propose') {
      this.inflight = this.propose(next.proposal).finally(() => {
        this.inflight = null;
      });
    } else if (next.kind === 'wait' && next.until !== null) {
      this.schedule(next.until);
    }
  }

  /**
   * `mode: approve`: the answer to the waiting proposal, from `nodemedic approve` on this node
   * (approval.json) or from the Node's annotation. Only an answer naming this proposal counts.
   */
  private async answerTo(p: Proposal | null): Promise<ApprovalAnswer | null> {
    if (!p) return null;
    const local = await readApproval(this.deps.config.stateDir);
    if (local && 'error' in local) this.logger.warn({ proposal: p.id }, local.error);
    else if (local?.id === p.id) return local;
    return (await this.rebooter.approvalFromCluster?.(p.id)) ?? null;
  }

  /**
   * The evidence bundle before an action or a proposal, or why there is none. Journals from before
   * the episode: the lines that made the triggers fail came before grace ended.
   */
  private async collectEvidence(label: string, episodeId: string, reason: string, at: number): Promise<{ path?: string | undefined; error?: string | undefined }> {
    if (!this.deps.config.remediation.evidence.enabled) return { path: undefined, error: 'off (remediation.evidence.enabled: false)' };
    const since = (this.state.episode?.startedAt ?? at) - EVIDENCE_LOOKBACK_MS;
    return this.evidence.collect({ label, sinceMs: since, episodeId, reason });
  }

  /** A new proposal: its evidence first (what a person decides on), then shown on the Node; judged again when it lapses. */
  private async propose(p: Proposal): Promise<void> {
    const evidence = await this.collectEvidence(`proposal-${p.step}`, p.episodeId, p.reason, p.proposedAt);
    this.proposalEvidence = evidence.path ?? null;
    await this.rebooter.proposal?.(p, evidence.path);
    this.logger.warn(
      { episodeId: p.episodeId, step: p.step, proposal: p.id, expiresAt: iso(p.expiresAt), evidence: evidence.path ?? evidence.error },
      `${p.step} waits for approval: \`nodemedic approve\` runs it, \`nodemedic reject\` drops it`,
    );
    this.schedule(p.expiresAt);
  }

  /** The proposal was answered, lapsed or dropped with its episode: off the Node; a rejection told as an Event. */
  private async proposalEnded(p: Proposal, d: Decision): Promise<void> {
    this.proposalEvidence = null;
    const rejected = d.recorded.find((r) => r.episodeId === p.episodeId && r.step === p.step && r.outcome?.result === 'skipped');
    if (rejected?.outcome) await this.rebooter.stepEvent?.({ step: p.step, mode: 'approve', result: 'skipped', detail: rejected.outcome.detail });
    // A new proposal replaces the annotation itself (propose); otherwise it goes.
    if (!d.state.proposal) await this.rebooter.proposal?.(null);
    await clearApproval(this.deps.config.stateDir).catch((e: unknown) => this.logger.warn({ err: (e as Error).message }, 'cannot remove the used approval file'));
  }

  private log(d: Decision): void {
    const n = d.next;
    const fields: Record<string, unknown> = {
      episodeId: d.log.episodeId,
      step: d.log.step,
      decision: n.kind,
      ...(d.log.events.length ? { events: d.log.events } : {}),
      ...(n.kind === 'wait' ? { until: iso(n.until), why: n.why } : {}),
      ...(n.kind === 'none' ? { why: n.why } : {}),
      ...(n.kind === 'act' ? { action: n.action.action, unit: n.action.unit, mode: n.action.mode, reason: n.action.reason } : {}),
    };
    // A clock step that made budget entries "future" is worth a warning whatever the decision.
    const level = d.log.events.some((e) => e.includes('dated in the future')) && (d.log.level === 'debug' || d.log.level === 'info') ? 'warn' : d.log.level;
    this.logger[level](fields, d.log.msg);
  }

  /** A timer at the next deadline: run the trigger checks then (if the agent can) and decide. */
  private schedule(until: number): void {
    clearTimeout(this.timer);
    if (!this.deps.requestSweep || this.stopped) return;
    const delay = Math.max(0, until - this.clock.now()) + 20;
    this.timer = setTimeout(() => void this.onTimer(), Math.min(delay, 2 ** 31 - 1));
    this.timer.unref();
  }

  private async onTimer(): Promise<void> {
    if (this.stopped || !this.deps.requestSweep) return;
    try {
      // Not under the decision queue: the agent's sweep may be running and waiting for afterSweep.
      const fresh = await this.deps.requestSweep(this.policy().triggers);
      if (this.stopped) return;
      for (const r of fresh) this.latest.set(r.check, r);
    } catch (e) {
      this.logger.warn({ err: e }, 'requested sweep failed; judging on the next scheduled sweep');
      return;
    }
    await this.decideNow();
  }

  private async carryOut(a: ActionRecord): Promise<void> {
    let outcome: ActionOutcome;
    let threw = false;
    const evidence = await this.collectEvidence(a.step, a.episodeId, a.reason, a.intentAt);
    try {
      // The reason travels into the drain-reboot's Events and cordon annotation: name the bundle there.
      outcome = await this.execute(evidence.path ? { ...a, reason: `${a.reason}; evidence: ${evidence.path}` } : a);
    } catch (e) {
      threw = true;
      outcome = { result: 'failure', detail: `${a.step} failed: ${(e as Error).message}`, at: this.clock.now() };
    }
    outcome.detail += evidence.path ? ` (evidence: ${evidence.path})` : ` (no evidence bundle: ${evidence.error ?? 'not written'})`;
    // The drain-reboot tells its own story in Events; restarts and reexecs are told here, bundle named.
    if (a.step !== 'drain-reboot') await this.rebooter.stepEvent?.({ step: a.step, ...(a.unit ? { unit: a.unit } : {}), mode: a.mode, result: outcome.result, detail: outcome.detail });
    await this.serial(async () => {
      if (this.stopped && this.abandoned) return;
      const next = applyOutcome(this.state, a.id, outcome, { ...this.policy(), retryJitter: Math.random() });
      try {
        await this.store.save(next);
      } catch (e) {
        // Kept in memory; if the agent dies before a later save, the next start judges the intent.
        this.lastError = `cannot write ${this.store.path}: ${(e as Error).message}`;
        this.logger.error({ err: e, stateFile: this.store.path }, 'cannot persist an action outcome');
      }
      this.state = next;
      if (a.step === 'drain-reboot' && a.mode === 'enforce' && outcome.result === 'success') this.rebootIssued = true;
      // The DrainRebooter counts its own actions (types.ts); restarts are counted here.
      if (a.action && (a.step !== 'drain-reboot' || threw)) this.deps.recordAction(a.action, outcome.result);
      const level = outcome.result === 'failure' ? 'error' : outcome.result === 'skipped' ? 'warn' : 'info';
      const ep = next.episode;
      this.logger[level](
        { episodeId: a.episodeId, step: a.step, action: a.action, unit: a.unit, mode: a.mode, result: outcome.result, detail: outcome.detail, judgeAt: iso(ep?.judgeAt) },
        `${a.step}: ${outcome.result}`,
      );
      if (ep?.state === 'active' && ep.judgeAt !== null) {
        this.nextDecisionAt = ep.judgeAt;
        this.waitingFor = `settling after ${a.step}`;
        this.schedule(ep.judgeAt);
      }
    });
  }

  private async execute(a: ActionRecord): Promise<ActionOutcome> {
    const at = (o: { result: ActionOutcome['result']; detail: string }): ActionOutcome => ({ ...o, at: this.clock.now() });
    if (a.step === 'drain-reboot') {
      const r = await this.rebooter.requestDrainReboot({ episodeId: a.episodeId, reason: a.reason, dryRun: a.mode === 'dry-run' });
      return { ...at({ result: r.result, detail: r.detail }), ...(r.retry ? { retry: true } : {}) };
    }
    if (a.step === 'reexec-systemd') {
      // issue 15: see remediations/reexec.ts; the bus timeout and /proc view are the systemd check's.
      if (a.mode === 'dry-run') return at({ result: 'dry_run', detail: 'dry-run: would run systemctl daemon-reexec (kill -s TERM 1 if the bus does not answer)' });
      const sd: Record<string, unknown> = this.deps.config.checks.systemd ?? {};
      const r = this.deps.config.remediation;
      return at(
        await reexecSystemd(this.deps.host, {
          busTimeoutMs: parseDuration(typeof sd.timeout === 'string' ? sd.timeout : '10s'),
          timeoutMs: this.commandTimeoutMs,
          procPath: typeof sd.procPath === 'string' ? sd.procPath : '/proc',
          ...(r.killStuckRuncAfter ? { killStuckRuncAfterMs: parseDuration(r.killStuckRuncAfter) } : {}),
        }),
      );
    }
    if (!a.unit) return at({ result: 'skipped', detail: 'nothing to restart' });
    if (a.step === 'restart-runtime' && this.rebooter.runtimeRestartAllowed) {
      // A cluster-wide cause (a bad runtime rollout, a registry outage) must not restart every node's runtime at once.
      const gate = await this.rebooter.runtimeRestartAllowed();
      if (!gate.ok) return { ...at({ result: 'skipped', detail: `not restarting ${a.unit}: ${gate.detail}` }), retry: true };
    }
    if (a.mode === 'dry-run') return at({ result: 'dry_run', detail: `dry-run: would run systemctl restart ${a.unit}` });
    return at(await restartUnit(this.deps.host, a.unit, { timeoutMs: this.commandTimeoutMs }));
  }

  /** Why remediation is waiting without progress: `retrying` (a refused step, backing off), and the rebooter's own. */
  private waitingReasons(): string[] {
    const out: string[] = [];
    if (this.state.episode?.state === 'active' && this.state.episode.phase === 'retrying') out.push('retrying');
    const w = this.rebooter.waiting?.();
    if (w) out.push(w);
    return out;
  }

  status(): Record<string, unknown> {
    const now = this.clock.now();
    const s = this.state;
    const policy = this.policy();
    const ep = s.episode;
    const used = (times: number[], window: number): number => times.filter((t) => now - t < window).length;
    const restartsUsed: Record<string, number> = {};
    for (const [unit, times] of Object.entries(s.budgets.restarts)) restartsUsed[unit] = used(times, 3_600_000);
    return {
      mode: policy.mode,
      paused: pauseActive(this.pause, now),
      maintenance: maintenanceStatus(this.maintenance),
      pause: this.pause ? { since: iso(this.pause.since), until: iso(this.pause.until), reason: this.pause.reason, ...(this.pause.error ? { error: this.pause.error } : {}) } : null,
      episode: ep
        ? {
            id: ep.id,
            trigger: ep.trigger,
            triggers: ep.triggers,
            reason: ep.reason,
            startedAt: iso(ep.startedAt),
            step: ep.ladder[Math.min(ep.stepIndex, ep.ladder.length - 1)] ?? null,
            stepStartedAt: iso(ep.stepStartedAt),
            phase: ep.phase,
            ...(ep.retries ? { retries: ep.retries } : {}),
            nextDecisionAt: ep.state === 'active' ? iso(ep.judgeAt ?? this.nextDecisionAt) : null,
            state: ep.state,
            ...(ep.endedAt !== undefined ? { endedAt: iso(ep.endedAt), endReason: ep.endReason } : {}),
          }
        : null,
      waitingFor: this.waitingFor,
      nextDecisionAt: iso(this.nextDecisionAt),
      pending: Object.fromEntries(Object.entries(s.problemSince).map(([t, since]) => [t, { problemSince: iso(since), graceEndsAt: iso(since + policy.graceMs) }])),
      exhausted: s.latch ? { episodeId: s.latch.episodeId, since: iso(s.latch.since), waitingForOk: s.latch.triggers } : null,
      ...(policy.mode === 'approve'
        ? {
            approval: { steps: policy.approvalSteps ?? [], expiry: this.deps.config.remediation.approval.expiry },
            proposal: s.proposal
              ? {
                  ...s.proposal,
                  proposedAt: iso(s.proposal.proposedAt),
                  expiresAt: iso(s.proposal.expiresAt),
                  evidence: this.proposalEvidence,
                  approveWith: ['nodemedic approve', `kubectl annotate node ${this.deps.config.nodeName} nodemedic.io/approve=${s.proposal.id}`],
                }
              : null,
          }
        : {}),
      rebootRequested: s.rebootRequest !== null,
      rebootRequest: s.rebootRequest ? { ...s.rebootRequest, at: iso(s.rebootRequest.at) } : null,
      budgets: {
        restartsPerHour: { limit: policy.restartsPerHour, used: restartsUsed },
        rebootsPerDay: { limit: policy.rebootsPerDay, used: used(s.budgets.reboots, 86_400_000), noRebootBefore: iso(s.budgets.noRebootBefore) },
        reexecsPerDay: { limit: policy.reexecsPerDay ?? 2, used: used(s.budgets.reexecs ?? [], 86_400_000) },
      },
      recentActions: s.actions
        .slice(-STATUS_ACTIONS)
        .reverse()
        .map((a) => ({
          id: a.id,
          episodeId: a.episodeId,
          step: a.step,
          action: a.action,
          ...(a.unit ? { unit: a.unit } : {}),
          mode: a.mode,
          at: iso(a.intentAt),
          reason: a.reason,
          result: a.outcome?.result ?? 'in_progress',
          ...(a.outcome ? { detail: a.outcome.detail, finishedAt: iso(a.outcome.at), ...(a.outcome.inferred ? { inferred: true } : {}) } : {}),
        })),
      stateFile: this.store.path,
      evidence: this.evidence.status(),
      ...(this.stateFileNotice ? { stateFileNotice: this.stateFileNotice } : {}),
      ...(this.lastError || this.stateFileNotice ? { error: this.lastError ?? this.stateFileNotice } : {}),
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const inflight = this.inflight;
    if (inflight) {
      if (!(await settlesWithin(inflight, this.commandTimeoutMs + STOP_GRACE_MS))) {
        // Its intent is on disk; the next start judges it. This instance must not write after that.
        this.abandoned = true;
        this.logger.warn('stopping with a remediation action still in flight; the next start will judge it');
      }
    }
    await this.queue;
    this.metrics?.close();
  }
}

/** The remediation component the agent runs. Throws ConfigError for an inconsistent `remediation` section. */
export function createRemediator(deps: RemediatorDeps): Remediator {
  return new LadderRemediator(deps);
}
