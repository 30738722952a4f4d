/**
 * `kubelet-connection`: kubelet healthy locally but cut off from the API server (kubernetes#87615
 * "use of closed network connection", #91963: kubelet's healthz says ok while the node goes
 * NotReady). The runbook's "kubelet cannot talk to the cluster"; a kubelet restart reconnects it.
 *
 * Signals: this Node's Lease in `kube-node-lease` is no longer renewed (kubelet renews it every 10 s;
 * its duration is 40 s), or the Node's `Ready` is `Unknown` (the node lifecycle controller's verdict
 * that kubelet stopped posting status). The lease's age is judged the way client-go's leader election
 * judges a holder: from when *this agent* last saw `renewTime` change, on its own monotonic clock,
 * never by comparing the control plane's timestamps with the local wall clock (clock skew).
 *
 * Cost (issue 13): the Lease and the Node are read from list-then-watch caches (platform/kube-watch.ts;
 * the Node's is node-ready's), so a healthy node costs no request per run: kubelet's renewals arrive
 * as watch events every 10 s. Only when the caches say kubelet has gone quiet does a run read both
 * directly (GET), because a cache is not enough to call a problem:
 * - a watch can lag or go silent without closing; the lease then looks stale while kubelet renews it.
 *   The direct read settles it, and a cache found behind re-opens its watch;
 * - the verdict needs the API to answer *this agent* now. In an API brownout (overloaded, 429/503)
 *   open watches may keep streaming while new requests fail, and kubelet's renewals fail with them:
 *   a stale lease is then the control plane's trouble, which no kubelet restart cures.
 *
 * Verdicts: API answers and (lease stale or Ready Unknown) and kubelet's healthz answers 200 →
 * `problem` `KubeletDisconnected`. Healthz failing → `unknown` (the `kubelet` check owns that fault).
 * The API not answering this agent either, or a cache that cannot be made current (watch down and
 * relist failing) → `unknown` (kube-check.ts): then the trouble may be the control plane's or the
 * network's, which a kubelet restart does not cure.
 */
import type { V1Lease, V1Node } from '@kubernetes/client-node';
import { monotonicNow } from '../platform/clock.js';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { isStatus } from '../platform/kube-client.js';
import { probeHealthz, type HealthzOutcome } from './kubelet.js';
import { clusterCache, isoTime, warmUp, withKubeApi } from './kube-check.js';
import { unknown, type BaseCheckOptions, type CheckDefinition, type Finding } from './types.js';

export interface KubeletConnectionOptions extends BaseCheckOptions {
  /** kubelet's healthz, as for the `kubelet` check. */
  healthzUrl: string;
  leaseNamespace: string;
  /** The lease counts as not renewed once its `renewTime` has not changed for this long (seen by this agent). */
  staleAfter: string;
  /** Bound on the API calls and on the healthz probe. */
  timeout: string;
}

/** What one run saw. */
export interface ConnectionFacts {
  node: string;
  /** `renewTime` as last read, and how long (this agent's clock) it has not changed; undefined age: first sight. */
  renewTime?: string;
  unchangedForMs?: number;
  readyStatus?: string;
  readyReason?: string;
  healthz: HealthzOutcome | undefined;
  /** Where the Lease and Node came from: the watch caches (all well), or a direct read (kubelet looked quiet). */
  seenBy: 'watch' | 'read';
  /** The direct read found a renewal the Lease's watch had not delivered (the watch is re-opened). */
  watchBehind?: boolean;
}

