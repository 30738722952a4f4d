/**
 * Kubernetes access for nodemedic: the few API calls the agent makes, behind one narrow interface,
 * implemented with @kubernetes/client-node 1.x. The library is loaded with `import()` only when
 * Kubernetes access is configured (it takes about a second to load).
 */
import { existsSync } from 'node:fs';
import { readBoundedFileSync } from './host.js';

/** A kubeconfig with embedded certificates is a few tens of KB; 4 MiB leaves room for many contexts. */
const KUBECONFIG_MAX_BYTES = 4 * 1024 * 1024;
import type { CoreV1Event, V1Lease, V1Node, V1Pod } from '@kubernetes/client-node';

/** Why a call failed. `status` 0 means no HTTP answer at all (timeout, refused, reset). */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(
    /** What was being done, e.g. `patch node worker-1`. */
    readonly op: string,
    readonly status: number,
    /** The Status `reason` (`NotFound`, `Conflict`, `TooManyRequests`, ...) or a transport error code. */
    readonly reason: string,
    readonly detail: string,
  ) {
    super(`${op}: ${status ? `HTTP ${status} ${reason}` : reason}${detail ? `: ${detail}` : ''}`);
  }
}

export function isStatus(e: unknown, status: number): boolean {
  return e instanceof KubeApiError && e.status === status;
}

export interface ListOptions {
  /**
   * Serve the list from the API server's watch cache (`resourceVersion=0`: data of any age, usually
   * current). What a check that lists every few seconds on every node must use: a list without it is
   * a quorum read that scans every pod in etcd. Not for a drain, which needs current data.
   */
  cached?: boolean;
}

/** Collections the cluster view follows with list-then-watch (platform/kube-watch.ts); `leases` are coordination.k8s.io/v1. */
export type WatchResource = 'nodes' | 'pods' | 'leases';

/** One watch event as the server sent it, the object converted like the typed calls' results. */
export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  /** A V1Node / V1Pod / V1Lease; a bookmark's has only `metadata.resourceVersion`; an ERROR's is a Status. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  object: any;
}

export interface WatchOptions {
  fieldSelector: string;
  /** A namespaced resource in this namespace only (leases in kube-node-lease); absent: all namespaces. */
  namespace?: string;
  /** Resume after this version (the list's, or the last event's). */
  resourceVersion: string;
  /** The server ends the watch after this long; the caller starts a new one. */
  timeoutSeconds: number;
  allowWatchBookmarks?: boolean;
}

/** An open watch. */
export interface WatchHandle {
  stop(): void;
}

/** The calls nodemedic makes; every one has a timeout and throws only `KubeApiError`. */
export interface KubeApi {
  /** The API server URL, for logs. */
  readonly server: string;
  getNode(name: string): Promise<V1Node>;
  /** All nodes, following `continue` pages. */
  listNodes(): Promise<V1Node[]>;
  /** Strategic merge patch of the Node. */
  patchNode(name: string, patch: object): Promise<V1Node>;
  /** Strategic merge patch of the Node's status subresource (conditions merge on `type`). */
  patchNodeStatus(name: string, patch: object): Promise<V1Node>;
  /** Pods of all namespaces matching a field selector, following `continue` pages. */
  listPods(fieldSelector: string, opts?: ListOptions): Promise<V1Pod[]>;
  readPod(namespace: string, name: string): Promise<V1Pod>;
  /** policy/v1 Eviction. */
  evictPod(namespace: string, name: string, gracePeriodSeconds?: number): Promise<void>;
  deletePod(namespace: string, name: string, gracePeriodSeconds?: number): Promise<void>;
  readLease(namespace: string, name: string): Promise<V1Lease>;
  createLease(namespace: string, lease: V1Lease): Promise<V1Lease>;
  /** PUT; the lease's `metadata.resourceVersion` makes it conditional (409 when stale). */
  replaceLease(namespace: string, name: string, lease: V1Lease): Promise<V1Lease>;
  createEvent(namespace: string, event: CoreV1Event): Promise<void>;
  /**
   * All objects of `resource` matching a field selector, following `continue` pages, with the
   * resourceVersion of the list to start a watch from. Served from the API server's watch cache
   * (`resourceVersion=0`), as client-go's reflector lists. `namespace`: as in `WatchOptions`.
   */
  listForWatch(resource: WatchResource, fieldSelector: string, namespace?: string): Promise<{ items: object[]; resourceVersion: string }>;
  /**
   * Opens a watch (client-node's Watch). Resolves once the server answered 200 (the watch is open),
   * rejects with a KubeApiError when it answered otherwise or not within the request timeout.
   * `onClose` is called once when an open watch ends: undefined for a normal end (timeoutSeconds,
   * the server closing), else the error.
   */
  watch(resource: WatchResource, opts: WatchOptions, onEvent: (e: WatchEvent) => void, onClose: (err?: KubeApiError) => void): Promise<WatchHandle>;
  /** Events of one namespace matching a field selector (e.g. `involvedObject.kind=Pod,involvedObject.name=x`), following `continue` pages. */
  listEvents(namespace: string, fieldSelector: string): Promise<CoreV1Event[]>;
}

