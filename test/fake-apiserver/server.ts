/**
 * A small fake Kubernetes API server at the HTTP level, on 127.0.0.1, for the paths nodemedic (and
 * `kubectl drain`) use. It imitates the real server where the agent depends on it; each behaviour
 * cites the reference it follows. Everything else answers 404, as an API server does for an unknown
 * resource. It is not a general-purpose API server: no protobuf, no server-side apply. Watches of
 * nodes, pods, events and (namespaced) leases are served by ./watch.ts.
 *
 * References:
 * - API concepts (lists, paging with limit/continue, resourceVersion, 409 on conflict, Status errors):
 *   https://kubernetes.io/docs/reference/using-api/api-concepts/
 * - Eviction: https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/
 *   ("200/201 OK: the eviction is allowed ... 429 Too Many Requests: ... PodDisruptionBudget ...
 *   500 Internal Server Error: ... multiple PodDisruptionBudgets reference the same Pod")
 * - Lease: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/
 * - Node: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/node-v1/
 * - Event (core/v1): https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { isWatch, ObservedMap, WatchHub, type WatchEventType } from './watch.js';
import { isObject, jsonMergePatch, jsonPatch, PatchError, strategicMergePatch, type Json, type JsonObject } from './patch.js';

// The objects are kept as plain JSON: the fake must accept whatever a client sends, as the real one does.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type K8sObject = Record<string, any>;

/** A PodDisruptionBudget as the eviction subresource sees it (only what the fake needs to decide). */
export interface FakePdb {
  namespace: string;
  name: string;
  /** `spec.selector.matchLabels`. */
  matchLabels: Record<string, string>;
  /** No disruption allowed before this time (ms since epoch). */
  blockedUntil?: number;
  /** Never allows a disruption (a PDB with minAvailable = replicas). */
  never?: boolean;
  /** At most this many matching pods may be terminating at once (maxUnavailable). Default unlimited. */
  maxUnavailable?: number;
}

/** One request as the fake saw it, for assertions on what a client did. */
export interface RequestRecord {
  at: number;
  method: string;
  path: string;
  query: URLSearchParams;
  contentType: string | undefined;
  status: number;
  body: Json | undefined;
  /** When the server applied the request and answered (ms); later than `at` when a fault delayed it. */
  doneAt?: number;
}

export interface FakeApiServerOptions {
  /** Bearer token clients must send; a request without it gets 401. */
  token?: string;
  /**
   * Serve requests without a token too (an API server with anonymous access). Needed for kubectl:
   * client-go does not send a bearer token over plain HTTP.
   */
  anonymous?: boolean;
  /**
   * Milliseconds per second of a pod's grace period, so tests can shorten the wait for a pod to go
   * away after an eviction without changing what the pods declare. Default 1000.
   */
  msPerGraceSecond?: number;
  /**
   * A controller's reaction to a pod that went away: return a pod to create (e.g. a StatefulSet pod
   * recreated with the same name and a new UID on another node), or nothing.
   */
  recreate?: (gone: K8sObject) => K8sObject | undefined;
}

/** Outage modes for tests of an unreachable or stuck control plane. */
export type FaultMode = 'none' | 'unavailable' | 'hang';

const NODE_FIELDS = ['metadata.name', 'spec.unschedulable'];
// The pod field selectors the real server supports include these (pkg/registry/core/pod/strategy.go, PodToSelectableFields).
const POD_FIELDS = ['spec.nodeName', 'status.phase', 'metadata.name', 'metadata.namespace', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'status.podIP', 'status.nominatedNodeName'];
const EVENT_FIELDS = ['involvedObject.name', 'involvedObject.kind', 'reason'];
// Leases have only the generic object fields (the coordination registry adds none).
const LEASE_FIELDS = ['metadata.name', 'metadata.namespace'];

const MICROTIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(?:Z|[+-]\d{2}:\d{2})$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

function statusBody(code: number, reason: string, message: string, details?: JsonObject): JsonObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: JsonObject,
  ) {
    super(message);
  }
}

const notFound = (resource: string, name: string): HttpError =>
  new HttpError(404, 'NotFound', `${resource} "${name}" not found`, { name, kind: resource.split('.')[0] ?? resource });
const conflict = (resource: string, name: string): HttpError =>
  new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name });
const invalid = (kind: string, name: string, message: string): HttpError =>
  new HttpError(422, 'Invalid', `${kind} "${name}" is invalid: ${message}`, { name, kind });

/** A field selector term: `key=value`, `key==value` or `key!=value`. */
interface FieldTerm {
  key: string;
  value: string;
  negate: boolean;
}

function parseFieldSelector(s: string | null, supported: readonly string[]): FieldTerm[] {
  if (!s) return [];
  return s.split(',').map((term) => {
    const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(term.trim());
    if (!m) throw new HttpError(400, 'BadRequest', `invalid field selector: ${term}`);
    const key = m[1]!;
    // The real server answers an unsupported field label with 400 (e.g. `field label not supported: spec.foo`).
    if (!supported.includes(key)) throw new HttpError(400, 'BadRequest', `field label not supported: ${key}`);
    return { key, value: m[3]!, negate: m[2] === '!=' };
  });
}

