/**
 * Watch support for the fake API server: `GET <collection>?watch=true` (or `watch=1`) streams JSON
 * lines of `{type, object}` as the real server does, from a bounded history of changes.
 *
 * References (https://kubernetes.io/docs/reference/using-api/api-concepts/):
 * - "Efficient detection of changes": a watch starts from a `resourceVersion` (usually the one a list
 *   returned) and sends ADDED / MODIFIED / DELETED events for changes after it. Without a
 *   resourceVersion, or with `0`, it first sends a synthetic ADDED for every current object ("Get State
 *   and Start at Most Recent" / "Start at Any").
 * - "410 Gone": the server keeps a limited history; a watch from a version older than that fails with
 *   410. A watch request answers 200 and then carries the failure as an ERROR event whose object is a
 *   Status (`reason: Expired`, `code: 410`, message `too old resource version: X (Y)`), which is how the
 *   API server's watch cache reports it (kubernetes/kubernetes#25151); the client must relist.
 * - "Watch bookmarks": with `allowWatchBookmarks=true` the server may send BOOKMARK events whose object
 *   carries only `metadata.resourceVersion`; clients must not assume they arrive at any interval.
 * - `timeoutSeconds`: the server ends the watch after that long (a normal end of stream).
 * - Field selectors on a watch: an object that stops matching arrives as DELETED, one that starts
 *   matching as ADDED (the watch cache's filtered watchers, `cacheWatcher.convertToWatchEvent`).
 * Where a watch is denied (RBAC without the `watch` verb) the server answers 403 before streaming.
 * The same for every resource the fake watches: core nodes, pods and events, and coordination.k8s.io
 * leases (kubelet's heartbeat Leases in kube-node-lease, the reboot Leases).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K8sObject = Record<string, any>;

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** A change as the store saw it: the object after the change (before it, for DELETED). */
interface Change {
  rv: number;
  type: WatchEventType;
  object: K8sObject;
}

/** What a watched collection is: its kind, how an object is matched by a field selector. */
export interface WatchedResource {
  /** `nodes`, `pods`, `events`, `leases`. */
  name: string;
  kind: string;
  /** The API group (`''` for the core group) and version, as bookmarks and 403 messages name them. */
  group: string;
  apiVersion: string;
  /** Current objects, for a watch without a resourceVersion. */
  current(): K8sObject[];
}

interface OpenWatch {
  resource: string;
  namespace: string | undefined;
  match: (o: K8sObject) => boolean;
  res: ServerResponse;
  bookmarks: boolean;
  timers: NodeJS.Timeout[];
  /** The last resourceVersion sent; bookmarks carry the latest the server knows. */
  sentRv: number;
  /** Open but sending nothing more (`silence`): a half-open connection, a stuck watch cache. */
  silent: boolean;
}

export interface WatchHubOptions {
  /** Changes kept per resource; older resourceVersions get 410 Gone. Default 1000. */
  historySize?: number;
  /** How often an open watch that asked for bookmarks gets one. Default 60 s (the real server: about a minute). */
  bookmarkIntervalMs?: number;
}

/**
 * The change history and the open watches of one fake API server. The server reports every change
 * (`changed`); a watch request is handed to `serve`.
 */
export class WatchHub {
  private readonly history = new Map<string, Change[]>();
  /** Per resource: the oldest resourceVersion a watch may still start from (older: 410). */
  private readonly compactedRv = new Map<string, number>();
  private readonly open = new Set<OpenWatch>();
  private readonly historySize: number;
  private readonly bookmarkIntervalMs: number;
  /** Deny the watch verb (as RBAC without `watch` does): 403 Forbidden. For the polling fallback. */
  forbidden = false;
  /** Watch requests served, for tests (the request log has them too). */
  served = 0;

  constructor(
    private readonly resources: ReadonlyMap<string, WatchedResource>,
    private readonly currentRv: () => number,
    opts: WatchHubOptions = {},
  ) {
    this.historySize = opts.historySize ?? 1000;
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 60_000;
  }

  /** The server's latest resourceVersion. */
  get latest(): number {
    return this.currentRv();
  }