export interface KubeAccess {
  /** `kubeconfig FILE` or `in-cluster`. */
  source: string;
  api: KubeApi;
}

export interface ConnectOptions {
  /** Per request, including reading the body. Default 10 s. */
  requestTimeoutMs?: number;
  /** Page size for lists. Default 500 (what kubectl uses). */
  pageSize?: number;
  env?: NodeJS.ProcessEnv;
}

const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * `kubernetes.kubeconfig` when set (an unreadable or empty file is an error naming the key); else the
 * in-cluster service account when running in a pod; else `undefined` (no Kubernetes access).
 */
export async function connectKubernetes(kubeconfig: string, opts: ConnectOptions = {}): Promise<KubeAccess | undefined> {
  const env = opts.env ?? process.env;
  let source: string;
  if (kubeconfig) {
    try {
      // Bounded and regular files only (issue 14): a FIFO as kubeconfig blocked forever, /dev/zero
      // filled memory. client-node then reads the same file (it resolves cert paths beside it).
      readBoundedFileSync(kubeconfig, { maxBytes: KUBECONFIG_MAX_BYTES });
    } catch (e) {
      throw new Error(`kubernetes.kubeconfig: cannot read ${kubeconfig}: ${(e as Error).message}`);
    }
    source = `kubeconfig ${kubeconfig}`;
  } else if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && existsSync(SA_TOKEN)) {
    source = 'in-cluster';
  } else {
    return undefined;
  }
  const k8s = await import('@kubernetes/client-node');
  // Not re-exported by the package index; the typed calls use it to turn JSON into V1Node/V1Pod (Dates).
  const { ObjectSerializer } = await import('@kubernetes/client-node/dist/gen/models/ObjectSerializer.js');
  const kc = new k8s.KubeConfig();
  try {
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromCluster();
  } catch (e) {
    throw new Error(`${kubeconfig ? 'kubernetes.kubeconfig' : 'in-cluster config'}: ${(e as Error).message}`);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error(`kubernetes.kubeconfig: ${kubeconfig} has no current context with a cluster`);
  if (cluster.server.startsWith('http:') && !cluster.skipTLSVerify) {
    // client-node refuses plain HTTP without this flag; say so once, up front, instead of on every call.
    throw new Error(`kubernetes.kubeconfig: ${kubeconfig}: server ${cluster.server} is plain HTTP; client-node needs insecure-skip-tls-verify: true for that`);
  }
  const timeoutMs = opts.requestTimeoutMs ?? 10_000;
  const configuration = k8s.createConfiguration({
    baseServer: new k8s.ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [
      {
        pre: async (ctx) => {
          ctx.setSignal(AbortSignal.timeout(timeoutMs));
          return ctx;
        },
        post: async (res) => res,
      },
    ],
  });
  const core = new k8s.CoreV1Api(configuration);
  // client-node's Watch reads only the cluster and the fetch options of a KubeConfig; `timeout` (node-fetch)
  // bounds the wait for the response headers, which Watch itself does not (a stuck server would hold it forever).
  const watchConfig = Object.create(kc) as typeof kc;
  watchConfig.applyToFetchOptions = async (o) => ({ ...(await kc.applyToFetchOptions(o)), timeout: timeoutMs }) as Awaited<ReturnType<typeof kc.applyToFetchOptions>>;
  const watcher = new k8s.Watch(watchConfig);
  const typeOf: Record<WatchResource, string> = { nodes: 'V1Node', pods: 'V1Pod', leases: 'V1Lease' };
  const prefixOf: Record<WatchResource, string> = { nodes: '/api/v1', pods: '/api/v1', leases: '/apis/coordination.k8s.io/v1' };
  const pathOf = (resource: WatchResource, namespace: string | undefined): string =>
    `${prefixOf[resource]}${namespace ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/${resource}`;
  const coordination = new k8s.CoordinationV1Api(configuration);
  const smp = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);
  const pageSize = opts.pageSize ?? 500;

  async function call<T>(op: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw toKubeError(op, e, timeoutMs);
    }
  }

  const api: KubeApi = {
    server: cluster.server,
    getNode: (name) => call(`get node ${name}`, () => core.readNode({ name })),
    async listNodes() {
      const out: V1Node[] = [];
      let cont: string | undefined;
      do {
        const page = await call('list nodes', () => core.listNode({ limit: pageSize, ...(cont ? { _continue: cont } : {}) }));
        out.push(...page.items);
        cont = page.metadata?._continue || undefined;
      } while (cont);
      return out;
    },
    patchNode: (name, body) => call(`patch node ${name}`, () => core.patchNode({ name, body }, smp)),
    patchNodeStatus: (name, body) => call(`patch node ${name} status`, () => core.patchNodeStatus({ name, body }, smp)),
    async listPods(fieldSelector, opts = {}) {
      const out: V1Pod[] = [];
      let cont: string | undefined;
      do {
        // A continue token pins the snapshot its pages come from; only the first request names a resourceVersion.
        const from = cont ? { _continue: cont } : opts.cached ? { resourceVersion: '0' } : {};
        const page = await call(`list pods (${fieldSelector})`, () => core.listPodForAllNamespaces({ fieldSelector, limit: pageSize, ...from }));
        out.push(...page.items);
        cont = page.metadata?._continue || undefined;
      } while (cont);
      return out;
    },
    readPod: (namespace, name) => call(`get pod ${namespace}/${name}`, () => core.readNamespacedPod({ namespace, name })),
    async evictPod(namespace, name, gracePeriodSeconds) {
      await call(`evict pod ${namespace}/${name}`, () =>
        core.createNamespacedPodEviction({
          namespace,
          name,
          body: {
            apiVersion: 'policy/v1',
            kind: 'Eviction',
            metadata: { name, namespace },
            ...(gracePeriodSeconds !== undefined ? { deleteOptions: { gracePeriodSeconds } } : {}),
          },
        }),
      );
    },
    async deletePod(namespace, name, gracePeriodSeconds) {
      await call(`delete pod ${namespace}/${name}`, () =>
        core.deleteNamespacedPod({ namespace, name, ...(gracePeriodSeconds !== undefined ? { gracePeriodSeconds } : {}) }),
      );
    },
    readLease: (namespace, name) => call(`get lease ${namespace}/${name}`, () => coordination.readNamespacedLease({ namespace, name })),
    createLease: (namespace, body) => call(`create lease ${namespace}/${body.metadata?.name ?? ''}`, () => coordination.createNamespacedLease({ namespace, body })),
    replaceLease: (namespace, name, body) => call(`update lease ${namespace}/${name}`, () => coordination.replaceNamespacedLease({ namespace, name, body })),
    async createEvent(namespace, body) {
      await call(`create event ${body.reason ?? ''}`, () => core.createNamespacedEvent({ namespace, body }));
    },
    async listForWatch(resource, fieldSelector, namespace) {
      const out: object[] = [];
      let cont: string | undefined;
      let resourceVersion = '';
      type Page = { items: object[]; metadata?: { resourceVersion?: string; _continue?: string } };
      do {
        const from = cont ? { _continue: cont } : { resourceVersion: '0' };
        const args = { fieldSelector, limit: pageSize, ...from };
        const page: Page = await call(`list ${resource}${namespace ? ` in ${namespace}` : ''} (${fieldSelector})`, (): Promise<Page> => {
          if (resource === 'nodes') return core.listNode(args);
          if (resource === 'pods') return namespace ? core.listNamespacedPod({ namespace, ...args }) : core.listPodForAllNamespaces(args);
          return namespace ? coordination.listNamespacedLease({ namespace, ...args }) : coordination.listLeaseForAllNamespaces(args);
        });
        out.push(...page.items);
        resourceVersion = page.metadata?.resourceVersion ?? '';
        cont = page.metadata?._continue || undefined;
      } while (cont);
      return { items: out, resourceVersion };
    },
    async watch(resource, opts, onEvent, onClose) {
      const op = `watch ${resource}${opts.namespace ? ` in ${opts.namespace}` : ''} (${opts.fieldSelector})`;
      let opened = false;
      let failed: KubeApiError | undefined;
      let closed = false;
      const query = {
        fieldSelector: opts.fieldSelector,
        resourceVersion: opts.resourceVersion,
        timeoutSeconds: opts.timeoutSeconds,
        ...(opts.allowWatchBookmarks ? { allowWatchBookmarks: true } : {}),
      };
      const controller = await watcher.watch(
        pathOf(resource, opts.namespace),
        query,
        (type, object) => {
          if (closed) return;
          const obj = type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED' ? ObjectSerializer.deserialize(object, typeOf[resource], '') : object;
          onEvent({ type: type as WatchEvent['type'], object: obj });
        },
        (err: unknown) => {
          if (closed) return;
          closed = true;
          const e = err ? toWatchError(op, err, timeoutMs) : undefined;
          if (opened) onClose(e);
          else failed = e ?? new KubeApiError(op, 0, 'RequestFailed', 'the watch ended before it was established');
        },
      );
      if (failed) throw failed;
      opened = true;
      return {
        stop() {
          closed = true;
          controller.abort();
        },
      };
    },
    async listEvents(namespace, fieldSelector) {
      const out: CoreV1Event[] = [];
      let cont: string | undefined;
      do {
        const page = await call(`list events in ${namespace} (${fieldSelector})`, () =>
          core.listNamespacedEvent({ namespace, fieldSelector, limit: pageSize, ...(cont ? { _continue: cont } : {}) }),
        );
        out.push(...page.items);
        cont = page.metadata?._continue || undefined;
      } while (cont);
      return out;
    },
  };
  return { source, api };
}

