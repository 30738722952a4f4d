/**
 * Pods and Events in the states a kubelet (and the scheduler, the attach/detach controller) leaves
 * them, for the cluster-view checks. Shapes follow the API reference and what `kubectl get -o yaml`
 * shows on a real cluster:
 * - Pod status and container states: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#PodStatus
 *   and https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/
 * - deletionTimestamp = deletion request time + grace period; the kubelet's final delete sets
 *   deletionGracePeriodSeconds to 0 (ObjectMeta reference; apiserver registry/rest/delete.go).
 * - Node conditions: https://kubernetes.io/docs/reference/node/node-status/#condition
 * - Event (core/v1): https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/
 * All times are relative to `now` (ms), so tests drive them with a ManualClock.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeNode, makePod } from './fixtures.js';
import { FakeApiServer, type K8sObject } from './server.js';

/** RFC 3339 with whole seconds, as the API server writes `metav1.Time`. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}

export interface PodBase {
  name: string;
  namespace?: string;
  node: string;
  now: number;
  /** When it was scheduled to the node, ms before `now`. */
  scheduledAgoMs: number;
}

function base(o: PodBase, spec: Partial<{ readinessProbe: boolean; startupProbe: boolean; livenessProbe: boolean; pvc: string; initContainer: boolean }> = {}): K8sObject {
  const pod = makePod({ name: o.name, node: o.node, ...(o.namespace ? { namespace: o.namespace } : {}), phase: 'Pending' });
  const at = rfc3339(o.now - o.scheduledAgoMs);
  pod.metadata.uid = randomUUID();
  pod.metadata.creationTimestamp = at;
  const main = pod.spec.containers[0];
  main.name = 'app';
  main.image = 'registry.example.com/shop/app:1.4.2';
  if (spec.readinessProbe) main.readinessProbe = { httpGet: { path: '/ready', port: 8080 }, periodSeconds: 10, failureThreshold: 3 };
  if (spec.livenessProbe) main.livenessProbe = { httpGet: { path: '/live', port: 8080 }, periodSeconds: 10, failureThreshold: 3 };
  if (spec.startupProbe) main.startupProbe = { httpGet: { path: '/started', port: 8080 }, periodSeconds: 10, failureThreshold: 30 };
  if (spec.initContainer) pod.spec.initContainers = [{ name: 'migrate', image: 'registry.example.com/shop/migrate:1.4.2' }];
  if (spec.pvc) pod.spec.volumes.push({ name: 'data', persistentVolumeClaim: { claimName: spec.pvc } });
  pod.spec.terminationGracePeriodSeconds = 30;
  pod.status = {
    phase: 'Pending',
    qosClass: 'BestEffort',
    hostIP: '10.0.0.7',
    startTime: at,
    conditions: [
      { type: 'PodReadyToStartContainers', status: 'False', lastProbeTime: null, lastTransitionTime: at },
      { type: 'Initialized', status: 'True', lastProbeTime: null, lastTransitionTime: at },
      { type: 'Ready', status: 'False', lastProbeTime: null, lastTransitionTime: at, reason: 'ContainersNotReady', message: 'containers with unready status: [app]' },
      { type: 'ContainersReady', status: 'False', lastProbeTime: null, lastTransitionTime: at, reason: 'ContainersNotReady', message: 'containers with unready status: [app]' },
      { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: at },
    ],
  };
  return pod;
}

function waitingStatus(name: string, image: string, reason: string, message?: string, extra: K8sObject = {}): K8sObject {
  return { name, image, imageID: '', ready: false, restartCount: 0, started: false, state: { waiting: { reason, ...(message ? { message } : {}) } }, lastState: {}, ...extra };
}

function setCondition(pod: K8sObject, type: string, status: string, at: string, reason?: string): void {
  const c = pod.status.conditions.find((x: K8sObject) => x.type === type);
  c.status = status;
  c.lastTransitionTime = at;
  if (reason) c.reason = reason;
  else delete c.reason;
  if (status === 'True') delete c.message;
}

/** Running and ready: nothing abnormal. */
export function runningPod(o: PodBase): K8sObject {
  const pod = base(o);
  const at = rfc3339(o.now - o.scheduledAgoMs + 3000);
  pod.status.phase = 'Running';
  pod.status.podIP = '10.244.1.17';
  for (const t of ['PodReadyToStartContainers', 'Ready', 'ContainersReady']) setCondition(pod, t, 'True', at);
  pod.status.containerStatuses = [
    { name: 'app', image: pod.spec.containers[0].image, imageID: 'sha256:3b1f0c', containerID: 'docker://7a1c', ready: true, started: true, restartCount: 0, state: { running: { startedAt: at } }, lastState: {} },
  ];
  return pod;
}

