/**
 * The agent's view of the cluster, kept by list-then-watch instead of asking every sweep: one cache
 * per collection and field selector (this node's Node, this node's pods, this node's heartbeat Lease
 * in kube-node-lease), shared by whoever reads it (the cluster-view checks; later the overcommit feature).
 *
 * It follows client-go's reflector (k8s.io/client-go/tools/cache/reflector.go):
 * - list once (`resourceVersion=0`: from the API server's watch cache), then watch from the list's
 *   resourceVersion with the same field selector;
 * - a watch that ends normally (the server's `timeoutSeconds`, randomised between 5 and 10 minutes
 *   like client-go's `minWatchTimeout`, or a closed connection) resumes from the last resourceVersion
 *   seen (an event's or a bookmark's), so nothing in between is missed;
 * - 410 Gone (an ERROR event with an `Expired` Status, or an HTTP 410) means that version is no longer
 *   in the server's history: relist, then watch from the new list;
 * - other failures back off (1 s doubling to 30 s, jittered) and retry;
 * - where the server will not serve a watch (403: RBAC without `watch`; 404/405: an old or partial
 *   API), the cache falls back to listing on a jittered timer, and says so in `status()`.
 * The cache never invents health: a reader is told the last failure while the cache cannot be
 * trusted (never listed, or its watch broken and not yet re-established).
 */
import { KubeApiError, type KubeApi, type WatchEvent, type WatchHandle, type WatchResource } from './kube-client.js';

/**
 * The objects one cache follows: `resource` matching `fieldSelector`, for a namespaced resource in
 * `namespace` only when given (a Lease in kube-node-lease), else in all namespaces. Cluster-scoped
 * resources (nodes) have no namespace.
 */
export interface Collection {
  resource: WatchResource;
  namespace?: string;
  fieldSelector: string;
}

function collectionKey(c: Collection): string {
  return `${c.resource}${c.namespace ? `@${c.namespace}` : ''}?${c.fieldSelector}`;
}

/** What a reader needs from an object. */
export interface Meta {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface ReflectorOptions {
  /** Between lists when watching is not possible. Default 15 s (the default sweep), jittered ±20 %. */
  pollIntervalMs?: number;
  /** Longest wait between retries after a failure. Default 30 s. */
  maxBackoffMs?: number;
  /** [0, 1); for the jitter. */
  random?: () => number;
  /** Told of every change to the cache (tests; a check that wants to run at once). */
  onChange?: () => void;
}

export type ReflectorMode = 'watch' | 'poll';

export interface ReflectorStatus {
  /** The API server (`KubeApi.server`). */
  server: string;
  resource: WatchResource;
  namespace?: string;
  fieldSelector: string;
  mode: ReflectorMode;
  /** Why it polls instead of watching. */
  fallback?: string;
  /** `watching`, `polling`, `connecting`, `failing`. */
  state: string;
  objects: number;
  resourceVersion: string;
  lists: number;
  watches: number;
  lastError?: string;
}

const MIN_WATCH_TIMEOUT_S = 300;

/** One collection, listed then watched; `items()` is the current view. */
export class Reflector<T extends Meta> {
  private readonly objects = new Map<string, T>();
  private rv = '';
  private synced = false;
  private connected = false;
  private error: KubeApiError | undefined;
  private mode: ReflectorMode = 'watch';
  private fallback: string | undefined;
  private handle: WatchHandle | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private stopped = true;
  private failures = 0;
  private lists = 0;
  private watchCount = 0;
  private loop: Promise<void> | undefined;
  /** Settled after each attempt (list, watch start, poll), for readers waiting on an outcome. */
  private waiters: (() => void)[] = [];
  private readonly random: () => number;
  /** 410s in a row without an event between: a server that 410s the version it just listed must not become a request loop. */
  private gone = 0;

  readonly resource: WatchResource;
  readonly namespace: string | undefined;
  readonly fieldSelector: string;

  constructor(
    private readonly api: KubeApi,
    collection: Collection,
    private readonly opts: ReflectorOptions = {},
  ) {
    this.resource = collection.resource;
    this.namespace = collection.namespace;
    this.fieldSelector = collection.fieldSelector;
    this.random = opts.random ?? Math.random;
  }

  /** What it follows, for messages: `leases in kube-node-lease (metadata.name=n1)`. */
  private get what(): string {
    return `${this.resource}${this.namespace ? ` in ${this.namespace}` : ''} (${this.fieldSelector})`;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.handle?.stop();
    this.handle = undefined;
    this.endWatch?.('resume');
    this.wake?.();
    await this.loop;
    this.settle();
  }

  items(): T[] {
    return [...this.objects.values()];
  }

