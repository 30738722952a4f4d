/**
 * The runbook's last resort, done by the node for itself, in kured's parts: the lock (lease.ts, a
 * reboot slot held from before the cordon until after the uncordon, across the reboot), the blockers
 * (guards.ts, blockers.ts: run while holding the slot), the drainer (cordon.ts, drain.ts), the reboot
 * (here), recovery after the boot (recovery.ts) and one undo routine (undo.ts: uncordon-if-ours, then
 * release). Every step writes the plan (plan.ts) first, so an agent killed anywhere finishes or undoes
 * the work on its next start.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.js';
import type { RemediationConfig as Config } from '../config.js';
import { formatDuration, parseDuration } from '../../platform/duration.js';
import type { Host } from '../../platform/host.js';
import type { CheckResult } from '../../checks/types.js';
import type { ActionName, ActionRecorder, ActionResult, ApprovalAnswer, DrainRebooter, Proposal } from '../types.js';
import type { KubeAccess, KubeApi } from '../../platform/kube-client.js';
import { answerOnNode, APPROVE_ANNOTATION, REJECT_ANNOTATION, showProposal } from './approval.js';
import { checkBlockers, stormOnly } from './blockers.js';
import { ConditionPublisher, desiredConditions, type RebootState } from './conditions.js';
import { cordon, CORDONED_BY, markOf } from './cordon.js';
import { drainPods, type DrainOutcome, type DrainProgress } from './drain.js';
import { EventRecorder, type NodeEvent } from './events.js';
import { publishMaintenanceCondition, type MaintenanceRequest } from './maintenance.js';
import { isReady, windowGuard, type GuardVerdict } from './guards.js';
import { monotonicNow, RebootLease, type Monotonic } from './lease.js';
import { PlanExistsError, PlanStore, type RebootPlan } from './plan.js';
import { planPods, describeBlocked } from './pods.js';
import { checksOk, lookAtRecovery, type NodeLook, type RecoveryLook } from './recovery.js';
import { undo, type UndoDeps } from './undo.js';
import { settlesWithin } from '../../platform/deadline.js';

export const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';

/** Knobs tests turn; production uses the defaults (kubectl's timings). */
export interface Tuning {
  /** Between evictions a PodDisruptionBudget refused. Default 5 s, as kubectl drain. */
  evictionRetryMs?: number;
  /** Between checks that an evicted pod is gone. Default 1 s, as kubectl drain. */
  podPollMs?: number;
  /** How often recovery after a boot looks at the Node and the checks. Default 10 s. */
  recoveryPollMs?: number;
  /** How long `systemctl reboot` may take to return. Default 60 s. */
  rebootCommandTimeoutMs?: number;
  /**
   * Least time between two looks for an orphan cordon of ours while one may exist: at start, and for
   * `ORPHAN_SUSPECT_MS` after a drain-reboot that did not end in a reboot (its cordon PATCH may have been
   * applied after we gave up on it). Default 30 s.
   */
  orphanCheckMs?: number;
  /** The same at other times (a cordon left by a lost state file, a person's mistake). Default 10 min. */
  orphanIdleCheckMs?: number;
  /** The clock for in-process intervals (Lease observation, recovery time). Default `performance.now()`. */
  monotonic?: Monotonic;
}

/** How long after a drain-reboot that did not reboot an orphan cordon is looked for often. */
const ORPHAN_SUSPECT_MS = 15 * 60_000;

/** How an episode's drain-reboot ended, for the ladder's records. */
export interface EpisodeEnd {
  episodeId: string;
  outcome: 'recovered' | 'recovery-failed' | 'rolled-back';
  detail: string;
}

export interface DrainRebootDeps {
  config: Config;
  host: Host;
  logger: Logger;
  clock: Clock;
  recordAction: ActionRecorder;
  /** Kubernetes access; undefined: none (then only `rebootWithoutDrain` can reboot). */
  kube: KubeAccess | undefined;
  /** Reads the current boot id; default `remediation.bootIdFile` through the host. */
  readBootId?: () => Promise<string>;
  tuning?: Tuning;
  /** Told when a drain-reboot episode ends after a boot or a rollback. */
  onEpisodeEnd?: (end: EpisodeEnd) => void;
  /** `source.component` of events. */
  component?: string;
}

export interface DrainRebootRequest {
  episodeId: string;
  reason: string;
  dryRun: boolean;
  /** `cli` for `nodemedic reboot`, `maintain` for `nodemedic maintain`. Default `agent`. */
  origin?: 'agent' | 'cli' | 'maintain';
  /**
   * `nodemedic maintain`: after the drain, the operator's work, then (with `reboot`) the reboot, or
   * (without) the wait for the node's health, the uncordon and the slot's release (maintain()).
   */
  maintenance?: MaintenanceRequest;
  /** Pod-by-pod progress and step messages, for the CLI. */
  onProgress?: (p: DrainProgress | { type: 'step'; message: string }) => void;
}

export interface DrainRebootResult {
  result: ActionResult;
  detail: string;
  /** Which guard refused, when one did. */
  refusedBy?: GuardVerdict & { ok: false };
  drain?: DrainOutcome;
  /** Worth trying again later while the trigger persists (refused, or failed before any reboot). */
  retry?: boolean;
  /** A maintenance's work failed, or the node was not healthy after it: the node stays cordoned (plan `maintenance-failed`). */
  maintenanceFailed?: boolean;
}

const DRAINING = new Set(['leasing', 'cordoning', 'draining']);

export class DrainRebootController implements DrainRebooter {
  private readonly api: KubeApi | undefined;
  private readonly store: PlanStore;
  private readonly events: EventRecorder | undefined;
  private readonly conditions: ConditionPublisher | undefined;
  private readonly lease: RebootLease | undefined;
  private readonly node: string;
  private readonly logger: Logger;
  private readonly mono: Monotonic;
  private inflight: Promise<unknown> | undefined;
  private drainAbort: AbortController | undefined;
  /** Aborts a maintenance's work (its command is stopped) when the controller is stopped. */
  private workAbort: AbortController | undefined;
  private recoveryTimer: NodeJS.Timeout | undefined;
  private lastResults: readonly CheckResult[] = [];
  private rebootState: RebootState | undefined;
  private lastOutcome: { at: string; result: ActionResult; detail: string } | undefined;
  private planCache: RebootPlan | undefined;
  private planError: string | undefined;
  private stopped = false;
  /** Why recovery is waiting without counting time (API unreachable, checks unknown); null when not. */
  private recoveryWaiting: string | null = null;
  private lastRecoveryLook: number | undefined;
  private lastOrphanCheck = -Infinity;
  /** Until then (monotonic) an orphan cordon is likely: looked for every `orphanCheckMs`. */
  private orphanSuspectUntil = -Infinity;

