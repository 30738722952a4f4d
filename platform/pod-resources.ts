/**
 * What a pod reserves (requests) and may use at most (limits) of CPU and memory, counted as the
 * Kubernetes scheduler and `kubectl describe node` count them (k8s.io/component-helpers/resource,
 * `PodRequests` / `PodLimits`; https://kubernetes.io/docs/concepts/workloads/pods/init-containers/#resource-sharing-within-containers):
 * - app containers run together: their amounts add up;
 * - init containers run one after the other: the largest one counts, if larger than the app containers';
 * - a sidecar (an init container with `restartPolicy: Always`) keeps running: it adds to the app
 *   containers, and to every init container that starts after it;
 * - a pod-level amount (`spec.resources`, Kubernetes 1.32+), where set, replaces the containers' sum;
 * - the pod overhead (`spec.overhead`, from its RuntimeClass) is added to requests, and to a limit
 *   where the pod has one.
 * Shared by the drain's capacity guard (remediations/) and the overcommit evidence (checks/).
 */
import { parseQuantity } from './quantity.js';

export type ResourceName = 'cpu' | 'memory';

export const RESOURCE_NAMES: readonly ResourceName[] = ['cpu', 'memory'];

/**
 * Amounts in whole base units as the API server rounds them (`Quantity.MilliValue()` for CPU,
 * `Value()` for memory, both rounding up): CPU in millicores, memory in bytes. Integers, so that
 * sums are exact and a ratio compares exactly against a threshold.
 */
export type ResourceAmounts = Record<ResourceName, number>;

export interface PodResources {
  /** What the scheduler reserves for the pod. A container without a request counts 0. */
  requests: ResourceAmounts;
  /** The sum of the limits that are set (a container without a limit adds nothing here; see `unlimited`). */
  limits: ResourceAmounts;
  /**
   * Per resource: some container of the pod (app, init or sidecar) has no limit, so the pod's
   * effective limit is unbounded (the init-containers page: "If any resource has no resource limit
   * specified this is considered as the highest limit"). A pod-level limit, where set, bounds it.
   */
  unlimited: Record<ResourceName, boolean>;
}

type List = Record<string, string | number> | undefined;

/** The pod fields this reads (a client-node V1Pod or raw JSON). */
export interface PodSpecLike {
  spec?: {
    containers?: readonly { resources?: { requests?: unknown; limits?: unknown } }[];
    initContainers?: readonly { restartPolicy?: string; resources?: { requests?: unknown; limits?: unknown } }[];
    overhead?: unknown;
    resources?: { requests?: unknown; limits?: unknown };
  };
}

/** `q` (in base units: cores, bytes) times `scale`, rounded up to an integer; float noise (250m * 1000) is not a fraction. */
function whole(q: number, scale: number): number {
  const v = q * scale;
  const r = Math.round(v);
  return Math.abs(v - r) <= 1e-9 * Math.max(1, Math.abs(v)) ? r : Math.ceil(v);
}

const SCALE: Record<ResourceName, number> = { cpu: 1000, memory: 1 };

/** The amount of `name` in a resource list, in whole units; undefined when the list does not name it. Throws a RangeError for a malformed quantity. */
function amount(list: unknown, name: ResourceName): number | undefined {
  const v = (list as List)?.[name];
  return v === undefined || v === null ? undefined : whole(parseQuantity(v), SCALE[name]);
}

function effective(pod: PodSpecLike, kind: 'requests' | 'limits', name: ResourceName): { total: number; unbounded: boolean } {
  const spec = pod.spec ?? {};
  const overhead = amount(spec.overhead, name) ?? 0;
  const podLevel = amount(spec.resources?.[kind], name);
  if (podLevel !== undefined) return { total: podLevel + overhead, unbounded: false };
  let unbounded = false;
  let named = false;
  const of = (c: { resources?: { requests?: unknown; limits?: unknown } }): number => {
    const a = amount(c.resources?.[kind], name);
    if (a === undefined && kind === 'limits') unbounded = true;
    if (a !== undefined) named = true;
    return a ?? 0;
  };
  let sum = 0;
  for (const c of spec.containers ?? []) sum += of(c);
  let sidecars = 0;
  let initPeak = 0;
  for (const c of spec.initContainers ?? []) {
    const a = of(c);
    if (c.restartPolicy === 'Always') {
      sum += a;
      sidecars += a;
      initPeak = Math.max(initPeak, sidecars);
    } else {
      initPeak = Math.max(initPeak, a + sidecars);
    }
  }
  const total = Math.max(sum, initPeak);
  // PodLimits adds the overhead only to a resource some container limits (its `limits[name]` exists).
  return { total: kind === 'limits' && !named ? total : total + overhead, unbounded };
}

/** A pod's requests and limits of CPU and memory (see the module comment). Throws a RangeError for a malformed quantity. */
export function podResources(pod: PodSpecLike): PodResources {
  const out: PodResources = { requests: { cpu: 0, memory: 0 }, limits: { cpu: 0, memory: 0 }, unlimited: { cpu: false, memory: false } };
  for (const name of RESOURCE_NAMES) {
    out.requests[name] = effective(pod, 'requests', name).total;
    const l = effective(pod, 'limits', name);
    out.limits[name] = l.total;
    out.unlimited[name] = l.unbounded;
  }
  return out;
}

/** A Node's `status.allocatable` of CPU and memory in whole units; 0 for a resource it does not report. */
export function allocatableOf(node: { status?: { allocatable?: unknown } }): ResourceAmounts {
  const a = node.status?.allocatable;
  return { cpu: amount(a, 'cpu') ?? 0, memory: amount(a, 'memory') ?? 0 };
}
