/**
 * How far this node is overcommitted: the CPU and memory its pods request and may use at most
 * (limits), against the Node's allocatable. Computed from what the agent already watches (this
 * node's pods and its Node, platform/kube-watch.ts), never by asking the API for it.
 *
 * The `overcommit` check (checks/overcommit.ts) keeps those watches and shares its view here, so that
 * a `problem` of `load`, `node-ready` or `pleg` carries the figures (`evidence.overcommit`): an
 * operator sees at once whether a node that went NotReady was oversold. Evidence, never a verdict
 * of those checks.
 */
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { formatCpu, formatMemory } from '../platform/quantity.js';
import { allocatableOf, podResources, RESOURCE_NAMES, type ResourceAmounts, type ResourceName } from '../platform/pod-resources.js';
import type { CheckResult, Finding } from './types.js';

export type RatioKind = 'requests' | 'limits';

export const RATIO_KINDS: readonly RatioKind[] = ['requests', 'limits'];

/** One resource's totals on the node. Amounts are whole units (millicores, bytes; platform/pod-resources.ts). */
export interface ResourceUse {
  allocatable: number;
  /** Sum of the counted pods' effective requests. */
  requests: number;
  /** Sum of the limits that are set; pods with an unbounded limit add only what they set (see `podsWithoutLimit`). */
  limits: number;
  /** `requests / allocatable`; undefined when the Node reports no allocatable of this resource. */
  requestsRatio: number | undefined;
  /**
   * `limits / allocatable`. With `podsWithoutLimit > 0` this is a floor: those pods may take up to
   * the whole allocatable, so the true limit sum is unbounded. Reported as the ratio of what is set
   * rather than infinity, because a node with a BestEffort DaemonSet pod would otherwise always read
   * "infinitely oversold" and the figure would say nothing.
   */
  limitsRatio: number | undefined;
  /** Counted pods of which some container has no limit for this resource. */
  podsWithoutLimit: number;
}

/** The node's overcommit at one moment. */
export interface NodeOvercommit {
  node: string;
  /** Pods counted: bound to this node and not terminated (phase neither Succeeded nor Failed), as the scheduler counts. */
  pods: number;
  /** Bound pods not counted because they have finished (Succeeded or Failed): they hold nothing. */
  terminated: number;
  /** Pods whose resources could not be read (a malformed quantity; the API server's validation makes this rare), `ns/name: why`. */
  unreadable: string[];
  cpu: ResourceUse;
  memory: ResourceUse;
}

const ratio = (used: number, allocatable: number): number | undefined => (allocatable > 0 ? used / allocatable : undefined);

/** Pure: the overcommit of `node` given the pods bound to it. */
export function assessOvercommit(node: V1Node, pods: readonly V1Pod[]): NodeOvercommit {
  const allocatable = allocatableOf(node);
  const requests: ResourceAmounts = { cpu: 0, memory: 0 };
  const limits: ResourceAmounts = { cpu: 0, memory: 0 };
  const withoutLimit: ResourceAmounts = { cpu: 0, memory: 0 };
  let counted = 0;
  let terminated = 0;
  const unreadable: string[] = [];
  for (const p of pods) {
    const phase = p.status?.phase;
    // The scheduler's NodeInfo and `kubectl describe node` leave finished pods out; a terminating pod still holds its share.
    if (phase === 'Succeeded' || phase === 'Failed') {
      terminated++;
      continue;
    }
    let r;
    try {
      r = podResources(p);
    } catch (e) {
      unreadable.push(`${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}: ${(e as Error).message}`);
      continue;
    }
    counted++;
    for (const name of RESOURCE_NAMES) {
      requests[name] += r.requests[name];
      limits[name] += r.limits[name];
      if (r.unlimited[name]) withoutLimit[name]++;
    }
  }
  const use = (name: ResourceName): ResourceUse => ({
    allocatable: allocatable[name],
    requests: requests[name],
    limits: limits[name],
    requestsRatio: ratio(requests[name], allocatable[name]),
    limitsRatio: ratio(limits[name], allocatable[name]),
    podsWithoutLimit: withoutLimit[name],
  });
  return { node: node.metadata?.name ?? '', pods: counted, terminated, unreadable: unreadable.slice(0, 10), cpu: use('cpu'), memory: use('memory') };
}