  constructor(private readonly d: DrainRebootDeps) {
    this.node = d.config.nodeName;
    this.logger = d.logger;
    this.mono = d.tuning?.monotonic ?? monotonicNow;
    this.store = new PlanStore(d.config.stateDir);
    this.api = d.kube?.api;
    if (this.api) {
      this.events = new EventRecorder(this.api, { name: this.node }, d.clock, d.logger, d.component ?? 'nodemedic');
      this.conditions = new ConditionPublisher(this.api, this.node, d.clock, d.logger, { heartbeatMs: parseDuration(d.config.kubernetes.conditionHeartbeat ?? '5m') });
      const leaseDuration = parseDuration(d.config.remediation.leaseDuration);
      this.lease = new RebootLease({
        api: this.api,
        namespace: d.config.remediation.leaseNamespace,
        slots: d.config.remediation.maxConcurrentReboots,
        identity: this.node,
        expiryMs: parseDuration(d.config.remediation.slotExpiry),
        renewEveryMs: Math.floor(leaseDuration / 3),
        renewDeadlineMs: leaseDuration,
        clock: d.clock,
        monotonic: this.mono,
        logger: d.logger,
        retryMs: Math.min(1000, Math.max(50, Math.floor(leaseDuration / 10))),
      });
    }
  }

  private get r(): Config['remediation'] {
    return this.d.config.remediation;
  }

  private async readBootId(): Promise<string> {
    if (this.d.readBootId) return (await this.d.readBootId()).trim();
    return (await this.d.host.readFile(this.r.bootIdFile || BOOT_ID_PATH, 4096)).trim();
  }

  private iso(): string {
    return new Date(this.d.clock.now()).toISOString();
  }

  private async event(ev: NodeEvent): Promise<void> {
    this.logger[ev.type === 'Warning' ? 'warn' : 'info']({ event: ev.reason }, ev.message);
    await this.events?.record(ev);
  }

