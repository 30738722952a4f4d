/**
 * The runbook's last resort, done by the node for itself: guards, reboot Lease, cordon (with an owner
 * mark), drain, persist the plan, `systemctl reboot`; after the boot, wait for health, uncordon (only
 * our own cordon) and release the Lease. A failed drain rolls back. Every step writes the plan first,
 * so an agent killed anywhere finishes or undoes the work on its next start.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.js';
import type { RemediationConfig as Config } from '../config.js';
import { parseDuration } from '../../platform/duration.js';
import type { Host } from '../../platform/host.js';
import type { CheckResult } from '../../checks/types.js';
import type { ActionName, ActionRecorder, ActionResult, DrainRebooter } from '../types.js';
import type { KubeAccess, KubeApi } from '../../platform/kube-client.js';
import { ConditionPublisher, desiredConditions, type RebootState } from './conditions.js';
import { cordon, CORDONED_BY, markOf, uncordon } from './cordon.js';
import { drainPods, type DrainOutcome, type DrainProgress } from './drain.js';
import { EventRecorder, type NodeEvent } from './events.js';
import { capacityGuard, isReady, stormGuard, windowGuard, type GuardVerdict } from './guards.js';
import { RebootLease } from './lease.js';
import { PlanExistsError, PlanStore, type RebootPlan } from './plan.js';
import { describeBlocked, planPods, type DrainPodPlan } from './pods.js';

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
}

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
  /** Reads the current boot id; default `/proc/sys/kernel/random/boot_id` through the host. */
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
  /** `cli` for `nodemedic reboot`. Default `agent`. */
  origin?: 'agent' | 'cli';
  /** Pod-by-pod progress and step messages, for the CLI. */
  onProgress?: (p: DrainProgress | { type: 'step'; message: string }) => void;
}

export interface DrainRebootResult {
  result: ActionResult;
  detail: string;
  /** Which guard refused, when one did. */
  refusedBy?: GuardVerdict & { ok: false };
  drain?: DrainOutcome;
}

export class DrainRebootController implements DrainRebooter {
  private readonly api: KubeApi | undefined;
  private readonly store: PlanStore;
  private readonly events: EventRecorder | undefined;
  private readonly conditions: ConditionPublisher | undefined;
  private readonly lease: RebootLease | undefined;
  private readonly node: string;
  private readonly logger: Logger;
  private inflight: Promise<unknown> | undefined;
  private drainAbort: AbortController | undefined;
  private recoveryTimer: NodeJS.Timeout | undefined;
  private lastResults: readonly CheckResult[] = [];
  private rebootState: RebootState | undefined;
  private lastOutcome: { at: string; result: ActionResult; detail: string } | undefined;
  private planCache: RebootPlan | undefined;
  private planError: string | undefined;
  private stopped = false;

  constructor(private readonly d: DrainRebootDeps) {
    this.node = d.config.nodeName;
    this.logger = d.logger;
    this.store = new PlanStore(d.config.stateDir);
    this.api = d.kube?.api;
    if (this.api) {
      this.events = new EventRecorder(this.api, { name: this.node }, d.clock, d.logger, d.component ?? 'nodemedic');
      this.conditions = new ConditionPublisher(this.api, this.node, d.clock, d.logger, { heartbeatMs: parseDuration(d.config.kubernetes.conditionHeartbeat ?? '5m') });
      this.lease = new RebootLease({
        api: this.api,
        namespace: d.config.remediation.leaseNamespace,
        slots: d.config.remediation.maxConcurrentReboots,
        identity: this.node,
        durationMs: parseDuration(d.config.remediation.leaseDuration),
        clock: d.clock,
        logger: d.logger,
      });
    }
  }

  private get r(): Config['remediation'] {
    return this.d.config.remediation;
  }

