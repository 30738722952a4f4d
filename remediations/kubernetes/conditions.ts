/**
 * Node conditions on `nodes/status`, named as node-problem-detector names them so tools that already
 * consume NPD conditions work: `KubeletUnhealthy`, `ContainerRuntimeUnhealthy`, plus `PLEGUnhealthy` and
 * `RebootRequired`. Which check feeds which condition each check says itself (`nodeCondition` in
 * checks/types.ts; the kernel check feeds two, `KernelDeadlock` and `ReadonlyFilesystem`); `RebootRequired` is the drain-reboot side's own. Status `True` means the problem is present. Patched with a strategic merge patch:
 * `status.conditions` merges on `type` (NodeStatus: patchStrategy merge, patchMergeKey type), so the
 * kubelet's own conditions are untouched.
 *
 * Written NPD's way (node-problem-detector, pkg/exporters/k8sexporter/condition): only when a
 * condition's status or reason changes, plus a heartbeat (`kubernetes.conditionHeartbeat`, default
 * 5m) that refreshes `lastHeartbeatTime` and the messages. A message alone never causes a write, and
 * the healthy messages are fixed words: the checks' latencies and counts belong to their evidence
 * (/status), where they cost nothing; on the Node they would be a write per node per sweep, fanned out
 * to every Node watcher in the cluster (NPD#661, kubernetes#47899).
 */
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.js';
import { CHECK_DEFINITIONS } from '../../checks/index.js';
import { nodeConditionsOf, type CheckDefinition, type CheckResult } from '../../checks/types.js';
import type { KubeApi } from '../../platform/kube-client.js';

/** A check's condition (`nodeCondition.type`), or `RebootRequired`. */
export type ConditionType = string;
export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface DesiredCondition {
  type: ConditionType;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/** What the drain-reboot side says about `RebootRequired`; undefined: nothing requested. */
export interface RebootState {
  required: boolean;
  reason: string;
  message: string;
}

/** The order conditions were published in before checks declared them; others follow in registry order. */
const FIRST = ['KubeletUnhealthy', 'ContainerRuntimeUnhealthy', 'PLEGUnhealthy'];

interface ConditionSource {
  type: ConditionType;
  healthyReason: string;
  checks: string[];
  /** Per check, `unknown` reasons that publish nothing (NodeConditionSpec.silentWhen). */
  silent?: Record<string, readonly string[]>;
  /** Per check, this condition's share of its result (NodeConditionSpec.select). */
  select?: Record<string, (r: CheckResult) => CheckResult>;
}

/** The conditions the registered checks declare, each with the checks that feed it. Pure. */
export function conditionSources(defs: readonly CheckDefinition<any>[] = CHECK_DEFINITIONS): ConditionSource[] {
  const by = new Map<string, ConditionSource>();
  for (const d of defs) {
    for (const spec of nodeConditionsOf(d)) {
      const c = by.get(spec.type) ?? { type: spec.type, healthyReason: spec.healthyReason, checks: [] };
      c.checks.push(d.id);
      if (spec.silentWhen) (c.silent ??= {})[d.id] = spec.silentWhen;
      if (spec.select) (c.select ??= {})[d.id] = spec.select;
      by.set(c.type, c);
    }
  }
  const rank = (t: string): number => (FIRST.includes(t) ? FIRST.indexOf(t) : FIRST.length);
  return [...by.values()].sort((a, b) => rank(a.type) - rank(b.type));
}

function fromResults(type: ConditionType, healthyReason: string, rs: CheckResult[]): DesiredCondition | undefined {
  if (!rs.length) return undefined;
  const problem = rs.find((r) => r.status === 'problem');
  if (problem) return { type, status: 'True', reason: problem.reason, message: `${problem.check}: ${problem.message}` };
  const ok = rs.filter((r) => r.status === 'ok');
  // A node runs one runtime: the other's check says "not installed" (unknown), which is not a problem.
  // The healthy message names the checks and their reasons only: an ok check's message carries numbers (latencies).
  if (ok.length) return { type, status: 'False', reason: healthyReason, message: ok.map((r) => `${r.check}: ok (${r.reason})`).join('; ') };
  const u = rs[0]!;
  return { type, status: 'Unknown', reason: u.reason, message: rs.map((r) => `${r.check}: ${r.message}`).join('; ') };
}

/** The conditions to publish for the latest results; a disabled check publishes nothing. Pure. */
export function desiredConditions(
  results: readonly CheckResult[],
  reboot: RebootState | undefined,
  sources: readonly ConditionSource[] = conditionSources(),
): DesiredCondition[] {
  const out: DesiredCondition[] = [];
  for (const s of sources) {
    const mine = results
      .filter((r) => s.checks.includes(r.check) && !(r.status === 'unknown' && s.silent?.[r.check]?.includes(r.reason)))
      .map((r) => s.select?.[r.check]?.(r) ?? r);
    const c = fromResults(s.type, s.healthyReason, mine);
    if (c) out.push(c);
  }
  out.push(
    reboot?.required
      ? { type: 'RebootRequired', status: 'True', reason: reboot.reason, message: reboot.message }
      : { type: 'RebootRequired', status: 'False', reason: reboot?.reason ?? 'NoRebootRequired', message: reboot?.message ?? 'nodemedic has not requested a reboot' },
  );
  return out;
}

/** RFC 3339 with seconds, as metav1.Time is written. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

interface Published extends DesiredCondition {
  lastTransitionTime: string;
}

export interface PublisherOptions {
  /** Re-send unchanged conditions this often, so `lastHeartbeatTime` shows the agent is alive. Default 5m. */
  heartbeatMs?: number;
  /** Monotonic milliseconds, for the heartbeat interval. Default `performance.now`. */
  monotonic?: () => number;
  /** [0, 1), for the heartbeat's jitter. */
  random?: () => number;
}

