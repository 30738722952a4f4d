/**
 * The checks that must all pass before nodemedic cordons its node: pure functions of what the API
 * server returned and the clock. Each fails closed; the caller turns an API error into a refusal too.
 */
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { CORDONED_BY } from './cordon.js';
import { podId, podRequests, type Resources } from './pods.js';
import { formatCpu, formatMemory, parseQuantity } from '../../platform/quantity.js';

export type GuardName = 'window' | 'storm' | 'capacity' | 'lease' | 'drain-plan' | 'api';

export type GuardVerdict = { ok: true; detail: string } | { ok: false; guard: GuardName; detail: string };

export function isReady(node: V1Node): boolean {
  return node.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
}

/**
 * Cordoned by a nodemedic agent for its own drain-reboot (mark `agent/<node>`). An operator's
 * `nodemedic cordon` is planned maintenance, not a sign of a storm; the capacity guard accounts for it.
 */
export function isCordonedByNodemedic(node: V1Node): boolean {
  return !!node.spec?.unschedulable && (node.metadata?.annotations?.[CORDONED_BY] ?? '').startsWith('agent/');
}

/**
 * How many nodes may be out at once, this one included. A count (`maxUnhealthyNodes: 2`) is the most
 * *other* nodes that may be out, so this one makes it count + 1. A percentage is of all nodes, this one
 * included, rounded down but never below one (this node alone, else a small cluster could never heal):
 * `10%` of 10–19 nodes is 1 — this node and no other (issue 11: it used to let one more through).
 * `maxUnhealthyNodes` is validated by the config schema; anything else here is a bug, so it throws.
 */
export function outLimit(max: number | string, total: number): number {
  if (typeof max === 'number') return max + 1;
  const m = /^(\d{1,3})%$/.exec(max);
  if (!m) throw new RangeError(`remediation.maxUnhealthyNodes: not a count or a percentage: ${JSON.stringify(max)}`);
  return Math.max(1, Math.floor((Number(m[1]) * total) / 100));
}

/** The most other nodes that may be unhealthy while this one goes out. */
export function unhealthyLimit(max: number | string, total: number): number {
  return outLimit(max, total) - 1;
}

/**
 * Storm guard: when more than `maxUnhealthyNodes` of the other nodes are out — NotReady, cordoned by
 * nodemedic, or holding a reboot slot (draining, rebooting or recovering, whatever their Node says) —
 * something cluster-wide is wrong (a control-plane outage makes every node look NotReady) and taking
 * one more node out would make it worse. This node is not counted among the others: it being unhealthy
 * is why we are here. `slotHolders`: the holders of reboot Leases (node names).
 */
export function stormGuard(nodes: readonly V1Node[], self: string, max: number | string, slotHolders: readonly string[] = []): GuardVerdict {
  const others = nodes.filter((n) => n.metadata?.name !== self);
  const notReady = others.filter((n) => !isReady(n)).map((n) => n.metadata?.name ?? '?');
  const cordoned = others.filter((n) => isReady(n) && isCordonedByNodemedic(n)).map((n) => n.metadata?.name ?? '?');
  const counted = new Set([...notReady, ...cordoned]);
  const holding = [...new Set(slotHolders)].filter((h) => h !== self && !counted.has(h));
  const unhealthy = notReady.length + cordoned.length + holding.length;
  const limit = unhealthyLimit(max, nodes.length);
  const what = `${unhealthy} of the ${others.length} other nodes are NotReady, cordoned by nodemedic or holding a reboot slot` +
    (unhealthy ? ` (NotReady: ${notReady.join(', ') || 'none'}; cordoned by nodemedic: ${cordoned.join(', ') || 'none'}; holding a slot: ${holding.join(', ') || 'none'})` : '');
  const rule = `remediation.maxUnhealthyNodes is ${JSON.stringify(max)}, i.e. at most ${limit + 1} of ${nodes.length} nodes out, this one included`;
  if (unhealthy > limit) return { ok: false, guard: 'storm', detail: `storm guard: ${what}; ${rule}` };
  return { ok: true, detail: `storm guard: ${what}; ${rule}` };
}

function hasBlockingTaint(node: V1Node): boolean {
  return (node.spec?.taints ?? []).some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
}

interface Room extends Resources {
  name: string;
  pods: number;
}

