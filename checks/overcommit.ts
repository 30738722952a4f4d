/**
 * `overcommit`: the runbook's "do not oversell nodes badly" (a node under heavy load cannot report
 * its status). The CPU and memory this node's pods request and may use at most, against the Node's
 * allocatable, from the watches the agent keeps anyway (the pods as `stuck-pods` follows them, the
 * Node as `node-ready` does); checks/node-overcommit.ts does the counting and shares the figures with
 * the `load`, `node-ready` and `pleg` problems. Past a threshold this is a `problem` of its own, which
 * no restart cures: reported, never a remediation trigger.
 */
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { parseDuration } from '../platform/duration.js';
import type { KubeAccessSource, KubeApi } from '../platform/kube-client.js';
import { RESOURCE_NAMES, type ResourceName } from '../platform/pod-resources.js';
import { clusterCache, warmUp, withKubeApi } from './kube-check.js';
import { assessOvercommit, describeOvercommit, roundRatio, shareOvercommit, type NodeOvercommit, type RatioKind } from './node-overcommit.js';
import { unknown, type BaseCheckOptions, type CheckDefinition, type Finding } from './types.js';

/** A ratio threshold per resource. */
export interface PerResource {
  cpu: number;
  memory: number;
}

export interface OvercommitOptions extends BaseCheckOptions {
  /**
   * The sum of the pods' requests over the allocatable above which the node is a `problem`. The
   * scheduler never places pods beyond 1: above it, something bypassed it (static pods, pods created
   * with `spec.nodeName`) or the allocatable shrank under running pods (reservations raised).
   */
  maxRequestsRatio: PerResource;
  /**
   * The sum of the pods' limits over the allocatable above which the node is a `problem`. Memory is
   * not compressible: past 1, pods that use what they may push the node into eviction or the OOM
   * killer. CPU is: past its limit a pod is throttled, and contention is shared by requests.
   */
  maxLimitsRatio: PerResource;
  /** How long the API may take to fill the watches this check reads; then `unknown` (`ApiTimeout`). */
  timeout: string;
}

/** A ratio over its threshold. */
interface Over {
  resource: ResourceName;
  kind: RatioKind;
  ratio: number;
  max: number;
  podsWithoutLimit: number;
}

const x = (r: number | undefined): string => `${roundRatio(r) ?? '?'}x`;

/**
 * Pure: the verdict on the node's figures. A ratio is a `problem` only when it is *above* its
 * maximum: requests exactly at the allocatable is a full node, which the scheduler makes every day.
 */
export function judgeOvercommit(o: NodeOvercommit, opts: Pick<OvercommitOptions, 'maxRequestsRatio' | 'maxLimitsRatio'>): Finding {
  const evidence = { ...describeOvercommit(o), maxRequestsRatio: opts.maxRequestsRatio, maxLimitsRatio: opts.maxLimitsRatio };
  const measured = RESOURCE_NAMES.filter((r) => o[r].allocatable > 0);
  if (!measured.length) {
    return unknown('NoAllocatable', `node ${o.node} reports no allocatable CPU or memory (has the kubelet posted its status?)`, evidence);
  }
  const over: Over[] = [];
  for (const resource of measured) {
    const use = o[resource];
    const max = { requests: opts.maxRequestsRatio[resource], limits: opts.maxLimitsRatio[resource] };
    for (const [kind, ratio] of [['requests', use.requestsRatio], ['limits', use.limitsRatio]] as const) {
      if (ratio !== undefined && ratio > max[kind]) over.push({ resource, kind, ratio, max: max[kind], podsWithoutLimit: use.podsWithoutLimit });
    }
  }
  const noLimit = (resource: ResourceName, n: number): string => (n ? `; ${n} pod${n === 1 ? ' has' : 's have'} no ${resource} limit, so the true figure is higher` : '');
  const missing = RESOURCE_NAMES.filter((r) => !measured.includes(r));
  const missingNote = missing.length ? `; no allocatable ${missing.join(', ')} reported` : '';
  if (over.length) {
    const requests = over.some((v) => v.kind === 'requests');
    const what = over.map((v) => `${v.resource} ${v.kind} are ${x(v.ratio)} the allocatable (limit ${v.max}x${v.kind === 'limits' ? noLimit(v.resource, v.podsWithoutLimit) : ''})`).join('; ');
    const advice = requests
      ? 'more is reserved than the node has, which the scheduler never does: look for static pods or pods created with spec.nodeName, or an allocatable that shrank (kube-reserved, system-reserved raised)'
      : over.some((v) => v.resource === 'memory')
        ? 'if these pods use what they may, the node runs out of memory (kubelet evictions, the OOM killer, a NotReady node); move pods off this node or lower their limits'
        : 'if these pods use what they may, they contend for CPU and the node slows down; move pods off this node or lower their limits';
    return {
      status: 'problem',
      reason: requests ? 'RequestsOvercommitted' : 'LimitsOvercommitted',
      message: `node ${o.node}: ${what}${missingNote}: ${advice}; a restart does not help`,
      evidence,
    };
  }
  const parts = measured.map((r) => `${r} requests ${x(o[r].requestsRatio)}, limits ${x(o[r].limitsRatio)}${o[r].podsWithoutLimit ? ` (${o[r].podsWithoutLimit} without limit)` : ''}`);
  return { status: 'ok', reason: 'OvercommitNormal', message: `node ${o.node}, ${o.pods} pods: ${parts.join('; ')} of allocatable${missingNote}`, evidence };
}