  private action(name: ActionName, result: ActionResult): void {
    try {
      this.d.recordAction(name, result);
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'cannot record an action metric');
    }
  }

  private get undoDeps(): UndoDeps {
    return { api: this.api, node: this.node, lease: this.lease, store: this.store, logger: this.logger, event: (e) => this.event(e), action: (n, r) => this.action(n, r) };
  }

  private async savePlan(plan: RebootPlan): Promise<void> {
    plan.updatedAt = this.iso();
    await this.store.update(plan);
    this.planCache = plan;
  }

  /** The ladder's entry point; never throws. */
  async requestDrainReboot(req: { episodeId: string; reason: string; dryRun: boolean }): Promise<{ result: ActionResult; detail: string; retry?: boolean }> {
    const r = await this.run(req);
    return { result: r.result, detail: r.detail, ...(r.retry ? { retry: true } : {}) };
  }

  /**
   * Whether a container runtime may be restarted now: with Kubernetes access, only when the storm guard
   * passes (a cluster-wide cause must not restart every node's runtime at once). Never throws.
   */
  async runtimeRestartAllowed(): Promise<{ ok: boolean; detail: string }> {
    if (!this.api || !this.lease) return { ok: true, detail: 'no Kubernetes access: no storm guard' };
    const v = await stormOnly(this.api, this.lease, this.node, this.r);
    return { ok: v.ok, detail: v.detail };
  }

  /** An Event for a restart or a reexec of PID 1 (the drain-reboot writes its own). Never throws. */
  async stepEvent(ev: { step: string; unit?: string; mode: string; result: ActionResult; detail: string }): Promise<void> {
    const reexec = ev.step === 'reexec-systemd';
    const what = reexec ? 'systemd (PID 1) re-executed' : `${ev.unit ?? ev.step} restarted`;
    let e: NodeEvent;
    if (ev.result === 'dry_run') e = { reason: 'NodemedicDryRun', type: 'Normal', message: `${ev.step}: ${ev.detail}` };
    else if (ev.result === 'success') e = { reason: reexec ? 'NodemedicReexec' : 'NodemedicRestart', type: 'Normal', message: `${what}: ${ev.detail}` };
    else if (ev.result === 'skipped') e = { reason: 'NodemedicStepSkipped', type: 'Normal', message: `${ev.step} not taken: ${ev.detail}` };
    else e = { reason: reexec ? 'NodemedicReexecFailed' : 'NodemedicRestartFailed', type: 'Warning', message: `${ev.step} failed: ${ev.detail}` };
    // EventRecorder.record logs and swallows API errors.
    await this.event(e);
  }

  /** `mode: approve`: shows the proposal on the Node (annotation, Event) or removes it (null). Never throws. */
  async proposal(p: Proposal | null, evidence?: string): Promise<void> {
    if (!this.api) return;
    try {
      await showProposal(this.api, this.node, p);
    } catch (e) {
      this.logger.warn({ err: (e as Error).message, proposal: p?.id }, 'cannot show the proposal on the Node');
    }
    if (!p) return;
    const how = `approve with \`nodemedic approve\` on the node or \`kubectl annotate node ${this.node} ${APPROVE_ANNOTATION}=${p.id}\` (reject: ${REJECT_ANNOTATION})`;
    await this.event({
      reason: 'NodemedicApprovalRequired',
      type: 'Warning',
      message: `${p.step} proposed as ${p.id}, waiting for approval until ${new Date(p.expiresAt).toISOString()}: ${p.reason}${evidence ? `; evidence: ${evidence}` : ''}; ${how}`,
    });
  }

  /** The answer to proposal `id` on the Node (one GET, made only while a proposal waits); null when none or unreadable. */
  async approvalFromCluster(id: string): Promise<ApprovalAnswer | null> {
    if (!this.api) return null;
    try {
      return answerOnNode(await this.api.getNode(this.node), id);
    } catch (e) {
      this.logger.debug({ err: (e as Error).message }, 'cannot read the Node for an answer to the proposal');
      return null;
    }
  }

  /** Why the drain-reboot side is waiting without making progress, for the ladder's metric; null when not. */
  waiting(): string | null {
    return this.recoveryWaiting ? 'recovery-unknown' : null;
  }

  /** The whole drain-reboot with details (the CLI prints them); never throws. */
  async run(req: DrainRebootRequest): Promise<DrainRebootResult> {
    if (this.inflight) return this.finish({ result: 'skipped', detail: 'a drain-reboot is already running in this agent', retry: true });
    if (this.stopped) return this.finish({ result: 'skipped', detail: 'the agent is stopping', retry: true });
    const p = this.runUnlocked(req).catch(async (e: unknown): Promise<DrainRebootResult> => {
      this.logger.error({ err: e }, 'drain-reboot failed unexpectedly');
      const why = `unexpected error: ${(e as Error).message}`;
      const plan = this.planCache;
      // A cordon or Lease taken before the error must not outlive it.
      if (plan && DRAINING.has(plan.phase)) return this.rollback(plan, why, 'failure');
      return { result: 'failure', detail: why, retry: true };
    });
    this.inflight = p;
    try {
      return this.finish(await p);
    } finally {
      this.inflight = undefined;
    }
  }

  /** A plan for `req`, starting in `phase`, with this boot's id: what is written before anything is done. */
  private async newPlan(req: DrainRebootRequest, phase: RebootPlan['phase'], rest: Pick<RebootPlan, 'kubernetes' | 'cordon'>): Promise<RebootPlan> {
    const now = this.iso();
    return { version: 1, episodeId: req.episodeId, reason: req.reason, origin: req.origin ?? 'agent', node: this.node, phase, bootId: await this.readBootId(), createdAt: now, updatedAt: now, ...rest };
  }

  private finish(r: DrainRebootResult): DrainRebootResult {
    this.lastOutcome = { at: this.iso(), result: r.result, detail: r.detail };
    // A drain-reboot that ended without a reboot may leave a cordon the server applied after we gave up.
    if (r.result !== 'success' && r.result !== 'dry_run') this.orphanSuspectUntil = this.mono() + ORPHAN_SUSPECT_MS;
    return r;
  }

  private step(req: DrainRebootRequest, message: string): void {
    this.logger.info({ episode: req.episodeId }, message);
    try {
      req.onProgress?.({ type: 'step', message });
    } catch {
      // The CLI's printer failing must not stop the work.
    }
  }

  private async refuse(req: DrainRebootRequest, v: GuardVerdict & { ok: false }): Promise<DrainRebootResult> {
    this.rebootState = { required: true, reason: 'RebootRefused', message: `a reboot is needed (${req.reason}) but ${v.detail}` };
    await this.event({ reason: 'NodemedicGuardRefused', type: 'Warning', message: `refused to drain ${req.maintenance ? 'for maintenance' : 'and reboot'} (${req.reason}): ${v.detail}` });
    this.action('drain', 'skipped');
    return { result: 'skipped', detail: `refused: ${v.detail}`, refusedBy: v, retry: true };
  }

  private async runUnlocked(req: DrainRebootRequest): Promise<DrainRebootResult> {
    let existing: RebootPlan | undefined;
    try {
      existing = await this.store.read();
    } catch (e) {
      return { result: 'skipped', detail: `cannot read the drain-reboot plan: ${(e as Error).message}` };
    }
    if (existing) {
      this.planCache = existing;
      if (existing.phase === 'recovery-failed') {
        return { result: 'skipped', detail: `a previous reboot (episode ${existing.episodeId}) did not recover: ${existing.failure ?? ''}; no second reboot until an operator runs \`nodemedic uncordon\`` };
      }
      return { result: 'skipped', detail: `a drain-reboot is already in flight (episode ${existing.episodeId}, phase ${existing.phase})`, retry: true };
    }
    if (!this.api || !this.lease) {
      if (req.maintenance) return { result: 'skipped', detail: 'maintenance drains the node first and needs Kubernetes access (kubernetes.kubeconfig)' };
      return this.withoutKubernetes(req);
    }
    if (!req.maintenance) this.rebootState = { required: true, reason: 'DrainRebootRequested', message: `nodemedic requested a drain and reboot: ${req.reason}` };
    const api = this.api;
    const lease = this.lease;

    // ---- the local guard first: it costs nothing ----
    const window = windowGuard(this.r.rebootWindow, this.d.clock.now());
    if (!window.ok) return this.refuse(req, window);
    this.step(req, window.detail);

    if (req.dryRun) {
      // A preview: the guards, read-only, without taking a slot.
      const b = await checkBlockers(api, lease, this.node, this.r);
      if (!b.ok) {
        const r = await this.refuse(req, b.verdict);
        return { ...r, retry: false };
      }
      for (const d of b.details) this.step(req, d);
      const podPlan = b.podPlan;
      const then = req.maintenance ? `run ${req.maintenance.what}${req.maintenance.reboot ? ', and reboot' : ', wait for the node to be healthy, uncordon it and release the lease'}` : 'reboot';
      const detail = `dry run: would take a reboot lease, cordon ${this.node}, evict ${podPlan.evict.length} pods, delete ${podPlan.delete.length} finished pods, leave ${podPlan.keep.length} DaemonSet/mirror pods, and ${then}`;
      await this.event({ reason: 'NodemedicDryRun', type: 'Normal', message: `${detail} (${req.reason})` });
      this.action('drain', 'dry_run');
      return { result: 'dry_run', detail };
    }

    // ---- the plan, then the slot: written down before it is taken ----
    const plan = await this.newPlan(req, 'leasing', { kubernetes: true, cordon: { token: randomUUID(), ours: true } });
    const m = req.maintenance;
    // Written with the plan's first version: the agent's ladder holds back from here on.
    if (m) plan.maintenance = { reason: req.reason, work: m.what, by: m.by, checks: [...m.checks], reboot: m.reboot, pid: process.pid, ...(m.log ? { log: m.log } : {}) };
    try {
      await this.store.create(plan);
      this.planCache = plan;
    } catch (e) {
      return { result: e instanceof PlanExistsError ? 'skipped' : 'failure', detail: (e as Error).message, retry: true };
    }
    /** Gives the slot back and forgets the plan; the refusal is returned either way. */
    const giveBack = async (v: GuardVerdict & { ok: false }): Promise<DrainRebootResult> => {
      try {
        await undo(this.undoDeps, plan, `the drain-reboot of episode ${plan.episodeId} was refused`);
        this.planCache = undefined;
      } catch (e) {
        plan.failure = `refused (${v.detail}), and the slot could not be given back: ${(e as Error).message}`;
        await this.savePlan(plan).catch(() => {});
        this.logger.error({ episode: plan.episodeId }, plan.failure);
      }
      return this.refuse(req, v);
    };
    let leaseName: string;
    try {
      const got = await lease.acquire();
      if (!got.ok) return giveBack({ ok: false, guard: 'lease', detail: got.detail });
      leaseName = got.name;
      this.step(req, got.detail);
    } catch (e) {
      // A create or update may have landed before the error: undo gives back whatever is ours.
      return giveBack({ ok: false, guard: 'api', detail: `cannot take the reboot lease (${(e as Error).message})` });
    }

    // ---- the cluster-wide guards, while holding the slot: no other agent can pass them with us ----
    const blockers = await checkBlockers(api, lease, this.node, this.r);
    if (!blockers.ok) return giveBack(blockers.verdict);
    for (const d of blockers.details) this.step(req, d);

    plan.lease = { namespace: this.r.leaseNamespace, name: leaseName };
    plan.phase = 'cordoning';
    try {
      await this.savePlan(plan);
    } catch (e) {
      return this.rollback(plan, `cannot write the plan: ${(e as Error).message}`, 'failure');
    }
    this.drainAbort = new AbortController();
    lease.startRenewing((why) => {
      this.logger.error({ episode: req.episodeId }, why);
      this.drainAbort?.abort();
    });
    try {
      const c = await cordon(
        api,
        this.node,
        { by: m ? m.by : `agent/${this.node}`, token: plan.cordon!.token, reason: m ? `nodemedic maintain: ${req.reason}` : req.reason, at: plan.createdAt },
        // An operator's earlier cordon, even the same person's, stays theirs: never adopted, never undone.
        m ? { adoptOwnMark: false } : {},
      );
      if (c.state === 'already-cordoned') {
        plan.cordon = { token: plan.cordon!.token, ours: false, preexistingBy: c.by };
        this.step(req, `node ${this.node} was already cordoned by ${c.by}; nodemedic will never uncordon it`);
      } else {
        await this.event({ reason: 'NodemedicCordon', type: 'Normal', message: `cordoned ${this.node} to drain ${m ? `it for maintenance (${m.by})` : 'and reboot it'}: ${req.reason}${c.state === 'adopted' ? ' (it carried an earlier cordon of this agent, now adopted)' : ''}` });
        this.action('cordon', 'success');
      }
      plan.phase = 'draining';
      await this.savePlan(plan);
    } catch (e) {
      // The outcome may be unknown (a timeout): the undo reads the Node and removes our cordon if it is there.
      this.action('cordon', 'failure');
      return this.rollback(plan, `cordon failed: ${(e as Error).message}`, 'failure');
    }

    // ---- drain ----
    let drain: DrainOutcome;
    try {
      // Listed again after the cordon: nothing new can land now except DaemonSet pods.
      const podPlan = planPods(await api.listPods(`spec.nodeName=${this.node}`), this.r.drain);
      if (podPlan.blocked.length) return this.rollback(plan, describeBlocked(podPlan.blocked), 'failure');
      await this.event({ reason: 'NodemedicDrainStarted', type: 'Normal', message: `draining ${this.node}: evicting ${podPlan.evict.length} pods, deleting ${podPlan.delete.length} finished pods, leaving ${podPlan.keep.length} DaemonSet/mirror pods (${req.reason})` });
      drain = await drainPods({
        api,
        plan: podPlan,
        clock: this.d.clock,
        signal: this.drainAbort.signal,
        settings: {
          timeoutMs: parseDuration(this.r.drain.timeout),
          gracePeriodSeconds: this.r.drain.gracePeriodSeconds,
          ...(this.d.tuning?.evictionRetryMs !== undefined ? { evictionRetryMs: this.d.tuning.evictionRetryMs } : {}),
          ...(this.d.tuning?.podPollMs !== undefined ? { podPollMs: this.d.tuning.podPollMs } : {}),
        },
        onProgress: (p) => {
          this.logger.debug({ episode: req.episodeId, ...p }, 'drain progress');
          req.onProgress?.(p);
        },
      });
    } catch (e) {
      this.action('drain', 'failure');
      return this.rollback(plan, `drain failed: ${(e as Error).message}`, 'failure');
    }
    plan.drainSummary = drain.summary;
    if (!drain.ok) {
      this.action('drain', 'failure');
      await this.event({ reason: 'NodemedicDrainFailed', type: 'Warning', message: `${drain.summary} (${req.reason})` });
      // Maintenance never forces: its work needs a drained node.
      const forced = drain.timedOut && this.r.drain.forceRebootAfterTimeout && !this.stopped && !m;
      if (!forced) {
        const why = drain.aborted ? (this.stopped ? 'the agent is stopping' : 'the reboot lease was lost') : drain.summary;
        return this.rollback(plan, why, 'failure', drain);
      }
      this.step(req, 'drain timed out; rebooting anyway (remediation.drain.forceRebootAfterTimeout)');
    } else {
      this.action('drain', 'success');
      await this.event({ reason: 'NodemedicDrainSucceeded', type: 'Normal', message: drain.summary });
    }

    if (m) return this.maintain(plan, req, m, drain);

    // ---- reboot: confirm the slot (transient errors retried within the renewal deadline) ----
    if ((await lease.renew()) !== 'renewed') {
      return this.rollback(plan, `the reboot lease ${this.r.leaseNamespace}/${leaseName} is no longer ours (or could not be renewed within remediation.leaseDuration)`, 'failure', drain);
    }
    if (this.stopped) return this.rollback(plan, 'the agent is stopping', 'failure', drain);
    const issued = await this.reboot(plan, req);
    if (!issued.ok) return this.rollback(plan, issued.detail, 'failure', drain);
    // The slot stays ours through the reboot; it is renewed until this process ends, then after the boot.
    return { result: 'success', detail: `${drain.summary}; ${issued.detail}`, drain };
  }

  /**
   * `nodemedic maintain` after a successful drain: the work; then the reboot (`--reboot`: the agent's
   * post-boot recovery finishes), or the wait until the trigger checks are ok and the Node is Ready
   * (judged as after a reboot, recovery.ts), then uncordon and release. A failed work, a node not
   * healthy within `recovery.timeout`, or a stop during either, leaves the node cordoned (plan
   * `maintenance-failed`) with the reason in an Event and the `UnderMaintenance` condition. A stop
   * reaches this only after the drain: what the work may have changed is not undone by an uncordon.
   */
  private async maintain(plan: RebootPlan, req: DrainRebootRequest, m: MaintenanceRequest, drain: DrainOutcome): Promise<DrainRebootResult> {
    const api = this.api!;
    plan.phase = 'maintaining';
    try {
      await this.savePlan(plan);
    } catch (e) {
      return this.rollback(plan, `cannot write the plan: ${(e as Error).message}`, 'failure', drain);
    }
    if (this.stopped) return this.rollback(plan, 'stopped before the maintenance work began', 'failure', drain);
    // Renewal goes on during the work, but a lost slot no longer aborts anything: an upgrade is not cut half way.
    this.lease?.startRenewing((why) => this.logger.error({ episode: req.episodeId }, `${why}; the maintenance goes on`));
    await this.event({ reason: 'NodemedicMaintenance', type: 'Normal', message: `${m.by} is maintaining ${this.node}: ${m.what} (${req.reason})` });
    await publishMaintenanceCondition(api, this.node, this.d.clock, this.logger, { status: 'True', reason: 'MaintenanceInProgress', message: `${m.by}: ${m.what} (${req.reason})` });
    this.workAbort = new AbortController();
    let w: { ok: boolean; detail: string };
    try {
      w = await m.work(this.workAbort.signal);
    } catch (e) {
      w = { ok: false, detail: `the work failed unexpectedly: ${(e as Error).message}` };
    }
    if (!w.ok) return this.maintenanceFailed(plan, req, m, w.detail);
    this.step(req, w.detail);

    if (m.reboot) {
      if (this.stopped) return this.maintenanceFailed(plan, req, m, `${w.detail}; stopped before the reboot`);
      if ((await this.lease!.renew()) !== 'renewed') return this.maintenanceFailed(plan, req, m, `${w.detail}; the reboot lease is no longer ours, so no reboot`);
      const issued = await this.reboot(plan, req);
      if (!issued.ok) return this.maintenanceFailed(plan, req, m, `${w.detail}; ${issued.detail}`);
      return { result: 'success', detail: `${drain.summary}; ${w.detail}; ${issued.detail}`, drain };
    }

    const sinceMs = this.d.clock.now();
    const timeoutMs = parseDuration(this.r.recovery.timeout);
    const startedMono = this.mono();
    this.step(req, `waiting for ${m.triggers.length ? `the trigger checks (${m.triggers.join(', ')}) to be ok and ` : ''}the Node to be Ready (up to remediation.recovery.timeout, ${this.r.recovery.timeout})`);
    let look: RecoveryLook = { kind: 'unknown', why: 'not looked yet', apiUnreachable: false };
    while (!this.stopped) {
      let node: NodeLook;
      try {
        node = { ready: isReady(await api.getNode(this.node)) };
      } catch (e) {
        node = { error: (e as Error).message };
      }
      let results: readonly CheckResult[] = [];
      try {
        results = await m.checkNow();
      } catch (e) {
        this.logger.warn({ err: (e as Error).message }, 'cannot run the trigger checks');
      }
      if (m.triggers.length) look = lookAtRecovery(results, m.triggers, sinceMs, node);
      else if ('error' in node) look = { kind: 'unknown', why: `cannot read the Node (${node.error})`, apiUnreachable: true };
      else look = node.ready ? { kind: 'healthy' } : { kind: 'bad', why: 'the Node is not Ready' };
      if (look.kind === 'healthy') break;
      if (this.mono() - startedMono >= timeoutMs) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, m.pollMs ?? 2000);
        this.workAbort?.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
      });
    }
    if (look.kind !== 'healthy') {
      const why = this.stopped ? `stopped while waiting for the node to be healthy (${look.why})` : `not healthy within remediation.recovery.timeout (${this.r.recovery.timeout}) after the work: ${look.why}`;
      return this.maintenanceFailed(plan, req, m, `${w.detail}; ${why}`);
    }
    let notes: string[];
    try {
      notes = await undo(this.undoDeps, plan, `maintenance done (${m.what}; ${req.reason})`);
      this.planCache = undefined;
    } catch (e) {
      return this.maintenanceFailed(plan, req, m, `${w.detail}; healthy, but cannot uncordon or release the lease: ${(e as Error).message}`);
    }
    const detail = `${drain.summary}; ${w.detail}; healthy (trigger checks ok, Node Ready)${notes.length ? `; ${notes.join(', ')}` : ''}`;
    await this.event({ reason: 'NodemedicMaintenanceDone', type: 'Normal', message: `maintenance of ${this.node} done (${m.what}; ${req.reason}): ${notes.join(', ') || 'nothing to undo'}` });
    await publishMaintenanceCondition(api, this.node, this.d.clock, this.logger, { status: 'False', reason: 'MaintenanceDone', message: `${m.by}: ${m.what} (${req.reason}) done` });
    return { result: 'success', detail, drain };
  }

  /** The node stays cordoned (its state after the work is unknown); the slot goes to the next node; the plan stays. */
  private async maintenanceFailed(plan: RebootPlan, req: DrainRebootRequest, m: MaintenanceRequest, why: string): Promise<DrainRebootResult> {
    plan.phase = 'maintenance-failed';
    plan.failure = why;
    await this.savePlan(plan).catch((e: unknown) => this.logger.error({ err: (e as Error).message }, 'cannot write the plan'));
    this.lease?.stopRenewing();
    try {
      await this.lease?.release();
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'cannot release the reboot lease');
    }
    const msg = `maintenance of ${this.node} failed (${m.what}; ${req.reason}): ${why}; it stays cordoned; fix it, then run \`nodemedic uncordon\``;
    await this.event({ reason: 'NodemedicMaintenanceFailed', type: 'Warning', message: msg });
    if (this.api) await publishMaintenanceCondition(this.api, this.node, this.d.clock, this.logger, { status: 'True', reason: 'MaintenanceFailed', message: msg });
    return { result: 'failure', detail: `${why}; ${this.node} stays cordoned`, maintenanceFailed: true };
  }

  /** Persists the `rebooting` phase, then runs `systemctl reboot` through the host (and its command prefix). */
  private async reboot(plan: RebootPlan, req: DrainRebootRequest): Promise<{ ok: boolean; detail: string }> {
    plan.phase = 'rebooting';
    plan.rebootIssuedAt = this.iso();
    await this.savePlan(plan);
    await this.event({ reason: 'NodemedicReboot', type: 'Warning', message: `rebooting ${this.node}: ${req.reason}` });
    this.step(req, 'running systemctl reboot');
    const res = await this.d.host.run(['systemctl', 'reboot'], { timeoutMs: this.d.tuning?.rebootCommandTimeoutMs ?? 60_000 });
    if (res.exitCode !== 0) {
      this.action('reboot', 'failure');
      const why = res.notFound ? 'systemctl not found' : res.timedOut ? 'timed out' : `exit ${res.exitCode ?? 'none'}: ${(res.stderr || res.error || '').trim().slice(0, 300)}`;
      return { ok: false, detail: `\`${res.argv.join(' ')}\` failed (${why})` };
    }
    this.action('reboot', 'success');
    this.rebootState = { required: true, reason: 'Rebooting', message: `nodemedic issued a reboot: ${req.reason}` };
    return { ok: true, detail: `reboot issued (\`${res.argv.join(' ')}\`)` };
  }

  /** Without Kubernetes: the reboot stays a request unless `rebootWithoutDrain` is set. */
  private async withoutKubernetes(req: DrainRebootRequest): Promise<DrainRebootResult> {
    if (req.dryRun) {
      this.action('reboot', 'dry_run');
      return {
        result: 'dry_run',
        detail: this.r.rebootWithoutDrain
          ? 'dry-run: would reboot without a drain (no Kubernetes access, remediation.rebootWithoutDrain)'
          : 'dry-run: would request a drain and reboot (without Kubernetes access only the request is recorded)',
      };
    }
    if (!this.r.rebootWithoutDrain) {
      const detail =
        'reboot requested, not performed: there is no Kubernetes access to drain the node first; drain it and reboot it by hand, or configure kubernetes.kubeconfig (or set remediation.rebootWithoutDrain: true to reboot without a drain)';
      this.logger.warn({ episode: req.episodeId, reason: req.reason }, detail);
      this.action('reboot', 'skipped');
      return { result: 'skipped', detail };
    }
    const window = windowGuard(this.r.rebootWindow, this.d.clock.now());
    if (!window.ok) {
      this.action('reboot', 'skipped');
      return { result: 'skipped', detail: `refused: ${window.detail}`, refusedBy: window, retry: true };
    }
    const plan = await this.newPlan(req, 'rebooting', { kubernetes: false });
    try {
      await this.store.create(plan);
      this.planCache = plan;
    } catch (e) {
      return { result: e instanceof PlanExistsError ? 'skipped' : 'failure', detail: (e as Error).message };
    }
    const issued = await this.reboot(plan, req);
    if (!issued.ok) {
      await this.store.remove();
      this.planCache = undefined;
      return { result: 'failure', detail: issued.detail };
    }
    return { result: 'success', detail: `no Kubernetes access, rebooting without a drain (remediation.rebootWithoutDrain): ${issued.detail}` };
  }

  /**
   * Undoes a drain-reboot that will not reboot (undo.ts). If the API server cannot be reached, the
   * plan stays (with `failure`) and the rollback is retried on the next housekeeping pass and on restart.
   */
  private async rollback(plan: RebootPlan, why: string, result: ActionResult, drain?: DrainOutcome): Promise<DrainRebootResult> {
    this.lease?.stopRenewing();
    let notes: string[];
    try {
      notes = await undo(this.undoDeps, plan, `the drain-reboot of episode ${plan.episodeId} was rolled back (${why})`);
      this.planCache = undefined;
    } catch (e) {
      const msg = `rollback incomplete (${(e as Error).message}); it will be retried`;
      this.logger.error({ episode: plan.episodeId }, msg);
      plan.failure = why;
      await this.savePlan(plan).catch(() => {});
      return { result, detail: `${why}; ${msg}`, retry: true, ...(drain ? { drain } : {}) };
    }
    const detail = `${why}; rolled back, no reboot${notes.length ? ` (${notes.join(', ')})` : ''}`;
    this.rebootState = { required: true, reason: 'DrainRebootFailed', message: detail };
    await this.event({ reason: 'NodemedicRollback', type: 'Warning', message: detail });
    this.d.onEpisodeEnd?.({ episodeId: plan.episodeId, outcome: 'rolled-back', detail });
    return { result, detail, retry: true, ...(drain ? { drain } : {}) };
  }

  /**
   * After a (re)start: an interrupted drain is rolled back; a reboot that happened (new boot id) moves
   * to recovery; a reboot that did not happen is rolled back. Never throws.
   */
  async onStartup(): Promise<void> {
    try {
      await this.resume();
    } catch (e) {
      this.planError = (e as Error).message;
      this.logger.error({ err: e }, 'cannot resume the drain-reboot plan');
    }
  }

  private async resume(): Promise<void> {
    const plan = await this.store.read();
    this.planCache = plan;
    this.planError = undefined;
    if (!plan) return;
    this.logger.info({ episode: plan.episodeId, phase: plan.phase }, 'found a drain-reboot plan from before');
    if (DRAINING.has(plan.phase)) {
      this.action('drain', 'failure');
      await this.rollback(plan, `the agent stopped during the drain (phase ${plan.phase})`, 'failure');
      return;
    }
    await this.advance(plan, true);
  }

  /** A plan past the drain, found at start or re-read from disk: rebooting → recovering → watched. */
  private async advance(plan: RebootPlan, atStart: boolean): Promise<void> {
    if (plan.phase === 'rebooting') {
      const bootId = await this.readBootId();
      if (bootId === plan.bootId) {
        // Only at start: a plan re-read while this boot's `systemctl reboot` (ours or the CLI's) is pending is left alone.
        if (!atStart) return;
        await this.rollback(plan, 'the reboot did not happen (the boot id is unchanged)', 'failure');
        return;
      }
      const now = this.d.clock.now();
      plan.phase = 'recovering';
      plan.recovery = { bootId, since: new Date(now).toISOString(), deadline: new Date(now + parseDuration(this.r.recovery.timeout)).toISOString(), judgedMs: 0 };
      await this.savePlan(plan);
      this.rebootState = { required: true, reason: 'Recovering', message: `rebooted; waiting for the checks to be ok and the Node Ready (up to ${this.r.recovery.timeout} of judged time)` };
      await this.event({ reason: 'NodemedicRebooted', type: 'Normal', message: `${this.node} is back after the reboot (episode ${plan.episodeId}); waiting for it to be healthy before uncordoning` });
    }
    if (plan.phase === 'recovering') {
      await this.adoptLease();
      this.scheduleRecovery();
    }
    if (plan.phase === 'recovery-failed') {
      this.rebootState = { required: true, reason: 'RecoveryFailed', message: plan.failure ?? 'the node did not recover after the reboot' };
    }
  }

  /** After the boot: our slot is still ours (nobody may take it); find it and keep it alive. */
  private async adoptLease(): Promise<void> {
    if (!this.lease || this.lease.name) return;
    try {
      const own = await this.lease.findOwn();
      if (!own) return;
      this.lease.adopt(own);
      this.lease.startRenewing((why) => this.logger.warn(why), { keepTrying: true });
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'cannot look up the reboot lease after the boot yet; trying again');
    }
  }

  /**
   * A Node carrying this agent's cordon mark with no plan: a cordon the server applied after we gave up
   * on it, or a plan lost with the state. It is ours by the mark; once this node's checks are ok it is
   * uncordoned (and a slot we still hold released). Checked at most every `orphanCheckMs`.
   */
  private async settleOrphan(results: readonly CheckResult[]): Promise<void> {
    if (!this.api || this.planCache || this.inflight) return;
    // At idle a Node GET every 30 s would be most of the agent's API cost (issue 13): look often only when
    // an orphan is likely, and seldom otherwise.
    // (The first look, at start, is due whatever the interval: lastOrphanCheck is -Infinity.)
    const every = this.mono() < this.orphanSuspectUntil ? (this.d.tuning?.orphanCheckMs ?? 30_000) : (this.d.tuning?.orphanIdleCheckMs ?? 10 * 60_000);
    if (this.mono() - this.lastOrphanCheck < every) return;
    this.lastOrphanCheck = this.mono();
    let node;
    try {
      node = await this.api.getNode(this.node);
    } catch (e) {
      this.logger.debug({ err: (e as Error).message }, 'cannot check the node for a leftover cordon');
      return;
    }
    const mark = markOf(node);
    if (!node.spec?.unschedulable || mark.by !== `agent/${this.node}`) return;
    if (!checksOk(results, this.r.triggers)) {
      this.logger.warn({ cordonedBy: node.metadata?.annotations?.[CORDONED_BY], at: mark.at }, `${this.node} carries a cordon of this agent but no plan; it will be uncordoned once the checks are ok`);
      return;
    }
    // Re-read: a plan may have been written (by the ladder or the CLI) while we looked.
    if (this.inflight || (await this.store.read())) return;
    const notes = await undo(this.undoDeps, { episodeId: 'orphan', kubernetes: true, cordon: { token: mark.token ?? '', ours: true } }, `it carried this agent's cordon (${mark.at ?? '?'}) with no drain-reboot plan, and its checks are ok`);
    this.logger.warn({ notes }, 'uncordoned an orphan cordon of this agent');
  }

  private scheduleRecovery(): void {
    if (this.recoveryTimer || this.stopped) return;
    const every = this.d.tuning?.recoveryPollMs ?? 10_000;
    const tick = async (): Promise<void> => {
      await this.checkRecovery();
      if (this.recoveryTimer && this.planCache?.phase === 'recovering' && !this.stopped) {
        this.recoveryTimer = setTimeout(() => void tick(), every);
        this.recoveryTimer.unref();
      } else {
        this.recoveryTimer = undefined;
      }
    };
    this.recoveryTimer = setTimeout(() => void tick(), every);
    this.recoveryTimer.unref();
  }

  private recovering: Promise<void> | undefined;

  /** One look at recovery (never two at once). */
  private async checkRecovery(): Promise<void> {
    if (this.recovering) return this.recovering;
    this.recovering = this.checkRecoveryOnce()
      .catch((e: unknown) => this.logger.error({ err: e }, 'recovery check failed'))
      .finally(() => {
        this.recovering = undefined;
      });
    return this.recovering;
  }

  private async checkRecoveryOnce(): Promise<void> {
    const plan = this.planCache;
    if (!plan || plan.phase !== 'recovering' || !plan.recovery) return;
    const nowMono = this.mono();
    const elapsed = this.lastRecoveryLook === undefined ? 0 : nowMono - this.lastRecoveryLook;
    this.lastRecoveryLook = nowMono;
    await this.adoptLease();
    let node: NodeLook = 'no-kubernetes';
    if (plan.kubernetes && this.api) {
      try {
        node = { ready: isReady(await this.api.getNode(this.node)) };
      } catch (e) {
        node = { error: (e as Error).message };
      }
    }
    const look = lookAtRecovery(this.lastResults, this.r.triggers, Date.parse(plan.recovery.since), node);
    if (look.kind === 'healthy') {
      await this.recovered(plan);
      return;
    }
    if (look.kind === 'unknown') {
      if (this.recoveryWaiting !== look.why) {
        this.logger[look.apiUnreachable ? 'warn' : 'info']({ episode: plan.episodeId }, `recovery waiting, time not counted against recovery.timeout: ${look.why}`);
      }
      this.recoveryWaiting = look.why;
      this.rebootState = { required: true, reason: 'Recovering', message: `rebooted; waiting: ${look.why}` };
      return;
    }
    this.recoveryWaiting = null;
    // Judged bad: this time counts (bounded, so a stalled timer is not a long bad stretch).
    const poll = this.d.tuning?.recoveryPollMs ?? 10_000;
    plan.recovery.judgedMs = (plan.recovery.judgedMs ?? 0) + Math.min(elapsed, 2 * poll);
    const timeout = parseDuration(this.r.recovery.timeout);
    if (plan.recovery.judgedMs < timeout) {
      await this.savePlan(plan).catch((e: unknown) => this.logger.warn({ err: (e as Error).message }, 'cannot save the recovery time'));
      return;
    }
    plan.phase = 'recovery-failed';
    plan.failure = `not healthy for ${this.r.recovery.timeout} of judged time after the reboot (${look.why})`;
    await this.savePlan(plan);
    const msg = `${this.node} ${plan.failure}; it stays cordoned and no second reboot will be tried; fix it, then run \`nodemedic uncordon\``;
    this.rebootState = { required: true, reason: 'RecoveryFailed', message: msg };
    await this.event({ reason: 'NodemedicRecoveryFailed', type: 'Warning', message: msg });
    if (plan.maintenance && this.api) await publishMaintenanceCondition(this.api, this.node, this.d.clock, this.logger, { status: 'True', reason: 'MaintenanceFailed', message: msg });
    this.action('uncordon', 'skipped');
    try {
      // The node stays cordoned (it is out of the storm guard's count anyway); the slot goes to the next node.
      await this.lease?.release();
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'cannot release the reboot lease');
    }
    this.d.onEpisodeEnd?.({ episodeId: plan.episodeId, outcome: 'recovery-failed', detail: msg });
    await this.publish();
  }

  private async recovered(plan: RebootPlan): Promise<void> {
    let notes: string[];
    try {
      notes = await undo(this.undoDeps, plan, `healthy after the reboot (episode ${plan.episodeId})`);
    } catch (e) {
      this.action('uncordon', 'failure');
      this.logger.warn({ err: (e as Error).message }, 'recovered, but cannot uncordon or release the lease yet; retrying');
      this.recoveryWaiting = `cannot uncordon yet (${(e as Error).message})`;
      return;
    }
    this.planCache = undefined;
    this.recoveryWaiting = null;
    this.stopRecoveryTimer();
    const detail = `${this.node} recovered after the reboot${notes.length ? ` (${notes.join(', ')})` : ''}`;
    this.rebootState = { required: false, reason: 'Recovered', message: detail };
    await this.event({ reason: 'NodemedicRecovered', type: 'Normal', message: `${detail}; episode ${plan.episodeId}` });
    if (plan.maintenance && this.api) {
      await publishMaintenanceCondition(this.api, this.node, this.d.clock, this.logger, { status: 'False', reason: 'MaintenanceDone', message: `${plan.maintenance.by}: ${plan.maintenance.work} (${plan.maintenance.reason}) done; healthy after the reboot` });
    }
    this.d.onEpisodeEnd?.({ episodeId: plan.episodeId, outcome: 'recovered', detail });
    await this.publish();
  }

  private stopRecoveryTimer(): void {
    if (this.recoveryTimer) clearTimeout(this.recoveryTimer);
    this.recoveryTimer = undefined;
  }

  /**
   * After every sweep: re-read the plan (the CLI may have written, finished or removed it), advance
   * recovery, retry an incomplete rollback, settle an orphan cordon, publish the Node conditions.
   * Never throws.
   */
  async afterSweep(results: readonly CheckResult[]): Promise<void> {
    this.lastResults = results;
    // Never two at once: with a slow API server, a sweep's housekeeping may outlast the next sweep.
    if (this.housekeeping) {
      this.housekeepingAgain = true;
      return this.housekeeping;
    }
    this.housekeeping = (async () => {
      do {
        this.housekeepingAgain = false;
        await this.housekeepOnce(this.lastResults);
      } while (this.housekeepingAgain && !this.stopped);
    })().finally(() => {
      this.housekeeping = undefined;
    });
    return this.housekeeping;
  }

  private housekeeping: Promise<void> | undefined;
  private housekeepingAgain = false;

  private async rereadPlan(): Promise<void> {
    if (this.inflight) return;
    const before = this.planCache;
    let plan: RebootPlan | undefined;
    try {
      plan = await this.store.read();
      this.planError = undefined;
    } catch (e) {
      this.planError = (e as Error).message;
      return;
    }
    if (!plan) {
      this.planCache = undefined;
      this.stopRecoveryTimer();
      this.recoveryWaiting = null;
      if (before && this.rebootState?.required) {
        // Finished or removed outside this agent (`nodemedic reboot` rolled back, `nodemedic uncordon`).
        this.rebootState = { required: false, reason: 'NoRebootRequired', message: `the drain-reboot plan of episode ${before.episodeId} is gone (finished or removed)` };
      }
      return;
    }
    const changed = !before || before.episodeId !== plan.episodeId || before.phase !== plan.phase;
    if (changed && plan.phase !== 'recovering') this.planCache = plan;
    if (!changed) return;
    if (plan.phase === 'recovering' || plan.phase === 'rebooting' || plan.phase === 'recovery-failed') {
      this.planCache = plan;
      await this.advance(plan, false);
    } else if (DRAINING.has(plan.phase) && !plan.maintenance) {
      this.rebootState = { required: true, reason: 'DrainRebootRequested', message: `a drain-reboot is in flight (episode ${plan.episodeId}, ${plan.origin}, phase ${plan.phase})` };
    }
  }

  private async housekeepOnce(results: readonly CheckResult[]): Promise<void> {
    try {
      await this.rereadPlan();
      const plan = this.planCache;
      if (plan?.phase === 'recovering') {
        this.scheduleRecovery();
        await this.checkRecovery();
      } else if (plan && DRAINING.has(plan.phase) && !this.inflight && plan.failure && plan.origin === 'agent') {
        await this.rollback(plan, plan.failure, 'failure');
      }
      await this.settleOrphan(results);
      if (!this.planCache && !this.inflight && this.rebootState?.required) {
        // The problem that asked for a reboot went away by itself.
        const trig = results.filter((r) => this.r.triggers.includes(r.check));
        if (trig.length && !trig.some((r) => r.status === 'problem')) {
          this.rebootState = { required: false, reason: 'NoRebootRequired', message: 'the checks that asked for a reboot are no longer reporting a problem' };
        }
      }
    } catch (e) {
      this.logger.error({ err: e }, 'drain-reboot housekeeping failed');
    }
    await this.publish();
  }

  /** Publishes the Node conditions for the latest results. */
  async publish(): Promise<void> {
    if (!this.conditions) return;
    await this.conditions.publish(desiredConditions(this.lastResults, this.rebootState));
  }

  status(): Record<string, unknown> {
    const plan = this.planCache;
    return {
      kubernetes: this.d.kube ? this.d.kube.source : 'none',
      inFlight: !!this.inflight,
      plan: plan
        ? {
            episodeId: plan.episodeId,
            origin: plan.origin,
            phase: plan.phase,
            since: plan.createdAt,
            lease: plan.lease ?? null,
            cordon: plan.cordon ?? null,
            failure: plan.failure ?? null,
            recovery: plan.recovery ? { ...plan.recovery, judged: formatDuration(plan.recovery.judgedMs ?? 0) } : null,
          }
        : null,
      recoveryWaiting: this.recoveryWaiting,
      ...(this.planError ? { planError: this.planError } : {}),
      lastOutcome: this.lastOutcome ?? null,
      rebootRequired: this.rebootState ?? null,
    };
  }

  /**
   * Stops timers. A drain in progress is aborted and rolled back (bounded by the API timeouts); a
   * reboot already issued or a recovery in progress is left to the plan on disk, and the slot stays
   * held on the server (it is ours across the reboot).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopRecoveryTimer();
    this.drainAbort?.abort();
    this.workAbort?.abort();
    if (this.inflight) {
      // Within systemd's TimeoutStopSec (30 s); what is left undone is in the plan for the next start.
      await settlesWithin(this.inflight, 25_000);
    }
    if (this.housekeeping) await settlesWithin(this.housekeeping, 5_000);
    this.lease?.forget();
  }
}
