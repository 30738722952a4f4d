/**
 * `node-ready`: this node's `Ready` condition as the cluster sees it (the console's "node NotReady").
 * The kubelet sets `Ready=False` with its reason (e.g. `KubeletNotReady` / `PLEG is not healthy`); the
 * node lifecycle controller sets `Unknown` (`NodeStatusUnknown`) when the kubelet stops posting status.
 * Reference: https://kubernetes.io/docs/reference/node/node-status/#condition
 */
import type { V1Node, V1NodeCondition } from '@kubernetes/client-node';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { clusterCache, isoTime, timeMs, warmUp, withKubeApi } from './kube-check.js';
import { withNetworkEvidence } from './network-view.js';
import { withOvercommitEvidence } from './node-overcommit.js';
import { unknown, type BaseCheckOptions, type CheckDefinition, type Finding } from './types.js';

export interface NodeReadyOptions extends BaseCheckOptions {
  /** `Ready` must be `False` or `Unknown` this long (since its last transition) to be a problem. */
  notReadyFor: string;
  /** How long the API may take to answer; then `unknown` (`ApiTimeout`). */
  timeout: string;
}

/** Conditions reported in the evidence besides `Ready`; `True` is the bad value for each of them. */
export const PRESSURE_CONDITIONS = ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'NetworkUnavailable'] as const;

function describeCondition(c: V1NodeCondition): Record<string, unknown> {
  return {
    status: c.status,
    ...(c.reason ? { reason: c.reason } : {}),
    ...(c.message ? { message: c.message } : {}),
    ...(c.lastTransitionTime ? { lastTransitionTime: isoTime(c.lastTransitionTime) } : {}),
    ...(c.lastHeartbeatTime ? { lastHeartbeatTime: isoTime(c.lastHeartbeatTime) } : {}),
  };
}

/**
 * The verdict on a Node object at `now` (pure). `firstSeenNotReadyMs` stands in for a missing
 * `lastTransitionTime`: the time this agent first saw the condition bad.
 */
export function judgeNode(node: V1Node, now: number, notReadyForMs: number, firstSeenNotReadyMs?: number): Finding {
  const conditions = node.status?.conditions ?? [];
  const ready = conditions.find((c) => c.type === 'Ready');
  const pressures: Record<string, unknown> = {};
  for (const type of PRESSURE_CONDITIONS) {
    const c = conditions.find((x) => x.type === type);
    if (c) pressures[type] = describeCondition(c);
  }
  const pressing = PRESSURE_CONDITIONS.filter((t) => conditions.find((c) => c.type === t)?.status === 'True');
  const pressNote = pressing.length ? `; also ${pressing.join(', ')}` : '';
  const evidence: Record<string, unknown> = {
    node: node.metadata?.name,
    ...(node.spec?.unschedulable ? { unschedulable: true } : {}),
    ready: ready ? describeCondition(ready) : null,
    conditions: pressures,
    notReadyFor: formatDuration(notReadyForMs),
  };
  if (!ready) {
    return unknown('NoReadyCondition', `node ${node.metadata?.name} has no Ready condition yet (the kubelet has not posted its status)`, evidence);
  }
  if (ready.status === 'True') {
    return { status: 'ok', reason: 'NodeReady', message: `node ${node.metadata?.name} is Ready${pressNote}`, evidence };
  }
  // Skew between this node's clock and the control plane's could make the age negative; it then counts as just now.
  const since = timeMs(ready.lastTransitionTime) ?? firstSeenNotReadyMs ?? now;
  const age = Math.max(0, now - since);
  evidence.notReadySince = new Date(since).toISOString();
  const what = `Ready is ${ready.status} for ${formatDuration(age)}${ready.reason ? ` (${ready.reason}${ready.message ? `: ${ready.message}` : ''})` : ''}`;
  if (age >= notReadyForMs) {
    return {
      status: 'problem',
      reason: 'NodeNotReady',
      message: `node ${node.metadata?.name}: ${what}${pressNote}; runbook: restart kubelet, then the container runtime, then drain and reboot`,
      evidence,
    };
  }
  return {
    status: 'ok',
    reason: 'NotReadyWithinGrace',
    message: `node ${node.metadata?.name}: ${what}${pressNote}; a problem once it lasts ${formatDuration(notReadyForMs)}`,
    evidence,
  };
}

export const nodeReadyCheck: CheckDefinition<NodeReadyOptions> = {
  id: 'node-ready',
  reasons: ['NodeReady', 'NotReadyWithinGrace', 'NodeNotReady', 'NoReadyCondition', 'NodeNotFound'],
  restartCures: true,
  defaults: { enabled: true, notReadyFor: '1m', timeout: '10s' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      notReadyFor: { type: 'string', format: 'duration' },
      timeout: { type: 'string', format: 'duration' },
    },
  },
  // `start` connects ahead; should that have failed, the first run loads client-node itself (seconds on a busy node).
  runTimeoutMs: (o) => parseDuration(o.timeout) + 5000,
  create(options, { host, nodeName, kube }) {
    const notReadyForMs = parseDuration(options.notReadyFor);
    const timeoutMs = parseDuration(options.timeout);
    let firstSeenNotReady: number | undefined;
    // This node's Node, listed once and then watched (platform/kube-watch.ts): a run reads the cache
    // instead of GETting the Node every sweep.
    const cache = clusterCache<V1Node>({ resource: 'nodes', fieldSelector: `metadata.name=${nodeName}` });
    return {
      id: 'node-ready',
      // Connect and start watching before the first sweep: loading client-node can take seconds on a
      // busy node, which must not count against the first run's timeout.
      start: () => warmUp(kube, [cache]),
      stop: () => cache.release(),
      run(signal): Promise<Finding> {
        return withKubeApi(kube, { timeoutMs, signal, what: `get node ${nodeName}` }, async (api) => {
          const node = (await cache.read(api, signal)).find((n) => n.metadata?.name === nodeName);
          if (!node) {
            return unknown('NodeNotFound', `the API has no Node named ${nodeName} (is nodeName right? has the kubelet registered?)`, { node: nodeName });
          }
          const now = host.clock.now();
          const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
          if (ready && ready.status !== 'True') firstSeenNotReady ??= now;
          else firstSeenNotReady = undefined;
          // A NotReady node's problem carries its overcommit (checks/node-overcommit.ts: was it oversold?)
          // and the network check's latest finding (checks/network-view.ts: could it reach the control plane?).
          return withNetworkEvidence(await withOvercommitEvidence(judgeNode(node, now, notReadyForMs, firstSeenNotReady), nodeName), nodeName);
        });
      },
    };
  },
};
