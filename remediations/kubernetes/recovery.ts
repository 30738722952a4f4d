/**
 * Post-boot recovery, judged: the node is healthy when the trigger checks observed since the boot are
 * ok and its Node is Ready. API trouble says nothing about this node (an unreachable control plane is
 * `unknown`, never a failure), and neither do checks that cannot tell: that time does not count
 * against `recovery.timeout`. Only time in which the API answered and the checks were judged and bad
 * counts, so `recovery-failed` means the node's own checks stayed bad.
 */
import type { CheckResult } from '../../checks/types.js';

/** Check reasons that mean "not on this node" rather than "cannot tell". */
const NOT_HERE = new Set(['NotInstalled', 'NotRunning']);

export type RecoveryLook =
  | { kind: 'healthy' }
  /** Nothing can be judged now (API unreachable, no fresh result, checks unknown): waiting, time not counted. */
  | { kind: 'unknown'; why: string; apiUnreachable: boolean }
  /** Judged and not healthy: this time counts against `recovery.timeout`. */
  | { kind: 'bad'; why: string };

/** What reading the Node gave: its readiness, an error (the API did not answer), or no Kubernetes at all. */
export type NodeLook = { ready: boolean } | { error: string } | 'no-kubernetes';

export function lookAtRecovery(results: readonly CheckResult[], triggers: readonly string[], sinceMs: number, node: NodeLook): RecoveryLook {
  if (typeof node === 'object' && 'error' in node) return { kind: 'unknown', why: `cannot read the Node (${node.error})`, apiUnreachable: true };
  const fresh = results.filter((r) => triggers.includes(r.check) && Date.parse(r.observedAt) >= sinceMs);
  if (!fresh.length) return { kind: 'unknown', why: 'no trigger check result since the boot yet', apiUnreachable: false };
  const problems = fresh.filter((r) => r.status === 'problem');
  if (problems.length) return { kind: 'bad', why: problems.map((p) => `${p.check}: ${p.reason}`).join(', ') };
  const unclear = fresh.filter((r) => r.status === 'unknown' && !NOT_HERE.has(r.reason));
  if (unclear.length || !fresh.some((r) => r.status === 'ok')) {
    return { kind: 'unknown', why: `trigger checks cannot tell yet (${unclear.map((u) => `${u.check}: ${u.reason}`).join(', ') || 'none ok'})`, apiUnreachable: false };
  }
  if (node !== 'no-kubernetes' && !node.ready) return { kind: 'bad', why: 'the checks are ok but the Node is not Ready' };
  return { kind: 'healthy' };
}

/** Whether the trigger checks say this node is fine (for uncordoning an orphan cordon of ours). */
export function checksOk(results: readonly CheckResult[], triggers: readonly string[]): boolean {
  const trig = results.filter((r) => triggers.includes(r.check));
  return trig.some((r) => r.status === 'ok') && !trig.some((r) => r.status === 'problem' || (r.status === 'unknown' && !NOT_HERE.has(r.reason)));
}
