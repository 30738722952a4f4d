/**
 * The guards that need the whole cluster, run only while holding a reboot slot (so two agents cannot
 * both pass them on the same picture), cheap before dear: the storm guard (Nodes and slot holders),
 * then this node's drain plan, then the capacity guard (every running pod). Each fails closed; an API
 * error is a refusal too.
 */
import type { KubeApi } from '../../platform/kube-client.js';
import type { RemediationOptions } from '../config.js';
import { capacityGuard, stormGuard, type GuardVerdict } from './guards.js';
import type { RebootLease } from './lease.js';
import { describeBlocked, planPods, type DrainPodPlan } from './pods.js';

export type BlockersVerdict = { ok: true; details: string[]; podPlan: DrainPodPlan } | { ok: false; verdict: GuardVerdict & { ok: false } };

export async function checkBlockers(api: KubeApi, lease: RebootLease, self: string, r: RemediationOptions): Promise<BlockersVerdict> {
  const details: string[] = [];
  try {
    const nodes = await api.listNodes();
    if (!nodes.some((n) => n.metadata?.name === self)) return { ok: false, verdict: { ok: false, guard: 'api', detail: `node ${self} is not in the cluster's node list (check nodeName)` } };
    const holders = (await lease.heldSlots()).map((s) => s.holder);
    const storm = stormGuard(nodes, self, r.maxUnhealthyNodes, holders);
    if (!storm.ok) return { ok: false, verdict: storm };
    details.push(storm.detail);
    const podPlan = planPods(await api.listPods(`spec.nodeName=${self}`), r.drain);
    if (podPlan.blocked.length) return { ok: false, verdict: { ok: false, guard: 'drain-plan', detail: describeBlocked(podPlan.blocked) } };
    const running = await api.listPods('status.phase!=Succeeded,status.phase!=Failed');
    const capacity = capacityGuard(nodes, running, self, podPlan.evict.map((p) => p.pod));
    if (!capacity.ok) return { ok: false, verdict: capacity };
    details.push(capacity.detail);
    return { ok: true, details, podPlan };
  } catch (e) {
    return { ok: false, verdict: { ok: false, guard: 'api', detail: `the API server could not confirm it is safe (${(e as Error).message})` } };
  }
}

/**
 * The storm guard alone, without a slot, for restarting a container runtime (issue 11: a cluster-wide
 * cause must not restart every node's runtime at once). Slot holders count as out.
 */
export async function stormOnly(api: KubeApi, lease: RebootLease, self: string, r: RemediationOptions): Promise<GuardVerdict> {
  try {
    const nodes = await api.listNodes();
    const holders = (await lease.heldSlots()).map((s) => s.holder);
    return stormGuard(nodes, self, r.maxUnhealthyNodes, holders);
  } catch (e) {
    return { ok: false, guard: 'api', detail: `the API server could not confirm it is safe (${(e as Error).message})` };
  }
}