  /**
   * Waits until the cache can be read: listed, and its watch open (or its last poll good). While it
   * cannot be, throws the failure that keeps it so; a failing cache is asked to retry now, as a poll
   * would have. `signal` ends the wait (the caller then reports its own timeout).
   */
  async read(signal?: AbortSignal): Promise<T[]> {
    this.start();
    let asked = false;
    for (;;) {
      const usable = this.synced && (this.mode === 'poll' ? !this.error : this.connected);
      if (usable) return this.items();
      if (this.error && !this.busy) {
        // One fresh attempt per read, as the poll this replaces made one request per run.
        if (asked) throw this.error;
        asked = true;
        this.retryNow();
      }
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(new KubeApiError(`read ${this.what}`, 0, 'Timeout', 'the wait was aborted'));
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
      if (this.stopped) throw new KubeApiError(`${this.resource} cache`, 0, 'Stopped', 'the cache was stopped');
    }
  }

  /** An attempt (list or watch start) is in flight. */
  private busy = false;

  /**
   * A reader found the cache behind the server (a direct read showed a newer object than the watch
   * delivered: a watch that went silent without closing, which client-go would only notice at its
   * `timeoutSeconds`). Ends the open watch; a new one resumes from the last resourceVersion seen, so
   * what the old one missed is replayed (or, if that version is gone, relisted). No-op while polling.
   */
  rewatch(): void {
    if (this.mode === 'poll' || !this.handle) return;
    this.handle.stop();
    this.endWatch?.('resume');
  }

  status(): ReflectorStatus {
    return {
      server: this.api.server,
      resource: this.resource,
      ...(this.namespace ? { namespace: this.namespace } : {}),
      fieldSelector: this.fieldSelector,
      mode: this.mode,
      ...(this.fallback ? { fallback: this.fallback } : {}),
      state: this.error ? 'failing' : this.mode === 'poll' ? 'polling' : this.connected ? 'watching' : 'connecting',
      objects: this.objects.size,
      resourceVersion: this.rv,
      lists: this.lists,
      watches: this.watchCount,
      ...(this.error ? { lastError: this.error.message } : {}),
    };
  }

  private settle(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private retryPending = false;

  private retryNow(): void {
    this.retryPending = true;
    this.wake?.();
  }

  /** Sleeps `ms` unless woken (a reader asking for a retry, stop). */
  private sleep(ms: number): Promise<void> {
    if (this.retryPending || this.stopped) {
      this.retryPending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      // A cache its user forgot to release must not keep a process alive.
      this.timer.unref();
      this.wake = () => {
        clearTimeout(this.timer);
        this.wake = undefined;
        this.retryPending = false;
        resolve();
      };
    });
  }

  private backoffMs(): number {
    const base = Math.min(this.opts.maxBackoffMs ?? 30_000, 1000 * 2 ** Math.min(this.failures - 1, 10));
    return base * (0.5 + this.random() / 2);
  }

