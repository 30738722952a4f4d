/**
 * `mode: approve` on the Node: the agent shows its proposal as an annotation (and an Event), and a
 * person answers with another annotation naming the proposal's id, from anywhere kubectl reaches:
 *
 *   kubectl annotate node NODE nodemedic.io/approve=<id>     # or nodemedic.io/reject=<id>
 *
 * (`nodemedic approve --node NODE` does the same). The id changes with every proposal, so an answer
 * left on the Node never approves a later one.
 */
import type { V1Node } from '@kubernetes/client-node';
import type { KubeApi } from '../../platform/kube-client.js';
import type { ApprovalAnswer, Proposal } from '../types.js';

/** JSON `{ id, step, action, unit?, reason, expiresAt }` of the proposal waiting on this node. */
export const PROPOSAL_ANNOTATION = 'nodemedic.io/proposal';
export const APPROVE_ANNOTATION = 'nodemedic.io/approve';
export const REJECT_ANNOTATION = 'nodemedic.io/reject';
/** Who answered, when the answer came from `nodemedic approve --node` (kubectl users need not set it). */
export const ANSWERED_BY_ANNOTATION = 'nodemedic.io/answered-by';

/** What the proposal annotation holds. */
export interface ProposalNotice {
  id: string;
  step: string;
  action: string | null;
  unit?: string;
  reason: string;
  /** ISO-8601. */
  expiresAt: string;
}

export function proposalNotice(p: Proposal): ProposalNotice {
  return { id: p.id, step: p.step, action: p.action, ...(p.unit ? { unit: p.unit } : {}), reason: p.reason, expiresAt: new Date(p.expiresAt).toISOString() };
}

/** The proposal shown on a Node, if any (for `nodemedic approve --node`). */
export function proposalOnNode(node: V1Node): ProposalNotice | { error: string } | null {
  const text = node.metadata?.annotations?.[PROPOSAL_ANNOTATION];
  if (!text) return null;
  try {
    const p = JSON.parse(text) as Partial<ProposalNotice>;
    if (typeof p.id !== 'string' || typeof p.step !== 'string') throw new Error('no id or step');
    return p as ProposalNotice;
  } catch (e) {
    return { error: `annotation ${PROPOSAL_ANNOTATION} is not a proposal (${(e as Error).message})` };
  }
}

/** The answer on the Node for proposal `id`, or null (none, or one for another proposal). */
export function answerOnNode(node: V1Node, id: string): ApprovalAnswer | null {
  const a = node.metadata?.annotations ?? {};
  const by = a[ANSWERED_BY_ANNOTATION] || 'a Node annotation';
  // A rejection wins over an approval for the same id: two people disagreeing means no.
  if (a[REJECT_ANNOTATION] === id) return { id, decision: 'reject', by };
  if (a[APPROVE_ANNOTATION] === id) return { id, decision: 'approve', by };
  return null;
}

/**
 * Shows `p` on the Node, or (null) removes what was shown; answers left from an earlier proposal go
 * either way. A strategic merge patch of the annotations only (null deletes a key).
 */
export async function showProposal(api: KubeApi, node: string, p: Proposal | null): Promise<void> {
  await api.patchNode(node, {
    metadata: {
      annotations: {
        [PROPOSAL_ANNOTATION]: p ? JSON.stringify(proposalNotice(p)) : null,
        [APPROVE_ANNOTATION]: null,
        [REJECT_ANNOTATION]: null,
        [ANSWERED_BY_ANNOTATION]: null,
      },
    },
  });
}

/** Writes an answer on the Node (`nodemedic approve --node`). */
export async function answerProposal(api: KubeApi, node: string, a: ApprovalAnswer): Promise<void> {
  await api.patchNode(node, {
    metadata: {
      annotations: {
        [a.decision === 'approve' ? APPROVE_ANNOTATION : REJECT_ANNOTATION]: a.id,
        [ANSWERED_BY_ANNOTATION]: a.by,
      },
    },
  });
}
