/**
 * `nodemedic maintain` on the Kubernetes side: the runbook's maintenance flow (排空 → 维护 → 可调度) run
 * as a drain-reboot whose reboot is replaced, or preceded, by the operator's work. The slot, the guards,
 * the cordon, the drain and the rollback are the drain-reboot's own (rebooter.ts); this file holds what
 * only maintenance has: the request's shape and the `UnderMaintenance` Node condition.
 *
 * The plan (plan.ts) is the maintenance's one record: it carries `maintenance` from its creation, so the
 * agent's ladder sees the maintenance (remediations/maintenance.ts) and its drain-reboot finds the plan
 * taken; it moves `leasing → cordoning → draining → maintaining`, then either ends (uncordon, slot
 * released, plan removed), or stays as `maintenance-failed` (node cordoned, slot released), or, with
 * `--reboot`, becomes `rebooting` and the agent's post-boot recovery finishes it like any reboot.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.js';
import type { KubeApi } from '../../platform/kube-client.js';
import type { CheckResult } from '../../checks/types.js';
import { rfc3339 } from './conditions.js';

/** The Node condition a maintenance writes: `True` while it runs or after it failed, `False` once it ended. */
export const MAINTENANCE_CONDITION = 'UnderMaintenance';

/** The condition's reasons, stable (docs/CONTRACT.md). */
export type MaintenanceConditionReason =
  /** The work runs (or the node's health is awaited after it, or the reboot it asked for). */
  | 'MaintenanceInProgress'
  /** The work failed or timed out, or the node was not healthy after it: the node stays cordoned. */
  | 'MaintenanceFailed'
  /** The maintenance ended well: healthy, uncordoned, slot released. */
  | 'MaintenanceDone'
  /** An operator ended a failed maintenance (`nodemedic uncordon`). */
  | 'MaintenanceCleared';

/** What `nodemedic maintain` asks of the drain-reboot controller (DrainRebootRequest.maintenance). */
export interface MaintenanceRequest {
  /** The work on the node, after the drain. Resolves ok or not; must not reject. */
  work(signal: AbortSignal): Promise<{ ok: boolean; detail: string }>;
  /** Reboot after successful work; the agent's post-boot recovery then uncordons and releases the slot. */
  reboot: boolean;
  /**
   * Fresh results of the node's trigger checks, to judge its health after the work (without a reboot).
   * Each call runs the checks again.
   */
  checkNow(): Promise<readonly CheckResult[]>;
  /** The trigger checks `checkNow` runs (the enabled ones); none: the Node's Ready alone is judged. */
  triggers: readonly string[];
  /** Where the work's output is kept, recorded in the plan for `/status`. */
  log?: string;
  /** Between two looks at the node's health. Default 2 s. */
  pollMs?: number;
  /** Who cordons: `operator/<user>`; an earlier cordon (even by the same person) is never adopted. */
  by: string;
  /** The check ids the maintenance disturbs (recorded in the plan for the agent's ladder). */
  checks: string[];
  /** What is done, in words, for the plan, the Events and `/status`: the command line, or `systemd upgrade`. */
  what: string;
}

/**
 * Writes `UnderMaintenance` alone, by a strategic merge patch on `nodes/status` (conditions merge on
 * `type`): the agent's own conditions, which it publishes from its sweeps, are untouched. Never throws.
 */
export async function publishMaintenanceCondition(
  api: KubeApi,
  node: string,
  clock: Clock,
  logger: Logger,
  c: { status: 'True' | 'False'; reason: MaintenanceConditionReason; message: string },
): Promise<void> {
  const now = rfc3339(clock.now());
  try {
    await api.patchNodeStatus(node, {
      status: { conditions: [{ type: MAINTENANCE_CONDITION, status: c.status, reason: c.reason, message: c.message.slice(0, 1024), lastHeartbeatTime: now, lastTransitionTime: now }] },
    });
  } catch (e) {
    logger.warn({ err: (e as Error).message }, `cannot write the ${MAINTENANCE_CONDITION} condition`);
  }
}