/**
 * A running pod whose deletion was requested `deletedAgoMs` before `now` with `grace` seconds: its
 * deletionTimestamp is request + grace. `kubeletDeleted`: the kubelet already stopped it and sent its
 * final delete (grace 0), so only `finalizers` keep it.
 */
export function terminatingPod(o: PodBase & { deletedAgoMs: number; grace?: number; finalizers?: string[]; kubeletDeleted?: boolean }): K8sObject {
  const pod = runningPod(o);
  const grace = o.grace ?? 30;
  const requested = o.now - o.deletedAgoMs;
  pod.metadata.deletionTimestamp = rfc3339(requested + grace * 1000);
  pod.metadata.deletionGracePeriodSeconds = grace;
  if (o.finalizers) pod.metadata.finalizers = o.finalizers;
  if (o.kubeletDeleted) {
    // The kubelet's final DELETE with grace 0 moves deletionTimestamp back to the request time.
    pod.metadata.deletionGracePeriodSeconds = 0;
    pod.metadata.deletionTimestamp = rfc3339(requested);
    pod.status.phase = 'Succeeded';
    pod.status.containerStatuses[0].ready = false;
    pod.status.containerStatuses[0].started = false;
    pod.status.containerStatuses[0].state = { terminated: { exitCode: 0, reason: 'Completed', startedAt: pod.status.startTime, finishedAt: rfc3339(requested + 2000) } };
  }
  return pod;
}

/** Bound, containers not started (`ContainerCreating`; `PodInitializing` for a pod with init containers): no sandbox yet. */
export function creatingPod(o: PodBase & { initContainer?: boolean; pvc?: string }): K8sObject {
  const pod = base(o, { initContainer: !!o.initContainer, ...(o.pvc ? { pvc: o.pvc } : {}) });
  const img = pod.spec.containers[0].image;
  if (o.initContainer) {
    setCondition(pod, 'Initialized', 'False', rfc3339(o.now - o.scheduledAgoMs), 'ContainersNotInitialized');
    // With init containers the kubelet's default waiting reason is PodInitializing for every container (kubelet_pods.go).
    pod.status.initContainerStatuses = [waitingStatus('migrate', pod.spec.initContainers[0].image, 'PodInitializing')];
    pod.status.containerStatuses = [waitingStatus('app', img, 'PodInitializing')];
  } else {
    pod.status.containerStatuses = [waitingStatus('app', img, 'ContainerCreating')];
  }
  return pod;
}

/** Bound to the node, but the kubelet never acknowledged it: only PodScheduled, no startTime, no container status. */
export function unacknowledgedPod(o: PodBase): K8sObject {
  const pod = base(o);
  const at = rfc3339(o.now - o.scheduledAgoMs);
  pod.status = { phase: 'Pending', qosClass: 'BestEffort', conditions: [{ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: at }] };
  return pod;
}

/** A Pending pod an init container of which is still running (the application's own initialisation). */
export function initializingPod(o: PodBase): K8sObject {
  const pod = base(o, { initContainer: true });
  const at = rfc3339(o.now - o.scheduledAgoMs + 2000);
  setCondition(pod, 'Initialized', 'False', at, 'ContainersNotInitialized');
  setCondition(pod, 'PodReadyToStartContainers', 'True', at);
  pod.status.initContainerStatuses = [
    { name: 'migrate', image: pod.spec.initContainers[0].image, imageID: 'sha256:aa', containerID: 'docker://11', ready: false, started: true, restartCount: 0, state: { running: { startedAt: at } }, lastState: {} },
  ];
  pod.status.containerStatuses = [waitingStatus('app', pod.spec.containers[0].image, 'PodInitializing')];
  return pod;
}

const IMAGE_MESSAGES: Record<string, string> = {
  ErrImagePull: 'rpc error: code = NotFound desc = failed to pull and unpack image "registry.example.com/shop/app:1.4.2": not found',
  ImagePullBackOff: 'Back-off pulling image "registry.example.com/shop/app:1.4.2"',
  InvalidImageName: 'Failed to apply default image tag "registry.example.com/Shop/App:1.4.2": couldn\'t parse image reference "registry.example.com/Shop/App:1.4.2": invalid reference format: repository name must be lowercase',
  ErrImageNeverPull: 'Container image "registry.example.com/shop/app:1.4.2" is not present with pull policy of Never',
};

