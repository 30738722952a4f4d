/**
 * `stuck-pods`: the runbook's "container instances abnormal", as the API shows them for this node:
 * pods that should have gone offline and did not, and pods stuck starting. Causes that are not the
 * node's fault are listed as excluded and never count (checks/pod-stuck.ts has the rules).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { parseDuration } from '../platform/duration.js';
import { clusterCache, warmUp, withKubeApi } from './kube-check.js';
import { assessPods, podsNeedingEvents, type PodEvents } from './pod-stuck.js';
import type { BaseCheckOptions, CheckDefinition, Finding } from './types.js';

export interface StuckPodsOptions extends BaseCheckOptions {
  /** A terminating pod still present this long after its deletionTimestamp (request time + grace period) is stuck. */
  stuckTerminatingAfter: string;
  /** A Pending pod whose containers have not started (`ContainerCreating`) this long after it was bound is stuck. */
  stuckStartingAfter: string;
  /** How long the API may take to answer all of one run's calls; then `unknown` (`ApiTimeout`). */
  timeout: string;
}

/** The order a LIST returns (namespace, then name), so that equal-age entries keep the order they had when this check listed. */
function byName(a: V1Pod, b: V1Pod): number {
  const k = (p: V1Pod): string => `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`;
  return k(a).localeCompare(k(b));
}

export const stuckPodsCheck: CheckDefinition<StuckPodsOptions> = {
  id: 'stuck-pods',
  reasons: ['NoStuckPods', 'PodsStuckTerminating', 'PodsStuckStarting', 'PodsStuck', 'CannotRuleOutCauses'],
  restartCures: true,
  defaults: { enabled: true, stuckTerminatingAfter: '5m', stuckStartingAfter: '10m', timeout: '10s' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      stuckTerminatingAfter: { type: 'string', format: 'duration' },
      stuckStartingAfter: { type: 'string', format: 'duration' },
      timeout: { type: 'string', format: 'duration' },
    },
  },
  // `start` connects ahead; should that have failed, the first run loads client-node itself (seconds on a busy node).
  runTimeoutMs: (o) => parseDuration(o.timeout) + 5000,
  create(options, { host, nodeName, kube }) {
    const thresholds = { terminatingAfterMs: parseDuration(options.stuckTerminatingAfter), startingAfterMs: parseDuration(options.stuckStartingAfter) };
    const timeoutMs = parseDuration(options.timeout);
    // This node's pods, listed once and then watched (platform/kube-watch.ts), instead of two LISTs
    // every sweep. Pods nominated for this node (waiting for a preemption) are not bound yet; they are
    // followed too so that they show as excluded rather than vanish from the picture.
    const boundCache = clusterCache<V1Pod>({ resource: 'pods', fieldSelector: `spec.nodeName=${nodeName}` });
    const nominatedCache = clusterCache<V1Pod>({ resource: 'pods', fieldSelector: `status.nominatedNodeName=${nodeName}` });
    return {
      id: 'stuck-pods',
      // Connect and start watching before the first sweep: loading client-node can take seconds on a
      // busy node, which must not count against the first run's timeout.
      start: () => warmUp(kube, [boundCache, nominatedCache]),
      stop: async () => {
        await Promise.all([boundCache.release(), nominatedCache.release()]);
      },
      run(signal): Promise<Finding> {
        return withKubeApi(kube, { timeoutMs, signal, what: `list pods of node ${nodeName}` }, async (api) => {
          const [bound, nominated] = await Promise.all([boundCache.read(api, signal), nominatedCache.read(api, signal)]);
          bound.sort(byName);
          nominated.sort(byName);
          const seen = new Set<string>();
          const pods: V1Pod[] = [];
          for (const p of [...bound, ...nominated]) {
            const id = p.metadata?.uid ?? `${p.metadata?.namespace}/${p.metadata?.name}`;
            if (seen.has(id)) continue;
            seen.add(id);
            pods.push(p);
          }
          const now = host.clock.now();
          const events = new Map<string, PodEvents>();
          await Promise.all(
            podsNeedingEvents(pods, now, thresholds).map(async (p) => {
              const ns = p.metadata?.namespace ?? 'default';
              const key = p.metadata?.uid ?? `${ns}/${p.metadata?.name}`;
              try {
                events.set(key, { events: await api.listEvents(ns, `involvedObject.kind=Pod,involvedObject.name=${p.metadata?.name ?? ''}`) });
              } catch (e) {
                events.set(key, { error: (e as Error).message });
              }
            }),
          );
          // Events are read only for the pods that need them (a stuck start that might be a volume wait): none at idle.
          return assessPods(nodeName, pods, events, now, thresholds);
        });
      },
    };
  },
};