function fieldValue(obj: K8sObject, key: string): string {
  const v = key.split('.').reduce<unknown>((o, k) => (isObject(o) ? o[k] : undefined), obj);
  return v === undefined || v === null ? '' : String(v);
}

function matchesFields(obj: K8sObject, terms: FieldTerm[]): boolean {
  return terms.every((t) => (fieldValue(obj, t.key) === t.value) !== t.negate);
}

/** Equality-based label selectors (`a=b,c!=d,e`), enough for kubectl's `--pod-selector`. */
function matchesLabels(obj: K8sObject, selector: string | null): boolean {
  if (!selector) return true;
  const labels: Record<string, string> = obj.metadata?.labels ?? {};
  return selector.split(',').every((term) => {
    const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(term.trim());
    if (!m) return term.trim().startsWith('!') ? !(term.trim().slice(1) in labels) : term.trim() in labels;
    const eq = labels[m[1]!] === m[3];
    return m[2] === '!=' ? !eq : eq;
  });
}

function key(ns: string, name: string): string {
  return `${ns}/${name}`;
}

/**
 * Go's `omitempty` as the API server's JSON encoding applies it: `spec.unschedulable: false` and an
 * empty `metadata.annotations` do not appear in responses.
 */
function normalizeNode(node: K8sObject): void {
  if (node.spec && node.spec.unschedulable === false) delete node.spec.unschedulable;
  for (const f of ['annotations', 'labels']) {
    if (node.metadata?.[f] && Object.keys(node.metadata[f]).length === 0) delete node.metadata[f];
  }
}

export class FakeApiServer {
  /** The bearer token clients must send; a test may change it. */
  token: string;
  readonly nodes = new ObservedMap<K8sObject>((type, o, before) => this.watched('nodes', type, o, before));
  readonly pods = new ObservedMap<K8sObject>((type, o, before) => this.watched('pods', type, o, before));
  /** `namespace/name` → Lease: the reboot Leases nodemedic writes, kubelets' heartbeat Leases (`writeLease`). */
  readonly leases = new ObservedMap<K8sObject>((type, o, before) => this.watched('leases', type, o, before));
  readonly events: K8sObject[] = [];
  /** Open watches and the change history they are served from (./watch.ts); tests close or expire them. */
  readonly watches = new WatchHub(
    new Map([
      ['nodes', { name: 'nodes', kind: 'Node', group: '', apiVersion: 'v1', current: () => [...this.nodes.values()] }],
      ['pods', { name: 'pods', kind: 'Pod', group: '', apiVersion: 'v1', current: () => [...this.pods.values()] }],
      ['events', { name: 'events', kind: 'Event', group: '', apiVersion: 'v1', current: () => this.events }],
      ['leases', { name: 'leases', kind: 'Lease', group: 'coordination.k8s.io', apiVersion: 'coordination.k8s.io/v1', current: () => [...this.leases.values()] }],
    ]),
    () => this.rv,
  );
  /** `namespace/name` → Secret, for `make-kubeconfig.sh` (it reads the ServiceAccount token Secret). */
  readonly secrets = new Map<string, K8sObject>();
  pdbs: FakePdb[] = [];
  readonly requests: RequestRecord[] = [];
  /** Applies to every request until changed. */
  fault: FaultMode = 'none';
  /** Optional per-request override: return a status to answer with (e.g. 500 on one path), or undefined. */
  inject: ((method: string, path: string) => number | undefined) | undefined;
  /**
   * Optional per-request delay (ms) before the request is applied and answered, whether or not the
   * client is still waiting: a write the server applies after the client gave up (faults.ts).
   */
  delay: ((method: string, path: string) => number | undefined) | undefined;

  private server: Server | undefined;
  private port = 0;
  private rv = 1000;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly hung = new Set<ServerResponse>();
  /** List snapshots behind continue tokens, as the real server serves pages from one resourceVersion. */
  private readonly snapshots = new Map<string, { items: K8sObject[]; rv: string }>();
  private readonly msPerGraceSecond: number;
  private readonly anonymous: boolean;
  private readonly recreate: FakeApiServerOptions['recreate'];