export class ConditionPublisher {
  private published = new Map<ConditionType, Published>();
  /** Monotonic time of the next heartbeat; undefined: nothing written yet. */
  private nextHeartbeat: number | undefined;
  private loaded = false;
  private readonly heartbeatMs: number;
  private readonly monotonic: () => number;
  private readonly random: () => number;
  /** Patches written, for /status and tests. */
  writes = 0;

  constructor(
    private readonly api: KubeApi,
    private readonly nodeName: string,
    private readonly clock: Clock,
    private readonly logger: Logger,
    opts: PublisherOptions = {},
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? 5 * 60_000;
    this.monotonic = opts.monotonic ?? (() => performance.now());
    this.random = opts.random ?? Math.random;
  }

  /**
   * Patches when a condition's status or reason changed, or the heartbeat is due. Never throws;
   * returns whether it patched.
   */
  async publish(desired: readonly DesiredCondition[]): Promise<boolean> {
    const now = this.clock.now();
    try {
      if (!this.loaded) await this.loadExisting();
      const changed = desired.some((d) => {
        const p = this.published.get(d.type);
        return !p || p.status !== d.status || p.reason !== d.reason;
      });
      if (!changed && this.nextHeartbeat !== undefined && this.monotonic() < this.nextHeartbeat) return false;
      const next: Published[] = desired.map((d) => {
        const p = this.published.get(d.type);
        return { ...d, lastTransitionTime: p && p.status === d.status ? p.lastTransitionTime : rfc3339(now) };
      });
      await this.api.patchNodeStatus(this.nodeName, {
        status: { conditions: next.map((c) => ({ ...c, lastHeartbeatTime: rfc3339(now) })) },
      });
      for (const c of next) this.published.set(c.type, c);
      // 90-100 % of the period: agents started together (a rollout) drift apart instead of beating in step.
      this.nextHeartbeat = this.monotonic() + this.heartbeatMs * (0.9 + 0.1 * this.random());
      this.writes++;
      return true;
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'cannot publish node conditions');
      return false;
    }
  }

  /** Keeps the transition times already on the Node across an agent restart. */
  private async loadExisting(): Promise<void> {
    const node = await this.api.getNode(this.nodeName);
    for (const c of node.status?.conditions ?? []) {
      if (c.type !== 'RebootRequired' && !conditionSources().some((s) => s.type === c.type)) continue;
      const t = c.lastTransitionTime as unknown;
      this.published.set(c.type as ConditionType, {
        type: c.type as ConditionType,
        status: c.status as ConditionStatus,
        reason: c.reason ?? '',
        message: c.message ?? '',
        lastTransitionTime: t instanceof Date ? rfc3339(t.getTime()) : String(t ?? rfc3339(this.clock.now())),
      });
    }
    this.loaded = true;
  }
}
