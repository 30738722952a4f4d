/**
 * Cordon with ownership. nodemedic marks a node it cordons with annotations saying who, why, when, and
 * a token unique to that cordon, in the same patch that sets `spec.unschedulable`, so the node is never
 * cordoned by nodemedic without its owner record. It uncordons only a node whose token is still its own:
 * a node an administrator cordoned (no token, or another one) is never uncordoned by the agent.
 */
import type { V1Node } from '@kubernetes/client-node';
import { isStatus, type KubeApi } from '../../platform/kube-client.js';

export const CORDONED_BY = 'nodemedic.io/cordoned-by';
export const CORDON_TOKEN = 'nodemedic.io/cordon-token';
export const CORDON_REASON = 'nodemedic.io/cordon-reason';
export const CORDONED_AT = 'nodemedic.io/cordoned-at';
const ANNOTATIONS = [CORDONED_BY, CORDON_TOKEN, CORDON_REASON, CORDONED_AT] as const;

export interface CordonMark {
  /** `agent/<node>` for the agent's own reboot, `operator/<user>` for the CLI. */
  by: string;
  token: string;
  reason: string;
  /** ISO time. */
  at: string;
}

export type CordonOutcome =
  /** We set `unschedulable` and our mark. */
  | { state: 'cordoned'; node: V1Node }
  /** It was already cordoned with this very token (a resumed plan). */
  | { state: 'already-ours'; node: V1Node }
  /**
   * It was cordoned with our own `by` mark but another token: a cordon of ours whose plan was lost (a
   * PATCH the server applied after we gave up on it). It carries our token now and is ours to undo.
   */
  | { state: 'adopted'; node: V1Node }
  /**
   * Someone else cordoned it (an administrator, or another nodemedic mark; with `adoptOwnMark: false`,
   * any earlier cordon): we must never uncordon it.
   */
  | { state: 'already-cordoned'; by: string; node: V1Node };

export type UncordonOutcome = 'uncordoned' | 'not-ours' | 'not-cordoned' | 'node-gone';

export function markOf(node: V1Node): Partial<CordonMark> {
  const a = node.metadata?.annotations ?? {};
  return { by: a[CORDONED_BY], token: a[CORDON_TOKEN], reason: a[CORDON_REASON], at: a[CORDONED_AT] };
}

/** Who cordoned a cordoned node, for messages: the nodemedic mark, else "an administrator". */
export function cordonedBy(node: V1Node): string {
  const by = node.metadata?.annotations?.[CORDONED_BY];
  return by ? `nodemedic (${by})` : 'an administrator (no nodemedic mark)';
}

const CONFLICT_RETRIES = 5;

/**
 * Sets `spec.unschedulable: true` and the mark in one strategic merge patch carrying the node's
 * `resourceVersion`, so a concurrent change (an administrator's cordon) makes it 409 and we look again
 * rather than claim a cordon that is not ours.
 */
export async function cordon(api: KubeApi, name: string, mark: CordonMark, opts: { adoptOwnMark?: boolean } = {}): Promise<CordonOutcome> {
  for (let attempt = 0; ; attempt++) {
    const node = await api.getNode(name);
    if (node.spec?.unschedulable) {
      const cur = markOf(node);
      if (cur.token === mark.token) return { state: 'already-ours', node };
      if (cur.by !== mark.by || opts.adoptOwnMark === false) return { state: 'already-cordoned', by: cordonedBy(node), node };
    }
    const adopting = !!node.spec?.unschedulable;
    try {
      const patched = await api.patchNode(name, {
        metadata: {
          resourceVersion: node.metadata?.resourceVersion,
          annotations: { [CORDONED_BY]: mark.by, [CORDON_TOKEN]: mark.token, [CORDON_REASON]: mark.reason, [CORDONED_AT]: mark.at },
        },
        spec: { unschedulable: true },
      });
      return { state: adopting ? 'adopted' : 'cordoned', node: patched };
    } catch (e) {
      if (isStatus(e, 409) && attempt < CONFLICT_RETRIES) continue;
      throw e;
    }
  }
}

/**
 * Uncordons only when the node still carries `token`; removes the mark in the same patch. Without a
 * token (`undefined`) it uncordons whatever the mark: that is the operator's explicit `nodemedic uncordon`.
 */
export async function uncordon(api: KubeApi, name: string, token: string | undefined): Promise<UncordonOutcome> {
  for (let attempt = 0; ; attempt++) {
    let node: V1Node;
    try {
      node = await api.getNode(name);
    } catch (e) {
      if (isStatus(e, 404)) return 'node-gone';
      throw e;
    }
    const cur = markOf(node);
    if (token !== undefined && cur.token !== token) return node.spec?.unschedulable ? 'not-ours' : 'not-cordoned';
    const hasMark = ANNOTATIONS.some((k) => node.metadata?.annotations?.[k] !== undefined);
    if (!node.spec?.unschedulable && !hasMark) return 'not-cordoned';
    const removeMark: Record<string, null> = {};
    for (const k of ANNOTATIONS) if (node.metadata?.annotations?.[k] !== undefined) removeMark[k] = null;
    try {
      await api.patchNode(name, {
        metadata: { resourceVersion: node.metadata?.resourceVersion, ...(hasMark ? { annotations: removeMark } : {}) },
        spec: { unschedulable: false },
      });
      return node.spec?.unschedulable ? 'uncordoned' : 'not-cordoned';
    } catch (e) {
      if (isStatus(e, 409) && attempt < CONFLICT_RETRIES) continue;
      throw e;
    }
  }
}