  constructor(opts: FakeApiServerOptions = {}) {
    this.token = opts.token ?? randomBytes(12).toString('hex');
    this.msPerGraceSecond = opts.msPerGraceSecond ?? 1000;
    this.anonymous = opts.anonymous ?? false;
    this.recreate = opts.recreate;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.watches.stop();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const res of this.hung) res.destroy();
    this.hung.clear();
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /**
   * A kubeconfig for this server. client-node 1.x refuses `http://` unless the cluster entry has
   * `insecure-skip-tls-verify: true` ("HTTP protocol is not allowed when skipTLSVerify is not set").
   */
  writeKubeconfig(dir: string, name = 'kubeconfig'): string {
    const path = join(dir, name);
    const text = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: fake',
      '  cluster:',
      `    server: ${this.url}`,
      '    insecure-skip-tls-verify: true',
      'users:',
      '- name: nodemedic',
      '  user:',
      `    token: ${this.token}`,
      'contexts:',
      '- name: fake',
      '  context:',
      '    cluster: fake',
      '    user: nodemedic',
      'current-context: fake',
      '',
    ].join('\n');
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  }

  private nextRv(): string {
    this.rv += 1;
    return String(this.rv);
  }

  /** Reports a change to the watches; a deletion gets its own resourceVersion, as on the real server. */
  private watched(resource: string, type: WatchEventType, o: K8sObject, before: K8sObject | undefined): void {
    if (type === 'DELETED') {
      o = structuredClone(o);
      o.metadata.resourceVersion = this.nextRv();
    }
    this.watches.changed(resource, type, o, before);
  }

  // ---- test-side state helpers ----

  addNode(node: K8sObject): K8sObject {
    const n = structuredClone(node);
    n.metadata.uid ??= randomUUID();
    n.metadata.resourceVersion = this.nextRv();
    n.metadata.creationTimestamp ??= new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    normalizeNode(n);
    this.nodes.set(n.metadata.name, n);
    return n;
  }

  addPod(pod: K8sObject): K8sObject {
    const p = structuredClone(pod);
    p.metadata.namespace ??= 'default';
    p.metadata.uid ??= randomUUID();
    p.metadata.resourceVersion = this.nextRv();
    this.pods.set(key(p.metadata.namespace, p.metadata.name), p);
    return p;
  }

  node(name: string): K8sObject {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`fake: no node ${name}`);
    return n;
  }

  podsOn(nodeName: string): K8sObject[] {
    return [...this.pods.values()].filter((p) => p.spec?.nodeName === nodeName);
  }

  /**
   * Creates or replaces a Lease as another client would (a kubelet renewing its heartbeat Lease): the
   * server assigns the resourceVersion (and on creation the uid and creationTimestamp), and watches
   * see the change. Not in the request log: it is not nodemedic's request.
   */
  writeLease(lease: K8sObject): K8sObject {
    const l = structuredClone(lease);
    const k = key(l.metadata.namespace, l.metadata.name);
    const cur = this.leases.get(k);
    l.apiVersion = 'coordination.k8s.io/v1';
    l.kind = 'Lease';
    l.metadata.uid = cur?.metadata.uid ?? l.metadata.uid ?? randomUUID();
    l.metadata.creationTimestamp = cur?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    l.metadata.resourceVersion = this.nextRv();
    this.leases.set(k, l);
    return l;
  }

  /** Changes a node as another client would (e.g. an administrator's `kubectl cordon`). */
  updateNode(name: string, change: (n: K8sObject) => void): void {
    const n = this.node(name);
    const before = structuredClone(n);
    change(n);
    n.metadata.resourceVersion = this.nextRv();
    normalizeNode(n);
    this.watches.changed('nodes', 'MODIFIED', n, before);
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const contentType = req.headers['content-type']?.split(';')[0]?.trim();
    const record: RequestRecord = { at: Date.now(), method, path: u.pathname, query: u.searchParams, contentType, status: 0, body: undefined };
    this.requests.push(record);
    const send = (code: number, body: unknown): void => {
      record.status = code;
      record.doneAt = Date.now();
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    try {
      const raw = await readBody(req);
      if (raw.length) {
        try {
          record.body = JSON.parse(raw) as Json;
        } catch {
          throw new HttpError(400, 'BadRequest', `the body of the request could not be decoded as JSON`);
        }
      }
      if (this.fault === 'hang') {
        // A stuck API server: the connection stays open and nothing ever comes back.
        this.hung.add(res);
        return;
      }
      if (this.fault === 'unavailable') throw new HttpError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request');
      const wait = this.delay?.(method, u.pathname);
      if (wait) await new Promise<void>((r) => this.timers.add(setTimeout(r, wait)));
      const injected = this.inject?.(method, u.pathname);
      if (injected) throw new HttpError(injected, injected === 409 ? 'Conflict' : 'InternalError', `injected ${injected} by the test`);
      const auth = req.headers.authorization;
      if (auth !== undefined ? auth !== `Bearer ${this.token}` : !this.anonymous) throw new HttpError(401, 'Unauthorized', 'Unauthorized');
      if (method === 'GET' && isWatch(u.searchParams)) {
        const w = this.watchTarget(u);
        if (w) {
          record.status = this.watches.serve(req, res, w.resource, w.namespace, u.searchParams, w.match);
          return;
        }
      }
      const [code, body] = this.route(method, u, contentType, record.body);
      send(code, body);
    } catch (e) {
      if (e instanceof HttpError) send(e.code, statusBody(e.code, e.reason, e.message, e.details));
      else if (e instanceof PatchError) send(e.code, statusBody(e.code, e.code === 400 ? 'BadRequest' : 'Invalid', e.message));
      else send(500, statusBody(500, 'InternalError', `fake apiserver bug: ${(e as Error).stack ?? String(e)}`));
    }
  }

  /**
   * The collection a watch request names, with its selectors; undefined: not watchable here (404 from
   * route). Core `/api/v1/[namespaces/{ns}/]{nodes,pods,events}`, and coordination.k8s.io leases in a
   * namespace (`/apis/coordination.k8s.io/v1/namespaces/{ns}/leases`), as the fake lists them.
   */
  private watchTarget(u: URL): { resource: string; namespace: string | undefined; match: (o: K8sObject) => boolean } | undefined {
    const p = u.pathname.replace(/\/+$/, '').split('/').slice(1);
    let rest: string[];
    let fields: Record<string, readonly string[]>;
    if (p[0] === 'api' && p[1] === 'v1') {
      rest = p.slice(2);
      fields = { nodes: NODE_FIELDS, pods: POD_FIELDS, events: EVENT_FIELDS };
    } else if (p[0] === 'apis' && p[1] === 'coordination.k8s.io' && p[2] === 'v1' && p[3] === 'namespaces') {
      rest = p.slice(3);
      fields = { leases: LEASE_FIELDS };
    } else {
      return undefined;
    }
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length === 3) {
      namespace = decodeURIComponent(rest[1]!);
      rest = rest.slice(2);
    }
    const resource = rest.length === 1 ? rest[0]! : '';
    if (!fields[resource] || (resource === 'nodes' && namespace)) return undefined;
    const q = u.searchParams;
    const terms = parseFieldSelector(q.get('fieldSelector'), fields[resource]!);
    const labels = q.get('labelSelector');
    return { resource, namespace, match: (o) => matchesFields(o, terms) && matchesLabels(o, labels) };
  }

  private route(method: string, u: URL, contentType: string | undefined, body: Json | undefined): [number, unknown] {
    const p = u.pathname.replace(/\/+$/, '').split('/').slice(1);
    const q = u.searchParams;
    const at = (i: number): string => decodeURIComponent(p[i] ?? '');
    // Discovery, as far as `kubectl drain` needs it (legacy, non-aggregated form).
    if (method === 'GET' && u.pathname === '/api') return [200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] }];
    if (method === 'GET' && u.pathname === '/apis') return [200, apiGroupList()];
    if (method === 'GET' && u.pathname === '/api/v1') return [200, coreResourceList()];
    if (method === 'GET' && u.pathname === '/version') return [200, { major: '1', minor: '30', gitVersion: 'v1.30.0-fake' }];
    if (p[0] === 'apis' && p.length === 3 && method === 'GET') return [200, groupResourceList(at(1), at(2))];

    if (p[0] === 'api' && p[1] === 'v1') {
      // /api/v1/nodes[/{name}[/status]]
      if (p[2] === 'nodes') {
        if (p.length === 3 && method === 'GET') return [200, this.list('NodeList', [...this.nodes.values()], q, NODE_FIELDS)];
        const name = at(3);
        const node = this.nodes.get(name);
        if (!node) throw notFound('nodes', name);
        const sub = p[4];
        if (p.length === 4 && method === 'GET') return [200, node];
        if (p.length === 5 && sub === 'status' && method === 'GET') return [200, node];
        if ((p.length === 4 || (p.length === 5 && sub === 'status')) && method === 'PATCH') {
          return [200, this.patchNode(node, contentType, body, sub === 'status')];
        }
        throw new HttpError(405, 'MethodNotAllowed', `${method} is not supported on ${u.pathname}`);
      }
      // /api/v1/pods: all namespaces.
      if (p[2] === 'pods' && p.length === 3 && method === 'GET') return [200, this.listPods(q, undefined)];
      if (p[2] === 'namespaces' && p.length >= 5) {
        const ns = at(3);
        const resource = p[4];
        if (resource === 'pods') {
          if (p.length === 5 && method === 'GET') return [200, this.listPods(q, ns)];
          const name = at(5);
          if (p.length === 6 && method === 'GET') {
            const pod = this.pods.get(key(ns, name));
            if (!pod) throw notFound('pods', name);
            return [200, pod];
          }
          if (p.length === 6 && method === 'DELETE') return [200, this.deletePod(ns, name, q, body)];
          if (p.length === 7 && p[6] === 'eviction' && method === 'POST') return [201, this.evict(ns, name, q, body)];
        }
        if (resource === 'secrets' && p.length === 6 && method === 'GET') {
          const secret = this.secrets.get(key(ns, at(5)));
          if (!secret) throw notFound('secrets', at(5));
          return [200, secret];
        }
        if (resource === 'events') {
          if (p.length === 5 && method === 'POST') return [201, this.createEvent(ns, body)];
          if (p.length === 5 && method === 'GET') return [200, this.list('EventList', this.events.filter((e) => e.metadata.namespace === ns), q, EVENT_FIELDS)];
        }
      }
    }

    if (p[0] === 'apis' && p[1] === 'coordination.k8s.io' && p[2] === 'v1' && p[3] === 'namespaces' && p[5] === 'leases') {
      const ns = at(4);
      if (p.length === 6 && method === 'GET') return [200, this.list('LeaseList', [...this.leases.values()].filter((l) => l.metadata.namespace === ns), q, LEASE_FIELDS)];
      if (p.length === 6 && method === 'POST') return [201, this.createLease(ns, body)];
      const name = at(6);
      if (p.length === 7 && method === 'GET') {
        const l = this.leases.get(key(ns, name));
        if (!l) throw notFound('leases.coordination.k8s.io', name);
        return [200, l];
      }
      if (p.length === 7 && method === 'PUT') return [200, this.replaceLease(ns, name, body)];
      if (p.length === 7 && method === 'DELETE') {
        if (!this.leases.delete(key(ns, name))) throw notFound('leases.coordination.k8s.io', name);
        return [200, { kind: 'Status', apiVersion: 'v1', status: 'Success', metadata: {} }];
      }
    }
    // kubectl drain reads a DaemonSet pod's controller to tell an orphan from a live DaemonSet
    // (kubectl/pkg/drain/filters.go, daemonSetFilter). A DaemonSet exists here while a pod names it.
    if (p[0] === 'apis' && p[1] === 'apps' && p[2] === 'v1' && p[3] === 'namespaces' && p[5] === 'daemonsets' && p.length === 7 && method === 'GET') {
      const ns = at(4);
      const name = at(6);
      const owner = [...this.pods.values()].find(
        (pod) => pod.metadata.namespace === ns && (pod.metadata.ownerReferences ?? []).some((r: K8sObject) => r.kind === 'DaemonSet' && r.name === name),
      );
      if (!owner) throw notFound('daemonsets.apps', name);
      return [200, { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name, namespace: ns, uid: 'DaemonSet-uid' }, spec: {}, status: {} }];
    }
    if (p[0] === 'apis' && p[1] === 'policy' && p[2] === 'v1' && method === 'GET' && p[p.length - 1] === 'poddisruptionbudgets') {
      const ns = p[3] === 'namespaces' ? at(4) : undefined;
      return [200, { kind: 'PodDisruptionBudgetList', apiVersion: 'policy/v1', metadata: { resourceVersion: String(this.rv) }, items: this.pdbs.filter((b) => !ns || b.namespace === ns).map((b) => this.pdbObject(b)) }];
    }
    throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${method} ${u.pathname})`);
  }

  /**
   * A list with `limit`/`continue` paging: items sorted by namespace/name (etcd key order), the
   * continue token naming a snapshot so later pages come from the same state, as the real server's
   * "consistent snapshot" does; an unknown token is 410 Gone (expired), as documented in API concepts.
   */
  private list(kind: string, all: K8sObject[], q: URLSearchParams, fields: readonly string[]): K8sObject {
    let items: K8sObject[];
    let start = 0;
    let rv = String(this.rv);
    const cont = q.get('continue');
    if (cont) {
      let tok: { id: string; offset: number };
      try {
        tok = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { id: string; offset: number };
      } catch {
        throw new HttpError(400, 'BadRequest', 'continue key is not valid');
      }
      const snap = this.snapshots.get(tok.id);
      if (!snap) throw new HttpError(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.');
      items = snap.items;
      rv = snap.rv;
      start = tok.offset;
    } else {
      const terms = parseFieldSelector(q.get('fieldSelector'), fields);
      items = all
        .filter((o) => matchesFields(o, terms) && matchesLabels(o, q.get('labelSelector')))
        .sort((a, b) => key(a.metadata.namespace ?? '', a.metadata.name).localeCompare(key(b.metadata.namespace ?? '', b.metadata.name)))
        .map((o) => structuredClone(o));
    }
    const limit = Number(q.get('limit') ?? 0);
    const page = limit > 0 ? items.slice(start, start + limit) : items.slice(start);
    const metadata: K8sObject = { resourceVersion: rv };
    if (limit > 0 && start + limit < items.length) {
      let id = cont ? (JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { id: string }).id : '';
      if (!id) {
        id = randomUUID();
        this.snapshots.set(id, { items, rv });
      }
      metadata.continue = Buffer.from(JSON.stringify({ id, offset: start + limit })).toString('base64url');
      metadata.remainingItemCount = items.length - start - limit;
    }
    const apiVersion = kind === 'LeaseList' ? 'coordination.k8s.io/v1' : 'v1';
    return { kind, apiVersion, metadata, items: page };
  }

  private listPods(q: URLSearchParams, ns: string | undefined): K8sObject {
    const all = [...this.pods.values()].filter((p) => !ns || p.metadata.namespace === ns);
    return this.list('PodList', all, q, POD_FIELDS);
  }

  /**
   * PATCH nodes/{name} and nodes/{name}/status by Content-Type (update-api-object-kubectl-patch). A
   * `metadata.resourceVersion` in the patch is a precondition: a stale one is 409 Conflict
   * (api-concepts, "Resource versions" / optimistic concurrency). The main resource ignores changes to
   * `status` and the status subresource ignores changes to anything but `status`, as the node
   * registry strategies do.
   */
  private patchNode(node: K8sObject, contentType: string | undefined, body: Json | undefined, status: boolean): K8sObject {
    if (body === undefined) throw new HttpError(400, 'BadRequest', 'the body of a PATCH request must not be empty');
    let patched: Json | undefined;
    switch (contentType) {
      case 'application/strategic-merge-patch+json':
        if (!isObject(body)) throw new HttpError(400, 'BadRequest', 'a strategic merge patch must be a JSON object');
        patched = strategicMergePatch(node as Json, body);
        break;
      case 'application/merge-patch+json':
        patched = jsonMergePatch(node as Json, body);
        break;
      case 'application/json-patch+json':
        patched = jsonPatch(node as Json, body);
        break;
      default:
        throw new HttpError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${JSON.stringify(contentType ?? '')})`);
    }
    if (!isObject(patched)) throw invalid('Node', node.metadata.name, 'the patched object is not an object');
    const out = patched as K8sObject;
    out.metadata ??= {};
    if (out.metadata.resourceVersion !== undefined && out.metadata.resourceVersion !== node.metadata.resourceVersion) {
      throw conflict('nodes', node.metadata.name);
    }
    if (status) {
      out.spec = structuredClone(node.spec);
      out.metadata = structuredClone(node.metadata);
    } else {
      out.status = structuredClone(node.status);
    }
    out.metadata.name = node.metadata.name;
    out.metadata.uid = node.metadata.uid;
    out.metadata.creationTimestamp = node.metadata.creationTimestamp;
    validateNode(out);
    out.metadata.resourceVersion = this.nextRv();
    normalizeNode(out);
    this.nodes.set(node.metadata.name, out);
    return out;
  }

  private pdbObject(b: FakePdb): K8sObject {
    return {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: b.name, namespace: b.namespace },
      spec: { selector: { matchLabels: b.matchLabels } },
      status: { disruptionsAllowed: this.disruptionsAllowed(b) },
    };
  }

  private disruptionsAllowed(b: FakePdb): number {
    if (b.never || (b.blockedUntil !== undefined && Date.now() < b.blockedUntil)) return 0;
    if (b.maxUnavailable === undefined) return 1;
    const terminating = [...this.pods.values()].filter(
      (p) => p.metadata.namespace === b.namespace && p.metadata.deletionTimestamp && labelsMatch(p, b.matchLabels),
    ).length;
    return Math.max(0, b.maxUnavailable - terminating);
  }

  /**
   * POST pods/{name}/eviction (policy/v1). See api-eviction: 404 for a missing pod; 500 when more than
   * one PDB selects the pod; 429 while the PDB allows no disruption; otherwise the pod is deleted
   * gracefully and the answer is 201 with a Success Status. A pod that is already terminal or already
   * being deleted is evicted without consulting its PDB (pkg/registry/core/pod/storage/eviction.go,
   * `canIgnorePDB`).
   */
  private evict(ns: string, name: string, q: URLSearchParams, body: Json | undefined): K8sObject {
    if (!isObject(body) || body.kind !== 'Eviction') throw new HttpError(400, 'BadRequest', 'the body must be a policy/v1 Eviction');
    const meta = isObject(body.metadata) ? body.metadata : {};
    if (meta.name !== name) throw new HttpError(400, 'BadRequest', `name in URL does not match name in Eviction object`);
    const pod = this.pods.get(key(ns, name));
    if (!pod) throw notFound('pods', name);
    const phase = pod.status?.phase;
    const ignorePdb = phase === 'Succeeded' || phase === 'Failed' || !!pod.metadata.deletionTimestamp;
    if (!ignorePdb) {
      const matching = this.pdbs.filter((b) => b.namespace === ns && labelsMatch(pod, b.matchLabels));
      if (matching.length > 1) {
        throw new HttpError(500, 'InternalError', 'This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.');
      }
      const pdb = matching[0];
      if (pdb && this.disruptionsAllowed(pdb) <= 0) {
        throw new HttpError(429, 'TooManyRequests', "Cannot evict pod as it would violate the pod's disruption budget.", {
          causes: [{ reason: 'DisruptionBudget', message: `The disruption budget ${pdb.name} does not allow a disruption now` }],
        });
      }
    }
    if (q.get('dryRun') !== 'All') {
      const opts = isObject(body.deleteOptions) ? body.deleteOptions : {};
      this.beginDelete(pod, typeof opts.gracePeriodSeconds === 'number' ? opts.gracePeriodSeconds : undefined);
    }
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 };
  }

  /** DELETE pods/{name}: graceful deletion (deletionTimestamp now + grace, gone after the grace period). */
  private deletePod(ns: string, name: string, q: URLSearchParams, body: Json | undefined): K8sObject {
    const pod = this.pods.get(key(ns, name));
    if (!pod) throw notFound('pods', name);
    const fromBody = isObject(body) && typeof body.gracePeriodSeconds === 'number' ? body.gracePeriodSeconds : undefined;
    const fromQuery = q.get('gracePeriodSeconds');
    if (q.get('dryRun') !== 'All') this.beginDelete(pod, fromBody ?? (fromQuery !== null ? Number(fromQuery) : undefined));
    return pod;
  }

  private beginDelete(pod: K8sObject, grace: number | undefined): void {
    const k = key(pod.metadata.namespace, pod.metadata.name);
    const phase = pod.status?.phase;
    // A terminal pod has no containers to stop: the kubelet lets it go at once.
    const seconds = phase === 'Succeeded' || phase === 'Failed' ? 0 : (grace ?? pod.spec?.terminationGracePeriodSeconds ?? 30);
    if (!pod.metadata.deletionTimestamp) {
      const before = structuredClone(pod);
      // The time the pod *will* be deleted: now plus the grace period, in real seconds whatever
      // msPerGraceSecond says (apiserver registry/rest/delete.go BeforeDelete; ObjectMeta reference).
      pod.metadata.deletionTimestamp = new Date(Date.now() + seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      pod.metadata.deletionGracePeriodSeconds = seconds;
      pod.metadata.resourceVersion = this.nextRv();
      this.watches.changed('pods', 'MODIFIED', pod, before);
    }
    const uid = pod.metadata.uid;
    const gone = (): void => {
      const cur = this.pods.get(k);
      if (!cur || cur.metadata.uid !== uid) return;
      this.pods.delete(k);
      const again = this.recreate?.(cur);
      if (again) this.addPod(again);
    };
    if (seconds <= 0) gone();
    else {
      const t = setTimeout(() => {
        this.timers.delete(t);
        gone();
      }, seconds * this.msPerGraceSecond);
      this.timers.add(t);
    }
  }

  /**
   * POST events (core/v1). Validation as the real server's ValidateEventCreate does for the fields
   * nodemedic sets: an involvedObject, a reason; an event about a cluster-scoped object (a Node) lives
   * in the `default` namespace; `eventTime`, when present, is a MicroTime (exactly six fractional digits).
   */
  private createEvent(ns: string, body: Json | undefined): K8sObject {
    if (!isObject(body)) throw new HttpError(400, 'BadRequest', 'the body must be an Event');
    const ev = structuredClone(body) as K8sObject;
    ev.metadata ??= {};
    const name = ev.metadata.name ?? (ev.metadata.generateName ? `${ev.metadata.generateName}${randomBytes(3).toString('hex')}` : '');
    if (!name) throw invalid('Event', '', 'metadata.name: Required value: name or generateName is required');
    if (ev.metadata.namespace && ev.metadata.namespace !== ns) throw new HttpError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
    const io = ev.involvedObject;
    if (!isObject(io) || !io.kind || !io.name) throw invalid('Event', name, 'involvedObject: Required value');
    if (!io.namespace && ns !== 'default') throw invalid('Event', name, 'involvedObject.namespace: Invalid value: "": does not match event.namespace');
    if (!ev.reason) throw invalid('Event', name, 'reason: Required value');
    if (ev.eventTime !== undefined && ev.eventTime !== null && !MICROTIME.test(String(ev.eventTime))) {
      throw new HttpError(400, 'BadRequest', `Event in version "v1" cannot be handled as a Event: parsing time ${JSON.stringify(ev.eventTime)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse`);
    }
    for (const f of ['firstTimestamp', 'lastTimestamp']) {
      if (ev[f] !== undefined && ev[f] !== null && !RFC3339.test(String(ev[f]))) throw new HttpError(400, 'BadRequest', `${f}: not an RFC 3339 time: ${JSON.stringify(ev[f])}`);
    }
    ev.metadata.name = name;
    ev.metadata.namespace = ns;
    ev.metadata.uid = randomUUID();
    ev.metadata.resourceVersion = this.nextRv();
    this.events.push(ev);
    this.watches.changed('events', 'ADDED', ev);
    return ev;
  }

  private validateLease(l: K8sObject, name: string): void {
    const spec = l.spec ?? {};
    for (const f of ['acquireTime', 'renewTime']) {
      if (spec[f] !== undefined && spec[f] !== null && !MICROTIME.test(String(spec[f]))) {
        // What the real server says when a MicroTime lacks its six fractional digits.
        throw new HttpError(400, 'BadRequest', `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(spec[f])} as "2006-01-02T15:04:05.000000Z07:00": cannot parse`);
      }
    }
    if (spec.leaseDurationSeconds !== undefined && (!Number.isInteger(spec.leaseDurationSeconds) || spec.leaseDurationSeconds <= 0)) {
      throw invalid('Lease', name, 'spec.leaseDurationSeconds: Invalid value: must be greater than 0');
    }
  }

  /** POST leases: 409 AlreadyExists when the name is taken (api-concepts, "Create"). */
  private createLease(ns: string, body: Json | undefined): K8sObject {
    if (!isObject(body)) throw new HttpError(400, 'BadRequest', 'the body must be a Lease');
    const l = structuredClone(body) as K8sObject;
    const name = l.metadata?.name;
    if (!name) throw invalid('Lease', '', 'metadata.name: Required value');
    if (this.leases.has(key(ns, name))) {
      throw new HttpError(409, 'AlreadyExists', `leases.coordination.k8s.io "${name}" already exists`, { name, group: 'coordination.k8s.io', kind: 'leases' });
    }
    this.validateLease(l, name);
    l.apiVersion = 'coordination.k8s.io/v1';
    l.kind = 'Lease';
    l.metadata.namespace = ns;
    l.metadata.uid = randomUUID();
    l.metadata.resourceVersion = this.nextRv();
    l.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    this.leases.set(key(ns, name), l);
    return l;
  }

  /**
   * PUT leases/{name}: a `metadata.resourceVersion` that is not the current one is 409 Conflict
   * (optimistic concurrency, api-concepts). Leases allow an unconditional update (no resourceVersion).
   */
  private replaceLease(ns: string, name: string, body: Json | undefined): K8sObject {
    if (!isObject(body)) throw new HttpError(400, 'BadRequest', 'the body must be a Lease');
    const cur = this.leases.get(key(ns, name));
    if (!cur) throw notFound('leases.coordination.k8s.io', name);
    const l = structuredClone(body) as K8sObject;
    if (l.metadata?.name !== name) throw new HttpError(400, 'BadRequest', 'the name of the object does not match the name on the URL');
    const rv = l.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== cur.metadata.resourceVersion) throw conflict('leases.coordination.k8s.io', name);
    this.validateLease(l, name);
    l.apiVersion = 'coordination.k8s.io/v1';
    l.kind = 'Lease';
    l.metadata.namespace = ns;
    l.metadata.uid = cur.metadata.uid;
    l.metadata.creationTimestamp = cur.metadata.creationTimestamp;
    l.metadata.resourceVersion = this.nextRv();
    this.leases.set(key(ns, name), l);
    return l;
  }
}

