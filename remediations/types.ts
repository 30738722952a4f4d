import type { CheckResult } from '../checks/types.js';

/** Metric label values for `nodemedic_remediation_actions_total` (SPEC.md). */
export type ActionName =
  | 'restart_kubelet'
  | 'restart_docker'
  | 'restart_containerd'
  | 'cordon'
  | 'drain'
  | 'reboot'
  | 'uncordon';
export type ActionResult = 'success' | 'failure' | 'dry_run' | 'skipped';

/** Counts actions for `/metrics`; provided by the agent. */
export type ActionRecorder = (action: ActionName, result: ActionResult) => void;

/**
 * The agent's remediation component: fed every sweep's results, it decides and acts.
 * Implementations never throw out of these methods; failures are logged and recorded.
 */
export interface Remediator {
  /** Loads persisted state; resumes an episode that was in progress. */
  start(): Promise<void>;
  /** Called after every sweep with the latest results of all checks. */
  afterSweep(results: readonly CheckResult[]): Promise<void>;
  /** JSON for `/status`'s `remediation` field. */
  status(): Record<string, unknown>;
  /** Finishes or safely abandons what is in flight. */
  stop(): Promise<void>;
}

/**
 * The ladder's last step. Without Kubernetes it only records the request; with Kubernetes access it
 * runs guards, takes the reboot Lease, cordons, drains and reboots (issue 5).
 */
export interface DrainRebooter {
  requestDrainReboot(req: { episodeId: string; reason: string; dryRun: boolean }): Promise<{
    result: ActionResult;
    /** Why, in one sentence, for logs, `/status` and events. */
    detail: string;
  }>;
}