/** Pending with an image error on its only container. */
export function imageErrorPod(o: PodBase & { reason: keyof typeof IMAGE_MESSAGES }): K8sObject {
  const pod = base(o);
  setCondition(pod, 'PodReadyToStartContainers', 'True', rfc3339(o.now - o.scheduledAgoMs + 1000));
  pod.status.podIP = '10.244.1.18';
  pod.status.containerStatuses = [waitingStatus('app', pod.spec.containers[0].image, o.reason, IMAGE_MESSAGES[o.reason])];
  return pod;
}

/** Running phase, its container exiting again and again (`liveness`: killed by its liveness probe). */
export function crashLoopPod(o: PodBase & { liveness?: boolean }): K8sObject {
  const pod = runningPod(o);
  if (o.liveness) pod.spec.containers[0].livenessProbe = { httpGet: { path: '/live', port: 8080 }, periodSeconds: 10, failureThreshold: 3 };
  setCondition(pod, 'Ready', 'False', rfc3339(o.now - 60_000), 'ContainersNotReady');
  setCondition(pod, 'ContainersReady', 'False', rfc3339(o.now - 60_000), 'ContainersNotReady');
  const c = pod.status.containerStatuses[0];
  c.ready = false;
  c.started = false;
  c.restartCount = 7;
  c.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off 5m0s restarting failed container=app pod=${o.name}_${o.namespace ?? 'default'}(${pod.metadata.uid})` } };
  // A liveness kill is SIGKILL (137) after the probe failed; an application crash is its own exit code.
  c.lastState = { terminated: o.liveness ? { exitCode: 137, reason: 'Error' } : { exitCode: 1, reason: 'Error' } };
  return pod;
}

/** Running but not ready because its readiness (or startup) probe fails. */
export function probeFailingPod(o: PodBase & { probe: 'readiness' | 'startup' }): K8sObject {
  const pod = runningPod(o);
  const main = pod.spec.containers[0];
  if (o.probe === 'readiness') main.readinessProbe = { httpGet: { path: '/ready', port: 8080 }, periodSeconds: 10, failureThreshold: 3 };
  else main.startupProbe = { httpGet: { path: '/started', port: 8080 }, periodSeconds: 10, failureThreshold: 30 };
  const at = rfc3339(o.now - o.scheduledAgoMs + 3000);
  setCondition(pod, 'Ready', 'False', at, 'ContainersNotReady');
  setCondition(pod, 'ContainersReady', 'False', at, 'ContainersNotReady');
  const c = pod.status.containerStatuses[0];
  c.ready = false;
  c.started = o.probe === 'readiness';
  return pod;
}

/** Waiting for a ConfigMap that does not exist. */
export function configErrorPod(o: PodBase): K8sObject {
  const pod = base(o);
  setCondition(pod, 'PodReadyToStartContainers', 'True', rfc3339(o.now - o.scheduledAgoMs + 1000));
  pod.status.containerStatuses = [waitingStatus('app', pod.spec.containers[0].image, 'CreateContainerConfigError', 'configmap "shop-config" not found')];
  return pod;
}

/** Not bound: the scheduler nominated this node for a preemption that has not happened. */
export function unschedulablePod(o: PodBase): K8sObject {
  const pod = base(o);
  delete pod.spec.nodeName;
  const at = rfc3339(o.now - o.scheduledAgoMs);
  pod.status = {
    phase: 'Pending',
    qosClass: 'Burstable',
    nominatedNodeName: o.node,
    conditions: [
      {
        type: 'PodScheduled',
        status: 'False',
        lastProbeTime: null,
        lastTransitionTime: at,
        reason: 'Unschedulable',
        message: '0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.',
      },
    ],
  };
  return pod;
}

/** An Event about a pod, as the kubelet (or a controller) records it. */
export function podEvent(pod: K8sObject, o: { reason: string; message: string; now: number; agoMs: number; type?: 'Normal' | 'Warning'; component?: string; count?: number }): K8sObject {
  const at = rfc3339(o.now - o.agoMs);
  const component = o.component ?? 'kubelet';
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${pod.metadata.name}.${randomBytes(8).toString('hex')}`, namespace: pod.metadata.namespace, resourceVersion: '1', creationTimestamp: at },
    involvedObject: { kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid, apiVersion: 'v1' },
    reason: o.reason,
    message: o.message,
    source: component === 'kubelet' ? { component, host: pod.spec.nodeName ?? '' } : { component },
    firstTimestamp: rfc3339(o.now - o.agoMs - 5 * 60_000),
    lastTimestamp: at,
    count: o.count ?? 3,
    type: o.type ?? 'Warning',
    eventTime: null,
    reportingComponent: component,
    reportingInstance: component === 'kubelet' ? (pod.spec.nodeName ?? '') : '',
  };
}