  /** How many watches are open now (per resource when given). */
  openCount(resource?: string): number {
    return [...this.open].filter((w) => !resource || w.resource === resource).length;
  }

  /** Records a change and sends it to the open watches that match (before or after the change). */
  changed(resource: string, type: WatchEventType, object: K8sObject, before?: K8sObject): void {
    const rv = Number(object.metadata?.resourceVersion ?? this.currentRv());
    const h = this.history.get(resource) ?? [];
    h.push({ rv, type, object: structuredClone(object) });
    if (h.length > this.historySize) {
      const dropped = h.splice(0, h.length - this.historySize);
      this.compactedRv.set(resource, dropped[dropped.length - 1]!.rv);
    }
    this.history.set(resource, h);
    for (const w of this.open) {
      if (w.resource !== resource) continue;
      const ev = this.eventFor(w, type, object, before);
      if (ev) this.send(w, ev, rv);
    }
  }

  /** The event a watcher with a field selector sees for a change, or none. */
  private eventFor(w: OpenWatch, type: WatchEventType, object: K8sObject, before: K8sObject | undefined): { type: string; object: K8sObject } | undefined {
    if (w.namespace && object.metadata?.namespace !== w.namespace) return undefined;
    const now = w.match(object);
    if (type !== 'MODIFIED') return now ? { type, object } : undefined;
    const was = before ? w.match(before) : now;
    if (now && was) return { type, object };
    if (now) return { type: 'ADDED', object };
    if (was) return { type: 'DELETED', object };
    return undefined;
  }

  private send(w: OpenWatch, ev: { type: string; object: K8sObject }, rv: number): void {
    if (w.silent) return;
    w.sentRv = Math.max(w.sentRv, rv);
    w.res.write(`${JSON.stringify(ev)}\n`);
  }