  private key(o: T): string {
    return o.metadata?.uid ?? `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
  }

  private async list(): Promise<void> {
    this.lists++;
    const l = await this.api.listForWatch(this.resource, this.fieldSelector, this.namespace);
    this.objects.clear();
    for (const o of l.items as T[]) this.objects.set(this.key(o), o);
    this.rv = l.resourceVersion;
    this.synced = true;
    this.opts.onChange?.();
  }

  private fail(e: unknown): void {
    if (!(e instanceof KubeApiError)) throw e;
    this.error = e;
    this.failures++;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.mode === 'poll') {
        this.busy = true;
        try {
          await this.list();
          this.error = undefined;
          this.failures = 0;
        } catch (e) {
          this.fail(e);
        } finally {
          this.busy = false;
          this.settle();
        }
        if (this.stopped) break;
        const base = this.opts.pollIntervalMs ?? 15_000;
        await this.sleep(this.error ? Math.min(base, this.backoffMs()) : base * (0.8 + 0.4 * this.random()));
        continue;
      }
      const closed = await this.listAndWatch();
      if (this.stopped) break;
      if (closed === 'resume' && this.gone < 2) continue;
      if (closed === 'resume') this.failures++;
      if (closed === 'fallback') continue;
      await this.sleep(this.backoffMs());
    }
    this.connected = false;
  }

  /** Ends the open watch's wait (stop, an ERROR event). */
  private endWatch: ((how: 'resume' | 'backoff' | 'short') => void) | undefined;

  /** One list (if needed) and one watch, until the watch ends. What to do next: resume, back off, or poll. */
  private async listAndWatch(): Promise<'resume' | 'backoff' | 'fallback'> {
    this.busy = true;
    try {
      if (!this.rv) await this.list();
    } catch (e) {
      this.fail(e);
      this.busy = false;
      this.settle();
      return 'backoff';
    }
    let over = false;
    let events = 0;
    const startedAt = performance.now();
    let ended!: (how: 'resume' | 'backoff' | 'short') => void;
    const end = new Promise<'resume' | 'backoff' | 'short'>((r) => (ended = (how) => {
      over = true;
      r(how);
    }));
    this.endWatch = ended;
    const timeoutSeconds = Math.floor(MIN_WATCH_TIMEOUT_S * (1 + this.random()));
    try {
      this.watchCount++;
      this.handle = await this.api.watch(
        this.resource,
        { fieldSelector: this.fieldSelector, ...(this.namespace ? { namespace: this.namespace } : {}), resourceVersion: this.rv, timeoutSeconds, allowWatchBookmarks: true },
        (ev) => {
          events++;
          this.onEvent(ev, ended);
        },
        (err) => {
          this.connected = false;
          if (err && err.status === 410) {
            this.rv = '';
            this.gone++;
          }
          if (err && err.status !== 410) this.fail(err);
          // A watch the server ends at once, with nothing in it, must not become a request loop (client-go: "very short watch").
          const short = !err && events === 0 && performance.now() - startedAt < 1000;
          ended(err && err.status !== 410 ? 'backoff' : short ? 'short' : 'resume');
        },
      );
    } catch (e) {
      this.busy = false;
      this.endWatch = undefined;
      if (e instanceof KubeApiError && e.status === 410) {
        this.rv = '';
        this.gone++;
        this.settle();
        return 'resume';
      }
      if (e instanceof KubeApiError && (e.status === 403 || e.status === 404 || e.status === 405)) {
        // Watching is not allowed here (RBAC without `watch`) or not served: list on a timer instead.
        this.mode = 'poll';
        this.fallback = `watch refused (HTTP ${e.status} ${e.reason}); polling every ${Math.round((this.opts.pollIntervalMs ?? 15_000) / 1000)}s, jittered`;
        // What was cached may be old (the watch may have been broken a while): readers wait for the first poll.
        this.synced = false;
        this.busy = true;
        return 'fallback';
      }
      this.fail(e);
      this.settle();
      return 'backoff';
    }
    if (!over) {
      this.connected = true;
      this.error = undefined;
      this.failures = 0;
    }
    this.busy = false;
    this.settle();
    if (this.stopped) ended('resume');
    const how = await end;
    this.handle?.stop();
    this.handle = undefined;
    this.endWatch = undefined;
    this.connected = false;
    this.settle();
    if (how === 'short') {
      this.failures++;
      return 'backoff';
    }
    return how;
  }

  private onEvent(ev: WatchEvent, ended: (how: 'resume' | 'backoff' | 'short') => void): void {
    const o = ev.object as T & { code?: number; reason?: string; message?: string };
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED':
        this.objects.set(this.key(o), o);
        break;
      case 'DELETED':
        this.objects.delete(this.key(o));
        break;
      case 'BOOKMARK':
        break;
      case 'ERROR': {
        // The server ends the watch after an ERROR event; 410 Expired: our version fell out of its history.
        this.handle?.stop();
        this.connected = false;
        if (o.code === 410) {
          this.rv = '';
          this.gone++;
          ended('resume');
        } else {
          this.fail(new KubeApiError(`watch ${this.what}`, o.code ?? 0, o.reason ?? 'Error', o.message ?? ''));
          ended('backoff');
        }
        return;
      }
    }
    const rv = o.metadata?.resourceVersion;
    if (rv) this.rv = rv;
    this.gone = 0;
    if (ev.type !== 'BOOKMARK') this.opts.onChange?.();
  }
}

/** Reflectors shared per API access, counted by their users. */
interface Entry {
  reflector: Reflector<Meta>;
  users: number;
}

const registry = new WeakMap<KubeApi, Map<string, Entry>>();
/** Every live reflector, for /status. */
const live = new Set<Reflector<Meta>>();

/**
 * The shared cache of `collection` on `api`, started on first use. Each `acquire` is paired with one
 * `release`; the last release stops it.
 */
export function acquireReflector<T extends Meta>(api: KubeApi, collection: Collection, opts: ReflectorOptions = {}): Reflector<T> {
  let m = registry.get(api);
  if (!m) registry.set(api, (m = new Map()));
  const k = collectionKey(collection);
  let e = m.get(k);
  if (!e) {
    e = { reflector: new Reflector<Meta>(api, collection, opts), users: 0 };
    m.set(k, e);
    live.add(e.reflector);
  }
  e.users++;
  e.reflector.start();
  return e.reflector as unknown as Reflector<T>;
}

export async function releaseReflector(api: KubeApi, r: Reflector<Meta> | Reflector<never>): Promise<void> {
  const m = registry.get(api);
  const k = collectionKey(r);
  const e = m?.get(k);
  if (!e || e.reflector !== (r as unknown as Reflector<Meta>)) return;
  if (--e.users > 0) return;
  m!.delete(k);
  live.delete(e.reflector);
  await e.reflector.stop();
}

/** How the agent follows the cluster, for /status: one line per cache (watching, or polling and why). */
export function clusterViewStatus(): ReflectorStatus[] {
  return [...live].map((r) => r.status());
}