  private async readBootId(): Promise<string> {
    if (this.d.readBootId) return (await this.d.readBootId()).trim();
    return (await this.d.host.readFile(BOOT_ID_PATH, 4096)).trim();
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

  private async savePlan(plan: RebootPlan): Promise<void> {
    plan.updatedAt = this.iso();
    await this.store.update(plan);
    this.planCache = plan;
  }

  /** The ladder's entry point; never throws. */
  async requestDrainReboot(req: { episodeId: string; reason: string; dryRun: boolean }): Promise<{ result: ActionResult; detail: string }> {
    const r = await this.run(req);
    return { result: r.result, detail: r.detail };
  }

  /** The whole drain-reboot with details (the CLI prints them); never throws. */
  async run(req: DrainRebootRequest): Promise<DrainRebootResult> {
    if (this.inflight) return this.finish({ result: 'skipped', detail: 'a drain-reboot is already running in this agent' });
    if (this.stopped) return this.finish({ result: 'skipped', detail: 'the agent is stopping' });
    const p = this.runUnlocked(req).catch(async (e: unknown): Promise<DrainRebootResult> => {
      this.logger.error({ err: e }, 'drain-reboot failed unexpectedly');
      const why = `unexpected error: ${(e as Error).message}`;
      const plan = this.planCache;
      // A cordon or Lease taken before the error must not outlive it.
      if (plan && (plan.phase === 'leasing' || plan.phase === 'cordoning' || plan.phase === 'draining')) return this.rollback(plan, why, 'failure');
      return { result: 'failure', detail: why };
    });
    this.inflight = p;
    try {
      return this.finish(await p);
    } finally {
      this.inflight = undefined;
    }
  }

  private finish(r: DrainRebootResult): DrainRebootResult {
    this.lastOutcome = { at: this.iso(), result: r.result, detail: r.detail };
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

  private async runUnlocked(req: DrainRebootRequest): Promise<DrainRebootResult> {
    let existing: RebootPlan | undefined;
    try {
      existing = await this.store.read();
    } catch (e) {
      return { result: 'skipped', detail: `cannot read the drain-reboot plan: ${(e as Error).message}` };
    }
    if (existing) {
      const detail =
        existing.phase === 'recovery-failed'
          ? `a previous reboot (episode ${existing.episodeId}) did not recover: ${existing.failure ?? ''}; no second reboot until an operator runs \`nodemedic uncordon\``
          : `a drain-reboot is already in flight (episode ${existing.episodeId}, phase ${existing.phase})`;
      return { result: 'skipped', detail };
    }
    if (!this.api) return this.withoutKubernetes(req);
    this.rebootState = { required: true, reason: 'DrainRebootRequested', message: `nodemedic requested a drain and reboot: ${req.reason}` };
    const api = this.api;

    // ---- guards, read-only, each failing closed ----
    const refuse = async (v: GuardVerdict & { ok: false }): Promise<DrainRebootResult> => {
      this.rebootState = { required: true, reason: 'RebootRefused', message: `a reboot is needed (${req.reason}) but ${v.detail}` };
      await this.event({ reason: 'NodemedicGuardRefused', type: 'Warning', message: `refused to drain and reboot (${req.reason}): ${v.detail}` });
      this.action('drain', 'skipped');
      return { result: 'skipped', detail: `refused: ${v.detail}`, refusedBy: v };
    };
    const window = windowGuard(this.r.rebootWindow, this.d.clock.now());
    if (!window.ok) return refuse(window);
    this.step(req, window.detail);
    let podPlan: DrainPodPlan;
    try {
      const nodes = await api.listNodes();
      const self = nodes.find((n) => n.metadata?.name === this.node);
      if (!self) return refuse({ ok: false, guard: 'api', detail: `node ${this.node} is not in the cluster's node list (check nodeName)` });
      const storm = stormGuard(nodes, this.node, this.r.maxUnhealthyNodes);
      if (!storm.ok) return refuse(storm);
      this.step(req, storm.detail);
      podPlan = planPods(await api.listPods(`spec.nodeName=${this.node}`), this.r.drain);
      if (podPlan.blocked.length) return refuse({ ok: false, guard: 'drain-plan', detail: describeBlocked(podPlan.blocked) });
      const running = await api.listPods('status.phase!=Succeeded,status.phase!=Failed');
      const capacity = capacityGuard(nodes, running, this.node, podPlan.evict.map((p) => p.pod));
      if (!capacity.ok) return refuse(capacity);
      this.step(req, capacity.detail);
    } catch (e) {
      return refuse({ ok: false, guard: 'api', detail: `the API server could not confirm it is safe (${(e as Error).message})` });
    }
    if (req.dryRun) {
      const detail = `dry run: would take a reboot lease, cordon ${this.node}, evict ${podPlan.evict.length} pods, delete ${podPlan.delete.length} finished pods, leave ${podPlan.keep.length} DaemonSet/mirror pods, and reboot`;
      await this.event({ reason: 'NodemedicDryRun', type: 'Normal', message: `${detail} (${req.reason})` });
      this.action('drain', 'dry_run');
      return { result: 'dry_run', detail };
    }

    // ---- the plan, then the reboot Lease, then the cordon: each written down before it is taken ----
    const lease = this.lease!;
    const bootId = await this.readBootId();
    const now = this.iso();
    const plan: RebootPlan = {
      version: 1,
      episodeId: req.episodeId,
      reason: req.reason,
      origin: req.origin ?? 'agent',
      node: this.node,
      phase: 'leasing',
      bootId,
      createdAt: now,
      updatedAt: now,
      kubernetes: true,
      cordon: { token: randomUUID(), ours: true },
    };
    try {
      await this.store.create(plan);
      this.planCache = plan;
    } catch (e) {
      return { result: e instanceof PlanExistsError ? 'skipped' : 'failure', detail: (e as Error).message };
    }
    const dropPlan = async (): Promise<void> => {
      await this.store.remove().catch((e: unknown) => this.logger.error({ err: e }, 'cannot remove the drain-reboot plan'));
      this.planCache = undefined;
    };
    let leaseName: string;
    try {
      const got = await lease.acquire();
      if (!got.ok) {
        await dropPlan();
        return refuse({ ok: false, guard: 'lease', detail: got.detail });
      }
      leaseName = got.name;
      this.step(req, got.detail);
      plan.lease = { namespace: this.r.leaseNamespace, name: leaseName };
      plan.phase = 'cordoning';
      await this.savePlan(plan);
    } catch (e) {
      // A create or update may have landed before the error: give back whatever is ours.
      await lease.release().catch(() => {});
      await dropPlan();
      return refuse({ ok: false, guard: 'api', detail: `cannot take the reboot lease (${(e as Error).message})` });
    }
    this.drainAbort = new AbortController();
    lease.startRenewing((why) => {
      this.logger.error({ episode: req.episodeId }, why);
      this.drainAbort?.abort();
    });
    try {
      const c = await cordon(api, this.node, { by: `agent/${this.node}`, token: plan.cordon!.token, reason: req.reason, at: now });
      if (c.state === 'already-cordoned') {
        plan.cordon = { token: plan.cordon!.token, ours: false, preexistingBy: c.by };
        this.step(req, `node ${this.node} was already cordoned by ${c.by}; nodemedic will never uncordon it`);
      } else {
        await this.event({ reason: 'NodemedicCordon', type: 'Normal', message: `cordoned ${this.node} to drain and reboot it: ${req.reason}` });
        this.action('cordon', 'success');
      }
      plan.phase = 'draining';
      await this.savePlan(plan);
    } catch (e) {
      this.action('cordon', 'failure');
      return this.rollback(plan, `cordon failed: ${(e as Error).message}`, 'failure');
    }

    // ---- drain ----
    let drain: DrainOutcome;
    try {
      // Listed again after the cordon: nothing new can land now except DaemonSet pods.
      podPlan = planPods(await api.listPods(`spec.nodeName=${this.node}`), this.r.drain);
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
      const forced = drain.timedOut && this.r.drain.forceRebootAfterTimeout && !this.stopped;
      if (!forced) {
        const why = drain.aborted ? (this.stopped ? 'the agent is stopping' : 'the reboot lease was lost') : drain.summary;
        return this.rollback(plan, why, 'failure', drain);
      }
      this.step(req, 'drain timed out; rebooting anyway (remediation.drain.forceRebootAfterTimeout)');
    } else {
      this.action('drain', 'success');
      await this.event({ reason: 'NodemedicDrainSucceeded', type: 'Normal', message: drain.summary });
    }

    // ---- reboot ----
    if (!(await lease.renew())) {
      return this.rollback(plan, `the reboot lease ${this.r.leaseNamespace}/${leaseName} is no longer ours`, 'failure', drain);
    }
    const issued = await this.reboot(plan, req);
    if (!issued.ok) return this.rollback(plan, issued.detail, 'failure', drain);
    return { result: 'success', detail: `${drain.summary}; ${issued.detail}`, drain };
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
      return { result: 'skipped', detail: `refused: ${window.detail}`, refusedBy: window };
    }
    const now = this.iso();
    const plan: RebootPlan = {
      version: 1,
      episodeId: req.episodeId,
      reason: req.reason,
      origin: req.origin ?? 'agent',
      node: this.node,
      phase: 'rebooting',
      bootId: await this.readBootId(),
      createdAt: now,
      updatedAt: now,
      kubernetes: false,
    };
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
   * Undoes a drain-reboot that will not reboot: uncordon if the cordon is ours and still carries our
   * token, release the Lease, remove the plan. If the API server cannot be reached, the plan stays and
   * the rollback is retried after the next sweep (and on restart).
   */
  private async rollback(plan: RebootPlan, why: string, result: ActionResult, drain?: DrainOutcome): Promise<DrainRebootResult> {
    this.lease?.stopRenewing();
    const notes: string[] = [];
    try {
      if (plan.kubernetes && this.api) {
        if (plan.cordon?.ours) {
          const u = await uncordon(this.api, this.node, plan.cordon.token);
          if (u === 'uncordoned') {
            this.action('uncordon', 'success');
            notes.push(`uncordoned ${this.node}`);
            await this.event({ reason: 'NodemedicUncordon', type: 'Normal', message: `uncordoned ${this.node}: the drain-reboot of episode ${plan.episodeId} was rolled back (${why})` });
          } else if (u === 'not-ours') notes.push(`left ${this.node} cordoned: its cordon mark is no longer ours`);
        } else if (plan.cordon?.preexistingBy) {
          notes.push(`left ${this.node} cordoned: it was cordoned by ${plan.cordon.preexistingBy} before`);
        }
        const l = await this.lease!.release();
        if (l === 'released') notes.push('released the reboot lease');
      }
      await this.store.remove();
      this.planCache = undefined;
    } catch (e) {
      const msg = `rollback incomplete (${(e as Error).message}); it will be retried`;
      this.logger.error({ episode: plan.episodeId }, msg);
      plan.failure = why;
      await this.savePlan(plan).catch(() => {});
      return { result, detail: `${why}; ${msg}`, ...(drain ? { drain } : {}) };
    }
    const detail = `${why}; rolled back, no reboot${notes.length ? ` (${notes.join(', ')})` : ''}`;
    this.rebootState = { required: true, reason: 'DrainRebootFailed', message: detail };
    await this.event({ reason: 'NodemedicRollback', type: 'Warning', message: detail });
    this.d.onEpisodeEnd?.({ episodeId: plan.episodeId, outcome: 'rolled-back', detail });
    return { result, detail, ...(drain ? { drain } : {}) };
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
    if (!plan) {
      await this.warnOrphanCordon();
      return;
    }
    this.logger.info({ episode: plan.episodeId, phase: plan.phase }, 'found a drain-reboot plan from before');
    if (plan.phase === 'leasing' || plan.phase === 'cordoning' || plan.phase === 'draining') {
      this.action('drain', 'failure');
      await this.rollback(plan, `the agent stopped during the drain (phase ${plan.phase})`, 'failure');
      return;
    }
    if (plan.phase === 'rebooting') {
      const bootId = await this.readBootId();
      if (bootId === plan.bootId) {
        await this.rollback(plan, 'the reboot did not happen (the boot id is unchanged)', 'failure');
        return;
      }
      const now = this.d.clock.now();
      plan.phase = 'recovering';
      plan.recovery = { bootId, since: new Date(now).toISOString(), deadline: new Date(now + parseDuration(this.r.recovery.timeout)).toISOString() };
      await this.savePlan(plan);
      this.rebootState = { required: true, reason: 'Recovering', message: `rebooted; waiting up to ${this.r.recovery.timeout} for the checks to be ok and the Node Ready` };
      await this.event({ reason: 'NodemedicRebooted', type: 'Normal', message: `${this.node} is back after the reboot (episode ${plan.episodeId}); waiting up to ${this.r.recovery.timeout} for it to be healthy before uncordoning` });
    }
    if (plan.phase === 'recovering') {
      if (this.lease && plan.lease) {
        try {
          const own = await this.lease.findOwn();
          if (own) {
            this.lease.adopt(own);
            await this.lease.renew();
            this.lease.startRenewing((why) => this.logger.warn(why));
          }
        } catch (e) {
          this.logger.warn({ err: (e as Error).message }, 'cannot look up the reboot lease after the boot');
        }
      }
      this.scheduleRecovery();
    }
    if (plan.phase === 'recovery-failed') {
      this.rebootState = { required: true, reason: 'RecoveryFailed', message: plan.failure ?? 'the node did not recover after the reboot' };
    }
  }

  /** A cordon with our agent mark but no plan: the state was lost. Left as it is, and said loudly. */
  private async warnOrphanCordon(): Promise<void> {
    if (!this.api) return;
    try {
      const node = await this.api.getNode(this.node);
      const mark = markOf(node);
      if (node.spec?.unschedulable && mark.by === `agent/${this.node}`) {
        await this.event({
          reason: 'NodemedicRecoveryFailed',
          type: 'Warning',
          message: `${this.node} is cordoned by nodemedic (${node.metadata?.annotations?.[CORDONED_BY]}, ${mark.at ?? '?'}) but ${this.store.path} is gone; leaving it cordoned: run \`nodemedic uncordon\` once the node is healthy`,
        });
      }
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'cannot check the node for a leftover cordon');
    }
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

  /** One look at recovery: healthy → uncordon (ours only), release, done; past the deadline → give up. */
  private async checkRecovery(): Promise<void> {
    if (this.recovering) return this.recovering;
    this.recovering = this.checkRecoveryOnce().finally(() => {
      this.recovering = undefined;
    });
    return this.recovering;
  }

  private async checkRecoveryOnce(): Promise<void> {
    const plan = this.planCache;
    if (!plan || plan.phase !== 'recovering' || !plan.recovery) return;
    const now = this.d.clock.now();
    const since = Date.parse(plan.recovery.since);
    const fresh = this.lastResults.filter((r) => Date.parse(r.observedAt) >= since && this.r.triggers.includes(r.check));
    const problems = fresh.filter((r) => r.status === 'problem');
    const checksOk = fresh.some((r) => r.status === 'ok') && !problems.length;
    let nodeReady = !plan.kubernetes;
    let readyNote = '';
    if (plan.kubernetes && this.api) {
      try {
        nodeReady = isReady(await this.api.getNode(this.node));
        if (!nodeReady) readyNote = 'the Node is not Ready';
      } catch (e) {
        readyNote = `cannot read the Node (${(e as Error).message})`;
      }
    }
    if (checksOk && nodeReady) {
      await this.recovered(plan);
      return;
    }
    if (now < Date.parse(plan.recovery.deadline)) return;
    const why = [
      !fresh.length ? 'no check result since the boot' : problems.length ? problems.map((p) => `${p.check}: ${p.reason}`).join(', ') : !checksOk ? 'no trigger check is ok yet' : '',
      readyNote,
    ].filter(Boolean).join('; ');
    plan.phase = 'recovery-failed';
    plan.failure = `not healthy ${this.r.recovery.timeout} after the reboot (${why})`;
    await this.savePlan(plan);
    const msg = `${this.node} ${plan.failure}; it stays cordoned and no second reboot will be tried; fix it, then run \`nodemedic uncordon\``;
    this.rebootState = { required: true, reason: 'RecoveryFailed', message: msg };
    await this.event({ reason: 'NodemedicRecoveryFailed', type: 'Warning', message: msg });
    this.action('uncordon', 'skipped');
    try {
      await this.lease?.release();
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'cannot release the reboot lease');
    }
    this.d.onEpisodeEnd?.({ episodeId: plan.episodeId, outcome: 'recovery-failed', detail: msg });
    await this.publish();
  }

  private async recovered(plan: RebootPlan): Promise<void> {
    const notes: string[] = [];
    if (plan.kubernetes && this.api) {
      try {
        if (plan.cordon?.ours) {
          const u = await uncordon(this.api, this.node, plan.cordon.token);
          if (u === 'uncordoned') {
            this.action('uncordon', 'success');
            notes.push('uncordoned');
            await this.event({ reason: 'NodemedicUncordon', type: 'Normal', message: `uncordoned ${this.node}: healthy after the reboot (episode ${plan.episodeId})` });
          } else if (u === 'not-ours') {
            notes.push('left cordoned: the cordon mark is no longer ours');
          }
        } else if (plan.cordon?.preexistingBy) {
          notes.push(`left cordoned: it was cordoned by ${plan.cordon.preexistingBy} before`);
        }
        const l = await this.lease!.release();
        if (l === 'released') notes.push('released the reboot lease');
      } catch (e) {
        this.action('uncordon', 'failure');
        this.logger.warn({ err: (e as Error).message }, 'recovered, but cannot uncordon or release the lease yet; retrying');
        return;
      }
    }
    await this.store.remove();
    this.planCache = undefined;
    this.stopRecoveryTimer();
    const detail = `${this.node} recovered after the reboot${notes.length ? ` (${notes.join(', ')})` : ''}`;
    this.rebootState = { required: false, reason: 'Recovered', message: detail };
    await this.event({ reason: 'NodemedicRecovered', type: 'Normal', message: `${detail}; episode ${plan.episodeId}` });
    this.d.onEpisodeEnd?.({ episodeId: plan.episodeId, outcome: 'recovered', detail });
    await this.publish();
  }

  private stopRecoveryTimer(): void {
    if (this.recoveryTimer) clearTimeout(this.recoveryTimer);
    this.recoveryTimer = undefined;
  }

  /**
   * After every sweep: publish the Node conditions; advance recovery; retry an incomplete rollback.
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

  private async housekeepOnce(results: readonly CheckResult[]): Promise<void> {
    try {
      const plan = this.planCache;
      if (plan?.phase === 'recovering') await this.checkRecovery();
      else if (plan && (plan.phase === 'leasing' || plan.phase === 'cordoning' || plan.phase === 'draining') && !this.inflight && plan.failure) {
        await this.rollback(plan, plan.failure, 'failure');
      }
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
      plan: plan ? { episodeId: plan.episodeId, phase: plan.phase, since: plan.createdAt, lease: plan.lease ?? null, cordon: plan.cordon ?? null, failure: plan.failure ?? null, recovery: plan.recovery ?? null } : null,
      ...(this.planError ? { planError: this.planError } : {}),
      lastOutcome: this.lastOutcome ?? null,
      rebootRequired: this.rebootState ?? null,
    };
  }

  /**
   * Stops timers. A drain in progress is aborted and rolled back (bounded by the API timeouts); a
   * reboot already issued or a recovery in progress is left to the plan on disk.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopRecoveryTimer();
    this.drainAbort?.abort();
    if (this.inflight) {
      // Within systemd's TimeoutStopSec (30 s); what is left undone is in the plan for the next start.
      await Promise.race([this.inflight, new Promise((r) => setTimeout(r, 25_000).unref())]);
    }
    if (this.housekeeping) await Promise.race([this.housekeeping, new Promise((r) => setTimeout(r, 5_000).unref())]);
    this.lease?.stopRenewing();
  }
}