  /**
   * Serves `GET <collection>?watch=...`. `match` is the request's field and label selector.
   * `record` gets the status; the response stays open until the timeout, a hook or the server's stop.
   */
  serve(req: IncomingMessage, res: ServerResponse, resource: string, namespace: string | undefined, q: URLSearchParams, match: (o: K8sObject) => boolean): number {
    if (this.forbidden) {
      const group = this.resources.get(resource)?.group ?? '';
      const body = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Forbidden', code: 403, message: `${resource}${group ? `.${group}` : ''} is forbidden: User cannot watch resource "${resource}" in API group "${group}" ${namespace ? `in the namespace "${namespace}"` : 'at the cluster scope'}` };
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
      return 403;
    }
    const r = this.resources.get(resource)!;
    this.served++;
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // Headers now, so the client knows the watch is established before any event.
    res.flushHeaders();
    const w: OpenWatch = { resource, namespace, match, res, bookmarks: q.get('allowWatchBookmarks') === 'true', timers: [], sentRv: 0, silent: false };
    const rvParam = q.get('resourceVersion') ?? '';
    const from = rvParam === '' || rvParam === '0' ? undefined : Number(rvParam);
    if (from !== undefined && (!Number.isFinite(from) || from < (this.compactedRv.get(resource) ?? 0))) {
      // The history no longer reaches back that far: 200, one ERROR event with a 410 Status, end.
      const status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Expired', code: 410, message: `too old resource version: ${rvParam} (${this.compactedRv.get(resource) ?? 0})` };
      res.end(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
      return 200;
    }
    this.open.add(w);
    const close = (): void => this.close(w);
    req.once('close', close);
    res.once('close', close);
    if (from === undefined) {
      for (const o of r.current()) if ((!namespace || o.metadata?.namespace === namespace) && match(o)) this.send(w, { type: 'ADDED', object: o }, Number(o.metadata?.resourceVersion ?? 0));
      w.sentRv = this.currentRv();
    } else {
      w.sentRv = from;
      // Replay what happened after `from`, as the watch cache does, with the selector applied per change.
      const h = this.history.get(resource) ?? [];
      const prev = new Map<string, K8sObject>();
      for (const c of h) {
        const k = `${c.object.metadata?.namespace ?? ''}/${c.object.metadata?.name}`;
        const before = prev.get(k);
        prev.set(k, c.object);
        if (c.rv <= from) continue;
        const ev = this.eventFor(w, c.type, c.object, before);
        if (ev) this.send(w, ev, c.rv);
      }
    }
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    if (timeout > 0) w.timers.push(setTimeout(() => this.close(w), timeout * 1000));
    if (w.bookmarks) {
      const tick = (): void => this.bookmark(w);
      const iv = setInterval(tick, this.bookmarkIntervalMs);
      w.timers.push(iv as unknown as NodeJS.Timeout);
    }
    return 200;
  }

  private close(w: OpenWatch): void {
    if (!this.open.delete(w)) return;
    for (const t of w.timers) clearTimeout(t);
    if (!w.res.writableEnded) w.res.end();
  }

  // ---- test hooks ----

  /** Ends every open watch normally (an API server restart, a load balancer's idle cut). Returns how many. */
  closeAll(resource?: string): number {
    let n = 0;
    for (const w of [...this.open]) {
      if (resource && w.resource !== resource) continue;
      this.close(w);
      n++;
    }
    return n;
  }

  /**
   * Forgets the history of `resource` (all when omitted), as etcd compaction does: a watch resuming
   * from any version before the latest gets 410 Gone (from the latest, nothing is missing). With `sendGone`, open watches also get the ERROR
   * event and end, which is what a watcher that fell behind sees.
   */
  expire(resource?: string, sendGone = false): void {
    const rv = this.currentRv();
    for (const name of this.resources.keys()) {
      if (resource && name !== resource) continue;
      this.history.set(name, []);
      this.compactedRv.set(name, rv);
    }
    if (!sendGone) return;
    for (const w of [...this.open]) {
      if (resource && w.resource !== resource) continue;
      const status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Expired', code: 410, message: `too old resource version: ${w.sentRv} (${rv})` };
      w.res.write(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
      this.close(w);
    }
  }

  /** A bookmark carrying the latest resourceVersion the server knows (everything before it was sent). */
  private bookmark(w: OpenWatch): void {
    if (w.silent) return;
    w.sentRv = Math.max(w.sentRv, this.currentRv());
    const { kind, apiVersion } = this.resources.get(w.resource)!;
    w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind, apiVersion, metadata: { resourceVersion: String(w.sentRv) } } })}\n`);
  }

  /** Sends a bookmark now to every open watch that allows them. */
  bookmarkNow(): void {
    for (const w of this.open) if (w.bookmarks) this.bookmark(w);
  }

  /**
   * The open watches of `resource` (all when omitted) stay open but send nothing more, neither events
   * nor bookmarks nor an end: a connection gone half-open, or a watch cache stuck behind. The client
   * sees no error. Watches opened afterwards are served normally. Returns how many.
   */
  silence(resource?: string): number {
    let n = 0;
    for (const w of this.open) {
      if (resource && w.resource !== resource) continue;
      w.silent = true;
      n++;
    }
    return n;
  }

  stop(): void {
    for (const w of [...this.open]) this.close(w);
  }
}

/** Whether a query asks for a watch (`watch=true` or `watch=1`, as the real server's parser accepts). */
export function isWatch(q: URLSearchParams): boolean {
  const v = q.get('watch');
  return v === 'true' || v === '1';
}

/**
 * A Map that reports `set` and `delete` to the watch history, so a test (or the fake itself) that
 * adds or removes an object directly is seen by watches as the real server's clients would see it.
 * Changes made in place must be reported by the caller (`WatchHub.changed`).
 */
export class ObservedMap<V extends K8sObject> extends Map<string, V> {
  constructor(private readonly report: (type: WatchEventType, object: V, before: V | undefined) => void) {
    super();
  }
  override set(k: string, v: V): this {
    // Map's constructor may call set before `report` is assigned; it is never given entries here.
    const before = super.get(k);
    super.set(k, v);
    this.report?.(before ? 'MODIFIED' : 'ADDED', v, before);
    return this;
  }
  override delete(k: string): boolean {
    const v = super.get(k);
    if (!super.delete(k)) return false;
    this.report?.('DELETED', v!, v);
    return true;
  }
}