/**
 * Capacity guard: the CPU and memory requests of the pods to evict must fit into the free allocatable of
 * the other Ready, schedulable, untainted nodes. Placement is first-fit decreasing, pod by pod, so one
 * large pod that fits nowhere refuses the drain even when the total would fit. Node selectors,
 * affinities and tolerations are not modelled: this is the runbook's "do the others have room", not a
 * scheduler; a pod that cannot be placed for those reasons stays Pending, and its PDB, if any, holds the drain.
 */
export function capacityGuard(nodes: readonly V1Node[], runningPods: readonly V1Pod[], self: string, toEvict: readonly V1Pod[]): GuardVerdict {
  const rooms = new Map<string, Room>();
  for (const n of nodes) {
    const name = n.metadata?.name ?? '';
    if (name === self || !isReady(n) || n.spec?.unschedulable || hasBlockingTaint(n)) continue;
    const a = n.status?.allocatable ?? {};
    rooms.set(name, {
      name,
      cpu: a.cpu !== undefined ? parseQuantity(a.cpu) : 0,
      memory: a.memory !== undefined ? parseQuantity(a.memory) : 0,
      pods: a.pods !== undefined ? parseQuantity(a.pods) : 110,
    });
  }
  for (const p of runningPods) {
    const room = rooms.get(p.spec?.nodeName ?? '');
    if (!room) continue;
    const r = podRequests(p);
    room.cpu -= r.cpu;
    room.memory -= r.memory;
    room.pods -= 1;
  }
  const free = [...rooms.values()];
  const total = (): string =>
    `free on ${free.length} other Ready schedulable nodes: cpu ${formatCpu(sum(free, 'cpu'))}, memory ${formatMemory(sum(free, 'memory'))}`;
  const need = toEvict.map((pod) => ({ pod, r: podRequests(pod) }));
  const needTotal = `the ${need.length} pods to evict request cpu ${formatCpu(need.reduce((s, x) => s + x.r.cpu, 0))}, memory ${formatMemory(need.reduce((s, x) => s + x.r.memory, 0))}`;
  if (need.length && !free.length) {
    return { ok: false, guard: 'capacity', detail: `capacity guard: ${needTotal} but there is no other Ready schedulable node` };
  }
  need.sort((a, b) => b.r.memory - a.r.memory || b.r.cpu - a.r.cpu);
  for (const { pod, r } of need) {
    const fits = free.filter((room) => room.cpu >= r.cpu && room.memory >= r.memory && room.pods >= 1);
    if (!fits.length) {
      return {
        ok: false,
        guard: 'capacity',
        detail: `capacity guard: ${needTotal}; pod ${podId(pod)} (cpu ${formatCpu(r.cpu)}, memory ${formatMemory(r.memory)}) fits on no other node; ${total()}`,
      };
    }
    const best = fits.reduce((a, b) => (b.memory > a.memory ? b : a));
    best.cpu -= r.cpu;
    best.memory -= r.memory;
    best.pods -= 1;
  }
  return { ok: true, detail: `capacity guard: ${needTotal}; they fit (after placing them, ${total()})` };
}

function sum(rooms: Room[], k: 'cpu' | 'memory'): number {
  return rooms.reduce((s, r) => s + Math.max(0, r[k]), 0);
}

/** `HH:MM-HH:MM` in UTC; a window whose end is before its start spans midnight. Empty: any time. */
export function windowGuard(window: string, nowMs: number): GuardVerdict {
  if (!window) return { ok: true, detail: 'reboot window: any time' };
  const m = /^(\d{2}):(\d{2})-(\d{2}):(\d{2})$/.exec(window);
  if (!m) throw new RangeError(`remediation.rebootWindow: not HH:MM-HH:MM: ${JSON.stringify(window)}`);
  const start = Number(m[1]) * 60 + Number(m[2]);
  const end = Number(m[3]) * 60 + Number(m[4]);
  const d = new Date(nowMs);
  const now = d.getUTCHours() * 60 + d.getUTCMinutes();
  const inside = start === end ? true : start < end ? now >= start && now < end : now >= start || now < end;
  const at = `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')} UTC`;
  if (!inside) return { ok: false, guard: 'window', detail: `reboot window: ${at} is outside remediation.rebootWindow ${window} (UTC)` };
  return { ok: true, detail: `reboot window: ${at} is inside ${window} (UTC)` };
}