function labelsMatch(pod: K8sObject, sel: Record<string, string>): boolean {
  const labels: Record<string, string> = pod.metadata?.labels ?? {};
  return Object.entries(sel).every(([k, v]) => labels[k] === v);
}

/** The parts of ValidateNodeUpdate the agent can get wrong. */
function validateNode(n: K8sObject): void {
  const name = n.metadata.name;
  if (n.spec?.unschedulable !== undefined && typeof n.spec.unschedulable !== 'boolean') {
    throw new HttpError(400, 'BadRequest', `Node in version "v1" cannot be handled as a Node: spec.unschedulable: expected a boolean`);
  }
  const ann = n.metadata.annotations;
  if (ann !== undefined) {
    if (!isObject(ann)) throw invalid('Node', name, 'metadata.annotations: must be a map');
    for (const [k, v] of Object.entries(ann)) if (typeof v !== 'string') throw invalid('Node', name, `metadata.annotations[${k}]: must be a string`);
  }
  const conds = n.status?.conditions;
  if (conds !== undefined) {
    if (!Array.isArray(conds)) throw invalid('Node', name, 'status.conditions: must be a list');
    const seen = new Set<string>();
    for (const c of conds as K8sObject[]) {
      if (!c.type) throw invalid('Node', name, 'status.conditions.type: Required value');
      if (seen.has(c.type)) throw invalid('Node', name, `status.conditions: Duplicate value: ${c.type}`);
      seen.add(c.type);
      if (!['True', 'False', 'Unknown'].includes(c.status)) throw invalid('Node', name, `status.conditions[${c.type}].status: Unsupported value: ${JSON.stringify(c.status)}`);
      for (const f of ['lastHeartbeatTime', 'lastTransitionTime']) {
        if (c[f] !== undefined && c[f] !== null && !RFC3339.test(String(c[f]))) {
          throw new HttpError(400, 'BadRequest', `status.conditions[${c.type}].${f}: not an RFC 3339 time: ${JSON.stringify(c[f])}`);
        }
      }
    }
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function apiGroupList(): K8sObject {
  const group = (name: string, version: string): K8sObject => ({
    name,
    versions: [{ groupVersion: `${name}/${version}`, version }],
    preferredVersion: { groupVersion: `${name}/${version}`, version },
  });
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: [group('apps', 'v1'), group('policy', 'v1'), group('coordination.k8s.io', 'v1')] };
}

function coreResourceList(): K8sObject {
  const r = (name: string, kind: string, namespaced: boolean, verbs: string[], extra: K8sObject = {}): K8sObject => ({
    name,
    singularName: '',
    namespaced,
    kind,
    verbs,
    ...extra,
  });
  return {
    kind: 'APIResourceList',
    groupVersion: 'v1',
    resources: [
      r('nodes', 'Node', false, ['get', 'list', 'patch', 'watch'], { shortNames: ['no'] }),
      r('nodes/status', 'Node', false, ['get', 'patch']),
      r('pods', 'Pod', true, ['delete', 'get', 'list', 'watch'], { shortNames: ['po'] }),
      // kubectl drain finds the eviction subresource here and uses its group/version (policy/v1).
      r('pods/eviction', 'Eviction', true, ['create'], { group: 'policy', version: 'v1' }),
      r('events', 'Event', true, ['create', 'list', 'watch'], { shortNames: ['ev'] }),
      r('secrets', 'Secret', true, ['get']),
    ],
  };
}

function groupResourceList(group: string, version: string): K8sObject {
  const resources: K8sObject[] = [];
  if (group === 'policy' && version === 'v1') {
    resources.push({ name: 'poddisruptionbudgets', singularName: '', namespaced: true, kind: 'PodDisruptionBudget', verbs: ['get', 'list'], shortNames: ['pdb'] });
  } else if (group === 'apps' && version === 'v1') {
    resources.push({ name: 'daemonsets', singularName: '', namespaced: true, kind: 'DaemonSet', verbs: ['get'], shortNames: ['ds'] });
  } else if (group === 'coordination.k8s.io' && version === 'v1') {
    resources.push({ name: 'leases', singularName: '', namespaced: true, kind: 'Lease', verbs: ['create', 'delete', 'get', 'list', 'update', 'watch'] });
  } else {
    throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${group}/${version})`);
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: `${group}/${version}`, resources };
}