/** The verdict (pure). */
export function judgeConnection(f: ConnectionFacts, staleAfterMs: number): Finding {
  const stale = f.unchangedForMs !== undefined && f.unchangedForMs >= staleAfterMs;
  const readyUnknown = f.readyStatus === 'Unknown';
  const evidence: Record<string, unknown> = {
    node: f.node,
    leaseRenewTime: f.renewTime ?? null,
    leaseUnchangedFor: f.unchangedForMs === undefined ? null : formatDuration(f.unchangedForMs),
    staleAfter: formatDuration(staleAfterMs),
    ready: f.readyStatus ?? null,
    ...(f.readyReason ? { readyReason: f.readyReason } : {}),
    seenBy: f.seenBy,
    ...(f.watchBehind ? { watchBehind: true } : {}),
    ...(f.healthz ? { healthz: f.healthz.kind === 'response' ? { status: f.healthz.status, body: f.healthz.body.slice(0, 200) } : { outcome: f.healthz.kind } } : {}),
  };
  if (!stale && !readyUnknown) {
    return {
      status: 'ok',
      reason: 'KubeletConnected',
      message: f.unchangedForMs === undefined ? `watching node ${f.node}'s lease (renewTime ${f.renewTime ?? 'unset'})` : `node ${f.node}'s lease is being renewed`,
      evidence,
    };
  }
  const what = [
    ...(stale ? [`node ${f.node}'s lease in kube-node-lease not renewed for ${formatDuration(f.unchangedForMs!)} (last renewTime ${f.renewTime})`] : []),
    ...(readyUnknown ? [`Ready is Unknown${f.readyReason ? ` (${f.readyReason})` : ''}`] : []),
  ].join(' and ');
  const h = f.healthz;
  if (!h || h.kind !== 'response' || h.status !== 200) {
    const how = !h ? 'not probed' : h.kind === 'response' ? `answered ${h.status}` : h.kind;
    return unknown('KubeletNotHealthy', `${what}, and kubelet's healthz ${how}: not a lost connection; see the kubelet check`, evidence);
  }
  return {
    status: 'problem',
    reason: 'KubeletDisconnected',
    message: `${what}, while the API answers nodemedic and kubelet's healthz answers 200: kubelet has lost its connection to the API server; restart kubelet`,
    evidence,
  };
}

const renewIso = (l: V1Lease): string | undefined => isoTime(l.spec?.renewTime as Date | string | undefined);
const readyOf = (n: V1Node | undefined): string | undefined => n?.status?.conditions?.find((c) => c.type === 'Ready')?.status;

/** When this agent first saw the current `renewTime` (monotonic ms), and the value a direct read superseded while the watch still showed it. */
interface Seen {
  renewTime: string | undefined;
  sinceMs: number;
  /** The cache showed this when a direct read already had a newer one: while it still does, the cache is behind. */
  cacheBehindAt?: string | undefined;
}