/** Resolves with `p`, or rejects when `signal` aborts first (the figures for another check's evidence must not hold it). */
function bounded<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('timed out'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error('timed out'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

const ratioSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['cpu', 'memory'],
  properties: { cpu: { type: 'number', exclusiveMinimum: 0 }, memory: { type: 'number', exclusiveMinimum: 0 } },
} as const;

export const overcommitCheck: CheckDefinition<OvercommitOptions> = {
  id: 'overcommit',
  reasons: ['OvercommitNormal', 'RequestsOvercommitted', 'LimitsOvercommitted', 'NoAllocatable', 'NodeNotFound'],
  restartCures: false, // a restart does not take pods off the node
  defaults: { enabled: true, maxRequestsRatio: { cpu: 1, memory: 1 }, maxLimitsRatio: { cpu: 3, memory: 1.5 }, timeout: '10s' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      maxRequestsRatio: ratioSchema,
      maxLimitsRatio: ratioSchema,
      timeout: { type: 'string', format: 'duration' },
    },
  },
  // `start` connects ahead; should that have failed, the first run loads client-node itself (seconds on a busy node).
  runTimeoutMs: (o) => parseDuration(o.timeout) + 5000,
  create(options, { nodeName, kube }) {
    const timeoutMs = parseDuration(options.timeout);
    // The same collections as `stuck-pods` (this node's pods) and `node-ready` (this Node): the
    // caches are shared (platform/kube-watch.ts), so this check adds no request of its own.
    const pods = clusterCache<V1Pod>({ resource: 'pods', fieldSelector: `spec.nodeName=${nodeName}` });
    const nodes = clusterCache<V1Node>({ resource: 'nodes', fieldSelector: `metadata.name=${nodeName}` });
    const assess = async (api: KubeApi, signal: AbortSignal): Promise<NodeOvercommit | undefined> => {
      const [ps, ns] = await Promise.all([pods.read(api, signal), nodes.read(api, signal)]);
      const node = ns.find((n) => n.metadata?.name === nodeName);
      return node && assessOvercommit(node, ps);
    };
    let unshare: (() => void) | undefined;
    return {
      id: 'overcommit',
      async start() {
        unshare ??= shareOvercommit(nodeName, { read: (signal) => current(kube, nodeName, signal, assess) });
        // Connect and start watching before the first sweep (see stuck-pods).
        await warmUp(kube, [pods, nodes]);
      },
      async stop() {
        unshare?.();
        unshare = undefined;
        await Promise.all([pods.release(), nodes.release()]);
      },
      run(signal): Promise<Finding> {
        return withKubeApi(kube, { timeoutMs, signal, what: `read the pods and the Node of ${nodeName}` }, async (api) => {
          const o = await assess(api, signal);
          if (!o) return unknown('NodeNotFound', `the API has no Node named ${nodeName} (is nodeName right? has the kubelet registered?)`, { node: nodeName });
          return judgeOvercommit(o, options);
        });
      },
    };
  },
};

/** The figures for another check's evidence: from the caches, bounded by `signal`; a failure says why instead; none without Kubernetes access. */
async function current(
  kube: KubeAccessSource | undefined,
  nodeName: string,
  signal: AbortSignal,
  assess: (api: KubeApi, signal: AbortSignal) => Promise<NodeOvercommit | undefined>,
): Promise<NodeOvercommit | { unavailable: string } | undefined> {
  try {
    // A node without Kubernetes access has no figures, and its load problems need no note saying so.
    const access = kube && (await bounded(kube.get(), signal));
    if (!access) return undefined;
    const o = await bounded(assess(access.api, signal), signal);
    return o ?? { unavailable: `the API has no Node named ${nodeName}` };
  } catch (e) {
    return { unavailable: `the pods and the Node could not be read: ${(e as Error).message}` };
  }
}