/** Kubernetes access resolved on first use and then shared by its users (the cluster-view checks). */
export interface KubeAccessSource {
  /**
   * The access, connecting on the first call; undefined when none is configured. Rejects (with a
   * message naming `kubernetes.kubeconfig`) when the configured access is unusable; a later call tries again.
   */
  get(): Promise<KubeAccess | undefined>;
}

/**
 * A `KubeAccessSource` for `kubernetes.kubeconfig`. Nothing is read or loaded until `get()`, so that
 * `nodemedic check --only disk` never pays for client-node; a config reload makes a new one.
 */
export function lazyKubeAccess(kubeconfig: string, opts: ConnectOptions = {}): KubeAccessSource {
  let pending: Promise<KubeAccess | undefined> | undefined;
  return {
    get() {
      pending ??= connectKubernetes(kubeconfig, opts).catch((e: unknown) => {
        pending = undefined;
        throw e;
      });
      return pending;
    },
  };
}

/**
 * Which access `connectKubernetes` would use, decided without reading or loading anything:
 * `kubeconfig FILE`, `in-cluster`, or undefined for none.
 */
export function kubeAccessKind(kubeconfig: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (kubeconfig) return `kubeconfig ${kubeconfig}`;
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && existsSync(SA_TOKEN)) return 'in-cluster';
  return undefined;
}

