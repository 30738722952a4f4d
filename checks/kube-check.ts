/**
 * What the cluster-view checks (node-ready, stuck-pods, kubelet-connection) share: reaching the API
 * through the agent's Kubernetes access, a deadline of their own, and the rule that a control plane
 * that cannot answer says nothing about this node: every API failure is `unknown`, never `problem`.
 */
import { formatDuration } from '../platform/duration.js';
import { KubeApiError, type KubeAccessSource, type KubeApi } from '../platform/kube-client.js';
import { acquireReflector, releaseReflector, type Collection, type Meta, type Reflector } from '../platform/kube-watch.js';
import { unknown, type Finding } from './types.js';

/** Reasons a cluster-view check reports when it could not ask the API. */
export type ApiUnknownReason =
  /** No `kubernetes.kubeconfig` and not running in a pod. */
  | 'NoKubernetesAccess'
  /** The configured kubeconfig cannot be used (unreadable, no current context, plain HTTP without skip-TLS). */
  | 'KubernetesConfigError'
  /** No answer within the check's `timeout`. */
  | 'ApiTimeout'
  /** No HTTP answer at all (connection refused, reset, DNS). */
  | 'ApiUnreachable'
  /** 429 or 5xx: the control plane is overloaded or broken. */
  | 'ApiUnavailable'
  /** 401 or 403: the credentials or the RBAC role do not allow the call. */
  | 'ApiAccessDenied'
  /** Any other answer the check cannot use. */
  | 'ApiError';

const NOT_THIS_NODE = "the control plane's trouble says nothing about this node";

export function noKubernetesAccess(): Finding {
  return unknown(
    'NoKubernetesAccess',
    'no Kubernetes access: set kubernetes.kubeconfig, or run nodemedic in a pod with a service account, to check what the cluster sees',
  );
}

/** An API failure as an `unknown` finding. Anything but a KubeApiError is a bug and is rethrown. */
export function apiFailure(e: unknown, what: string): Finding {
  if (!(e instanceof KubeApiError)) throw e;
  const detail = `${what}: ${e.message}; ${NOT_THIS_NODE}`;
  if (e.status === 0) return unknown(e.reason === 'Timeout' ? 'ApiTimeout' : 'ApiUnreachable', detail, { httpStatus: 0, apiReason: e.reason });
  if (e.status === 401 || e.status === 403) return unknown('ApiAccessDenied', `${what}: ${e.message} (check the credentials and the RBAC role)`, { httpStatus: e.status, apiReason: e.reason });
  if (e.status === 429 || e.status >= 500) return unknown('ApiUnavailable', detail, { httpStatus: e.status, apiReason: e.reason });
  return unknown('ApiError', `${what}: ${e.message}`, { httpStatus: e.status, apiReason: e.reason });
}

/** Resolves the access ahead of the first run; a failure is reported by `run`, not here. */
export async function preconnect(kube: KubeAccessSource | undefined): Promise<void> {
  await kube?.get().catch(() => undefined);
}

/**
 * Runs `fn` with the API, bounded by `timeoutMs` (and the scheduler's `signal`). Connecting (reading
 * the kubeconfig, loading client-node) is not counted: it touches no network. The request left
 * behind by a timeout ends at the client's own request timeout; it never holds the check.
 */
export async function withKubeApi(
  kube: KubeAccessSource | undefined,
  opts: { timeoutMs: number; signal: AbortSignal; what: string },
  fn: (api: KubeApi) => Promise<Finding>,
): Promise<Finding> {
  if (!kube) return noKubernetesAccess();
  let api: KubeApi;
  try {
    const access = await kube.get();
    if (!access) return noKubernetesAccess();
    api = access.api;
  } catch (e) {
    return unknown('KubernetesConfigError', (e as Error).message);
  }
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const late = new Promise<Finding>((resolve) => {
    const give = (): void =>
      resolve(unknown('ApiTimeout', `${opts.what}: no answer from the Kubernetes API (${api.server}) within ${formatDuration(opts.timeoutMs)}; ${NOT_THIS_NODE}`, { httpStatus: 0, apiReason: 'Timeout' }));
    timer = setTimeout(give, opts.timeoutMs);
    onAbort = give;
    opts.signal.addEventListener('abort', onAbort, { once: true });
  });
  const work = fn(api).catch((e: unknown) => apiFailure(e, opts.what));
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal.removeEventListener('abort', onAbort);
  }
}

/** Milliseconds since the epoch of an API time (client-node gives Dates; raw JSON gives strings). */
export function timeMs(v: Date | string | undefined | null): number | undefined {
  if (v === undefined || v === null) return undefined;
  const t = v instanceof Date ? v.getTime() : Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}

/** ISO form of an API time, for evidence. */
export function isoTime(v: Date | string | undefined | null): string | undefined {
  const t = timeMs(v);
  return t === undefined ? undefined : new Date(t).toISOString();
}

/** A check's handle on one shared list-then-watch cache (see `clusterCache`). */
export interface ClusterCache<T> {
  /** The cached objects, or throws the API failure that keeps the cache from being current. */
  read(api: KubeApi, signal: AbortSignal): Promise<T[]>;
  /** A direct read showed the server ahead of the cache: re-open its watch (`Reflector.rewatch`). */
  rewatch(): void;
  release(): Promise<void>;
}

/**
 * A check's handle on the shared list-then-watch cache of one collection (platform/kube-watch.ts):
 * acquired on first use with the API the check was given, released by the check's `stop`.
 */
export function clusterCache<T extends Meta>(collection: Collection): ClusterCache<T> {
  let held: { api: KubeApi; r: Reflector<T> } | undefined;
  // A read that comes after release (a warm-up still connecting when the check was stopped) must not
  // acquire again: nothing would ever release that cache, and its watch would run on for good.
  let released = false;
  return {
    read(api, signal) {
      if (released) return Promise.reject(new Error(`the ${collection.resource} cache of a stopped check`));
      if (held && held.api !== api) void releaseReflector(held.api, held.r);
      if (!held || held.api !== api) held = { api, r: acquireReflector<T>(api, collection) };
      return held.r.read(signal);
    },
    rewatch() {
      held?.r.rewatch();
    },
    async release() {
      released = true;
      const h = held;
      held = undefined;
      if (h) await releaseReflector(h.api, h.r);
    },
  };
}

/**
 * Connects ahead (see `preconnect`) and starts `caches` filling, so the first sweep reads a warm
 * cache; failures are left for `run` to report.
 */
export async function warmUp(kube: KubeAccessSource | undefined, caches: readonly { read(api: KubeApi, signal: AbortSignal): Promise<unknown> }[]): Promise<void> {
  const access = await kube?.get().catch(() => undefined);
  if (!access) return;
  for (const c of caches) void c.read(access.api, new AbortController().signal).catch(() => undefined);
}