export const kubeletConnectionCheck: CheckDefinition<KubeletConnectionOptions> = {
  id: 'kubelet-connection',
  reasons: ['KubeletConnected', 'KubeletDisconnected', 'KubeletNotHealthy', 'NoNodeLease', 'NoKubernetesAccess', 'ApiUnavailable', 'ApiTimeout', 'ApiUnreachable'],
  restartCures: true, // restart-kubelet reconnects it
  defaults: { enabled: true, healthzUrl: 'http://127.0.0.1:10248/healthz', leaseNamespace: 'kube-node-lease', staleAfter: '40s', timeout: '10s' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      healthzUrl: { type: 'string', pattern: '^https?://' },
      leaseNamespace: { type: 'string', minLength: 1 },
      staleAfter: { type: 'string', format: 'duration' },
      timeout: { type: 'string', format: 'duration' },
    },
  },
  runTimeoutMs: (o) => 2 * parseDuration(o.timeout) + 5000,
  create(options, { host, nodeName, kube }) {
    const staleAfterMs = parseDuration(options.staleAfter);
    const timeoutMs = parseDuration(options.timeout);
    const leaseName = `${options.leaseNamespace}/${nodeName}`;
    // This node's Lease and its Node, listed once and then watched; the Node's cache is node-ready's (shared).
    const leaseCache = clusterCache<V1Lease>({ resource: 'leases', namespace: options.leaseNamespace, fieldSelector: `metadata.name=${nodeName}` });
    const nodeCache = clusterCache<V1Node>({ resource: 'nodes', fieldSelector: `metadata.name=${nodeName}` });
    let seen: Seen | undefined;
    const observe = (renewTime: string | undefined, now: number): Seen => {
      if (!seen || seen.renewTime !== renewTime) seen = { renewTime, sinceMs: now };
      return seen;
    };
    const noLease = (): Finding =>
      unknown('NoNodeLease', `no Lease ${leaseName} (kubelet has not registered, or the cluster predates node leases)`, { node: nodeName });
    const factsOf = (lease: V1Lease, node: V1Node | undefined, now: number, seenBy: ConnectionFacts['seenBy']): ConnectionFacts => {
      const renewTime = renewIso(lease);
      const s = observe(renewTime, now);
      const ready = node?.status?.conditions?.find((c) => c.type === 'Ready');
      return {
        node: nodeName,
        ...(renewTime ? { renewTime } : {}),
        // Counted from this agent's first sight of this renewTime: an agent that just started waits staleAfter.
        unchangedForMs: now - s.sinceMs,
        ...(ready?.status ? { readyStatus: ready.status } : {}),
        ...(ready?.reason ? { readyReason: ready.reason } : {}),
        healthz: undefined,
        seenBy,
      };
    };
    return {
      id: 'kubelet-connection',
      // Connect and start both watches before the first sweep (as node-ready does).
      start: () => warmUp(kube, [leaseCache, nodeCache]),
      stop: async () => {
        await Promise.all([leaseCache.release(), nodeCache.release()]);
      },
      async run(signal): Promise<Finding> {
        let facts: ConnectionFacts | undefined;
        const api = await withKubeApi(kube, { timeoutMs, signal, what: `read lease ${leaseName} and node ${nodeName}` }, async (api) => {
          // A cache that cannot be made current throws its API failure here: unknown, as a failed GET was.
          const [leases, nodes] = await Promise.all([leaseCache.read(api, signal), nodeCache.read(api, signal)]);
          const cached = leases.find((l) => l.metadata?.name === nodeName);
          if (!cached) return noLease();
          const cachedNode = nodes.find((n) => n.metadata?.name === nodeName);
          const now = monotonicNow(host.clock);
          const cachedRenew = renewIso(cached);
          if (seen?.cacheBehindAt === undefined || seen.cacheBehindAt !== cachedRenew) {
            const f = factsOf(cached, cachedNode, now, 'watch');
            if (judgeConnection(f, staleAfterMs).status === 'ok') {
              facts = f;
              return { status: 'ok', reason: 'ApiAnswered', message: '' };
            }
          }
          // Kubelet looks quiet (or the cache is known to be behind): read both now. A failure is this
          // run's unknown; an answer is the API answering this agent, and the current truth.
          let lease: V1Lease;
          let node: V1Node | undefined;
          try {
            [lease, node] = await Promise.all([
              api.readLease(options.leaseNamespace, nodeName),
              api.getNode(nodeName).catch((e: unknown) => {
                if (isStatus(e, 404)) return undefined;
                throw e;
              }),
            ]);
          } catch (e) {
            if (isStatus(e, 404)) return noLease();
            throw e;
          }
          const renewTime = renewIso(lease);
          const behind = renewTime !== cachedRenew;
          if (behind) leaseCache.rewatch();
          if (readyOf(node) !== readyOf(cachedNode)) nodeCache.rewatch();
          facts = { ...factsOf(lease, node, now, 'read'), ...(behind ? { watchBehind: true } : {}) };
          if (behind) seen!.cacheBehindAt = cachedRenew;
          return { status: 'ok', reason: 'ApiAnswered', message: '' };
        });
        if (!facts) return api;
        const f = facts as ConnectionFacts;
        // Healthz only matters when the cluster says the node is gone quiet.
        const first = judgeConnection(f, staleAfterMs);
        if (first.status === 'ok') return first;
        f.healthz = await probeHealthz(options.healthzUrl, timeoutMs, signal);
        return judgeConnection(f, staleAfterMs);
      },
    };
  },
};