/**
 * A KubeApi that connects through `source` on its first call. A failure to connect (an unreadable
 * kubeconfig) is that call's KubeApiError (status 0, reason `NoAccess`), so callers fail closed
 * instead of the agent failing to start; the next call tries again.
 */
export function lazyKubeApi(source: KubeAccessSource, describe: string): KubeApi {
  return new Proxy({} as KubeApi, {
    get(_target, prop) {
      if (prop === 'server') return describe;
      // Not a thenable: `await api` must not call into the API.
      if (typeof prop !== 'string' || prop === 'then') return undefined;
      return async (...args: unknown[]) => {
        let access: KubeAccess | undefined;
        try {
          access = await source.get();
        } catch (e) {
          throw new KubeApiError(prop, 0, 'NoAccess', (e as Error).message);
        }
        if (!access) throw new KubeApiError(prop, 0, 'NoAccess', 'no Kubernetes access is configured');
        const f = (access.api as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[prop];
        if (typeof f !== 'function') throw new TypeError(`KubeApi has no method ${prop}`);
        return f.apply(access.api, args);
      };
    },
  });
}

/** Maps client-node's ApiException (body: the Status JSON text) and transport errors to KubeApiError. */
function toKubeError(op: string, e: unknown, timeoutMs: number): KubeApiError {
  const err = e as { code?: unknown; body?: unknown; name?: string; type?: string; message?: string };
  if (typeof err.code === 'number') {
    let reason = '';
    let message = '';
    if (typeof err.body === 'string' && err.body) {
      try {
        const s = JSON.parse(err.body) as { reason?: string; message?: string };
        reason = s.reason ?? '';
        message = s.message ?? '';
      } catch {
        message = err.body.slice(0, 300);
      }
    }
    return new KubeApiError(op, err.code, reason || statusText(err.code), message);
  }
  if (err.name === 'AbortError' || err.type === 'aborted') {
    return new KubeApiError(op, 0, 'Timeout', `no answer within ${timeoutMs}ms`);
  }
  const code = typeof (err as { code?: unknown }).code === 'string' ? String((err as { code?: unknown }).code) : '';
  return new KubeApiError(op, 0, code || 'RequestFailed', err.message ?? String(e));
}

/** Watch's errors: an Error with `statusCode` for a non-200 answer (the Status body is not kept), else transport errors. */
function toWatchError(op: string, e: unknown, timeoutMs: number): KubeApiError {
  const err = e as { statusCode?: unknown; type?: string; code?: unknown; message?: string; name?: string };
  if (typeof err.statusCode === 'number') return new KubeApiError(op, err.statusCode, statusText(err.statusCode), err.message ?? '');
  if (err.type === 'request-timeout') return new KubeApiError(op, 0, 'Timeout', `no answer within ${timeoutMs}ms`);
  if (err.name === 'AbortError') return new KubeApiError(op, 0, 'Aborted', 'the watch was stopped');
  const code = typeof err.code === 'string' ? err.code : '';
  return new KubeApiError(op, 0, code || 'RequestFailed', err.message ?? String(e));
}

function statusText(code: number): string {
  const t: Record<number, string> = { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 405: 'MethodNotAllowed', 410: 'Expired', 415: 'UnsupportedMediaType', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable' };
  return t[code] ?? `HTTP${code}`;
}