/** A ratio for evidence and metrics: four decimals (the comparison with a threshold uses the exact value). */
export function roundRatio(r: number | undefined): number | null {
  return r === undefined ? null : Math.round(r * 10_000) / 10_000;
}

const FORMAT: Record<ResourceName, (n: number) => string> = { cpu: (m) => formatCpu(m / 1000), memory: formatMemory };

/** One resource as evidence: human amounts, rounded ratios. */
function describeUse(name: ResourceName, u: ResourceUse): Record<string, unknown> {
  return {
    allocatable: FORMAT[name](u.allocatable),
    requests: FORMAT[name](u.requests),
    limits: FORMAT[name](u.limits),
    requestsRatio: roundRatio(u.requestsRatio),
    limitsRatio: roundRatio(u.limitsRatio),
    podsWithoutLimit: u.podsWithoutLimit,
  };
}

/** The whole picture as evidence (the `overcommit` check's, and `evidence.overcommit` of other checks' problems). */
export function describeOvercommit(o: NodeOvercommit): Record<string, unknown> {
  return {
    node: o.node,
    pods: o.pods,
    terminatedPods: o.terminated,
    ...(o.unreadable.length ? { unreadable: o.unreadable } : {}),
    cpu: describeUse('cpu', o.cpu),
    memory: describeUse('memory', o.memory),
  };
}

/**
 * The `nodemedic_node_overcommit_ratio` samples an `overcommit` result carries: none for a result that
 * is not an assessment (`unknown`), and none for a ratio the Node gives no allocatable for.
 */
export function overcommitSamples(r: CheckResult): { resource: ResourceName; kind: RatioKind; value: number }[] {
  if (r.status === 'unknown') return [];
  const out: { resource: ResourceName; kind: RatioKind; value: number }[] = [];
  for (const resource of RESOURCE_NAMES) {
    const use = r.evidence[resource] as Record<string, unknown> | undefined;
    for (const kind of RATIO_KINDS) {
      const v = use?.[`${kind}Ratio`];
      if (typeof v === 'number') out.push({ resource, kind, value: v });
    }
  }
  return out;
}

/** What the overcommit check shares: the current figures from its watches, or why there are none. */
export interface OvercommitView {
  /** Bounded by `signal`; never throws. Undefined: nothing to say (no Kubernetes access configured). */
  read(signal: AbortSignal): Promise<NodeOvercommit | { unavailable: string } | undefined>;
}

/** The views the running `overcommit` checks share, by node name (one per agent; a reload replaces it). */
const views = new Map<string, OvercommitView[]>();

/** Shares `view` for `node` until the returned function is called (the check's `stop`). */
export function shareOvercommit(node: string, view: OvercommitView): () => void {
  views.set(node, [view, ...(views.get(node) ?? [])]);
  return () => {
    const left = (views.get(node) ?? []).filter((v) => v !== view);
    if (left.length) views.set(node, left);
    else views.delete(node);
  };
}

/** How long another check's problem waits for the figures: they come from a cache, so only a cache still filling takes time. */
export const CONTEXT_WAIT_MS = 2000;

/**
 * A `problem` finding with the node's overcommit added as `evidence.overcommit`; any other finding,
 * or a node whose `overcommit` check is not running or has no Kubernetes access, unchanged. Never fails the finding: figures that
 * cannot be had are `{ unavailable: why }`.
 */
export async function withOvercommitEvidence(f: Finding, node: string, waitMs = CONTEXT_WAIT_MS): Promise<Finding> {
  const view = views.get(node)?.[0];
  if (f.status !== 'problem' || !view) return f;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), waitMs);
  try {
    const o = await view.read(ac.signal);
    if (!o) return f;
    return { ...f, evidence: { ...f.evidence, overcommit: 'unavailable' in o ? o : describeOvercommit(o) } };
  } finally {
    clearTimeout(timer);
  }
}
