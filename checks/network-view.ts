/**
 * The `network` check's latest finding, shared with other checks by node name: a `node-ready` problem
 * carries it (`evidence.network`), so an operator looking at a NotReady node sees at once whether this
 * node could reach the control plane, and which step failed, when it last looked.
 *
 * Only what the network check has already found: reading it never starts a probe and never waits (a
 * probe takes up to the check's timeout; a NotReady verdict does not wait for one). Evidence, never a
 * verdict of the reading check.
 */
import type { Finding } from './types.js';

/** What the network check publishes after each run. */
interface Published {
  /** The check instance that published it: only it withdraws it (a reload's new instance may already have replaced it). */
  owner: object;
  finding: Finding;
  /** When the probe ended, epoch ms on the check's clock. */
  observedAtMs: number;
}

/** The latest finding of the running `network` check, by node name (one per agent; a reload replaces it). */
const latest = new Map<string, Published>();

/** Records `finding` as `node`'s latest network finding, made by `owner` (the check instance) at `observedAtMs`. */
export function publishNetwork(node: string, owner: object, finding: Finding, observedAtMs: number): void {
  latest.set(node, { owner, finding, observedAtMs });
}

/** Removes `node`'s finding if `owner` published it (the check's `stop`: a disabled check leaves nothing stale). */
export function withdrawNetwork(node: string, owner: object): void {
  if (latest.get(node)?.owner === owner) latest.delete(node);
}

/**
 * The summary another check's evidence carries: status, reason, message, when, the API server, the
 * step that failed first, the node-side faults, and the recent-probe window (`{probes, reachable,
 * results}`, oldest first). Undefined when the network check has not run (disabled, or not yet).
 */
export function networkSummary(node: string): Record<string, unknown> | undefined {
  const p = latest.get(node);
  if (!p) return undefined;
  const e = p.finding.evidence ?? {};
  return {
    status: p.finding.status,
    reason: p.finding.reason,
    message: p.finding.message,
    observedAt: new Date(p.observedAtMs).toISOString(),
    ...('apiServer' in e ? { apiServer: e.apiServer } : {}),
    ...(e.failedStep !== undefined ? { failedStep: e.failedStep } : {}),
    ...('nodeFaults' in e ? { nodeFaults: e.nodeFaults } : {}),
    ...('recent' in e ? { recent: e.recent } : {}),
  };
}

/**
 * A `problem` finding with `node`'s latest network finding added as `evidence.network`; any other
 * finding, or a node whose network check has not run, unchanged. Synchronous: it never waits for a probe.
 */
export function withNetworkEvidence(f: Finding, node: string): Finding {
  if (f.status !== 'problem') return f;
  const network = networkSummary(node);
  if (!network) return f;
  return { ...f, evidence: { ...f.evidence, network } };
}