export const FAILED_MOUNT =
  'Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data kube-api-access]: timed out waiting for the condition';
export const FAILED_ATTACH = 'AttachVolume.Attach failed for volume "pvc-5f1c" : rpc error: code = DeadlineExceeded desc = context deadline exceeded';
export const FAILED_SANDBOX =
  'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to set up sandbox container network for pod: networkPlugin cni failed to set up pod network: context deadline exceeded';

/** A Node with the given Ready condition (and optional pressure conditions), its times relative to `now`. */
export function nodeWithReady(
  name: string,
  o: { now: number; status: 'True' | 'False' | 'Unknown'; sinceAgoMs: number; reason?: string; message?: string; pressure?: Partial<Record<'MemoryPressure' | 'DiskPressure' | 'PIDPressure' | 'NetworkUnavailable', boolean>> },
): K8sObject {
  const node = makeNode({ name });
  const since = rfc3339(o.now - o.sinceAgoMs);
  const beat = rfc3339(o.status === 'Unknown' ? o.now - o.sinceAgoMs - 40_000 : o.now - 5000);
  const defaults = {
    True: ['KubeletReady', 'kubelet is posting ready status'],
    False: ['KubeletNotReady', 'PLEG is not healthy: pleg was last seen active 3m25.3s ago; threshold is 3m0s'],
    Unknown: ['NodeStatusUnknown', 'Kubelet stopped posting node status.'],
  }[o.status];
  const p = o.pressure ?? {};
  const pressure = (type: string, on: boolean | undefined, okReason: string, badReason: string, okMsg: string, badMsg: string): K8sObject => ({
    type,
    status: o.status === 'Unknown' ? 'Unknown' : on ? 'True' : 'False',
    reason: o.status === 'Unknown' ? 'NodeStatusUnknown' : on ? badReason : okReason,
    message: o.status === 'Unknown' ? 'Kubelet stopped posting node status.' : on ? badMsg : okMsg,
    lastHeartbeatTime: beat,
    lastTransitionTime: since,
  });
  node.status.conditions = [
    { type: 'NetworkUnavailable', status: p.NetworkUnavailable ? 'True' : 'False', reason: p.NetworkUnavailable ? 'NoRouteCreated' : 'RouteCreated', message: p.NetworkUnavailable ? 'Node created without a route' : 'RouteController created a route', lastHeartbeatTime: beat, lastTransitionTime: since },
    pressure('MemoryPressure', p.MemoryPressure, 'KubeletHasSufficientMemory', 'KubeletHasInsufficientMemory', 'kubelet has sufficient memory available', 'kubelet has insufficient memory available'),
    pressure('DiskPressure', p.DiskPressure, 'KubeletHasNoDiskPressure', 'KubeletHasDiskPressure', 'kubelet has no disk pressure', 'kubelet has disk pressure'),
    pressure('PIDPressure', p.PIDPressure, 'KubeletHasSufficientPID', 'KubeletHasInsufficientPID', 'kubelet has sufficient PID available', 'kubelet has insufficient PID available'),
    { type: 'Ready', status: o.status, reason: o.reason ?? defaults[0], message: o.message ?? defaults[1], lastHeartbeatTime: beat, lastTransitionTime: since },
  ];
  return node;
}

/** A fake API server with a kubeconfig file for it, both removed in teardown. */
export async function startFakeCluster(
  t: { teardown(fn: () => unknown): void },
  opts: ConstructorParameters<typeof FakeApiServer>[0] = {},
): Promise<{ fake: FakeApiServer; kubeconfig: string; dir: string }> {
  const fake = new FakeApiServer(opts);
  await fake.start();
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-cluster-view-'));
  t.teardown(async () => {
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { fake, kubeconfig: fake.writeKubeconfig(dir), dir };
}
