/**
 * What the agent's ladder does while `nodemedic maintain` works on the node: it starts no episode for
 * the checks the maintenance disturbs (an upgrade restarts kubelet, a reexec makes PID 1 pause; the
 * ladder must not "cure" that), and an episode already under way takes no step until the maintenance
 * ends, as under a pause. The maintenance is seen in the drain-reboot plan, `<stateDir>/drain-reboot.json`,
 * which `nodemedic maintain` writes atomically (remediations/kubernetes/plan.ts) and removes when it
 * ends; the ladder reads it before every decision, as it reads `pause.json`, and never writes it.
 *
 * A failed maintenance keeps holding the ladder back until an operator runs `nodemedic uncordon`: the
 * node stays cordoned and half-maintained, and remediation is for nodes that were fine before.
 */
import type { CheckResult } from '../checks/types.js';
import { PlanStore, type MaintenanceRecord, type PlanPhase } from './kubernetes/plan.js';

/** A maintenance in progress (or failed), as the ladder and `/status` see it. */
export interface MaintenanceView extends MaintenanceRecord {
  /** The plan's phase: `leasing` … `maintaining`, `maintenance-failed`, or `rebooting`/`recovering` with `--reboot`. */
  phase: PlanPhase;
  /** When the maintenance began (ISO). */
  since: string;
  /** Why it failed, for `maintenance-failed` (and `recovery-failed` after its reboot). */
  failure?: string;
}

/**
 * The maintenance recorded in `stateDir`, or null. An unreadable plan is not taken for a maintenance
 * (`error` says why; the drain-reboot side reports it too): unlike a pause, nobody meant it to stop the ladder.
 */
export async function readMaintenance(stateDir: string): Promise<{ maintenance: MaintenanceView | null; error?: string }> {
  try {
    const plan = await new PlanStore(stateDir).read();
    if (!plan?.maintenance) return { maintenance: null };
    return { maintenance: { ...plan.maintenance, phase: plan.phase, since: plan.createdAt, ...(plan.failure ? { failure: plan.failure } : {}) } };
  } catch (e) {
    return { maintenance: null, error: (e as Error).message };
  }
}

/**
 * Before a decision: `hold` (decide nothing now) when an episode is active during a maintenance, else the
 * results to decide on, without the disturbed checks', so no episode starts for them and their grace
 * period begins afresh once the maintenance has ended. Pure.
 */
export function maintenanceGate(
  episodeActive: boolean,
  results: readonly CheckResult[],
  m: MaintenanceView | null,
): { hold: string } | { results: readonly CheckResult[] } {
  if (!m) return { results };
  const what = `maintenance in progress (${m.by}: ${m.work}; ${m.reason}; phase ${m.phase})`;
  if (episodeActive) return { hold: `${what}: the episode takes no step until it ends` };
  return { results: results.filter((r) => !m.checks.includes(r.check)) };
}

/** `/status`'s `remediation.maintenance`: the maintenance, an error reading it, or null. */
export function maintenanceStatus(r: { maintenance: MaintenanceView | null; error?: string }): MaintenanceView | { error: string } | null {
  return r.error ? { error: `cannot read the drain-reboot plan: ${r.error}` } : r.maintenance;
}
