/**
 * Which pods a drain removes, and how, with `kubectl drain --ignore-daemonsets` semantics
 * (k8s.io/kubectl/pkg/drain/filters.go). Pure functions of the pod list and the options.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { podResources } from '../../platform/pod-resources.js';

/** What the drain does with one pod. */
export type PodDisposition =
  /** Through the Eviction API (respects PodDisruptionBudgets). */
  | { action: 'evict'; note?: string }
  /** A finished pod (Succeeded/Failed): deleted, there is nothing to disrupt. */
  | { action: 'delete'; why: 'finished' }
  /** Stays on the node: DaemonSet pods (the controller ignores cordons) and mirror pods (the API cannot delete them). */
  | { action: 'keep'; why: 'daemonset' | 'mirror' }
  /** Blocks the whole drain, as in kubectl: emptyDir data would be lost, or nothing would recreate the pod. */
  | { action: 'block'; why: 'emptydir' | 'unmanaged' };

export interface DrainPodOptions {
  /** Evict pods with emptyDir volumes (`--delete-emptydir-data`). */
  deleteEmptyDirData: boolean;
  /** Evict pods that declare no controller (`--force`). */
  force: boolean;
}

export interface PlannedPod {
  pod: V1Pod;
  /** `namespace/name`. */
  id: string;
  disposition: PodDisposition;
}

export interface DrainPodPlan {
  evict: PlannedPod[];
  delete: PlannedPod[];
  keep: PlannedPod[];
  blocked: PlannedPod[];
}

export const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

export function podId(pod: V1Pod): string {
  return `${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? '?'}`;
}

export function isFinished(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

function controllerKind(pod: V1Pod): string | undefined {
  return pod.metadata?.ownerReferences?.find((r) => r.controller)?.kind;
}

/** The first filter that does not let a pod go decides, as kubectl's filter chain short-circuits. */
export function classifyPod(pod: V1Pod, opts: DrainPodOptions): PodDisposition {
  const finished = isFinished(pod);
  if (controllerKind(pod) === 'DaemonSet' && !finished) return { action: 'keep', why: 'daemonset' };
  if (pod.metadata?.annotations?.[MIRROR_ANNOTATION] !== undefined) return { action: 'keep', why: 'mirror' };
  if (finished) return { action: 'delete', why: 'finished' };
  const notes: string[] = [];
  if (pod.spec?.volumes?.some((v) => v.emptyDir)) {
    if (!opts.deleteEmptyDirData) return { action: 'block', why: 'emptydir' };
    notes.push('emptyDir data will be lost');
  }
  if (!controllerKind(pod)) {
    if (!opts.force) return { action: 'block', why: 'unmanaged' };
    notes.push('no controller will recreate it');
  }
  return notes.length ? { action: 'evict', note: notes.join('; ') } : { action: 'evict' };
}

export function planPods(pods: readonly V1Pod[], opts: DrainPodOptions): DrainPodPlan {
  const plan: DrainPodPlan = { evict: [], delete: [], keep: [], blocked: [] };
  for (const pod of pods) {
    const disposition = classifyPod(pod, opts);
    const entry: PlannedPod = { pod, id: podId(pod), disposition };
    if (disposition.action === 'evict') plan.evict.push(entry);
    else if (disposition.action === 'delete') plan.delete.push(entry);
    else if (disposition.action === 'keep') plan.keep.push(entry);
    else plan.blocked.push(entry);
  }
  return plan;
}

/** One sentence per blocking reason, naming the pods and the config key that would allow them. */
export function describeBlocked(blocked: readonly PlannedPod[]): string {
  const emptydir = blocked.filter((b) => b.disposition.action === 'block' && b.disposition.why === 'emptydir').map((b) => b.id);
  const unmanaged = blocked.filter((b) => b.disposition.action === 'block' && b.disposition.why === 'unmanaged').map((b) => b.id);
  const parts: string[] = [];
  if (emptydir.length) parts.push(`pods with emptyDir volumes (their data would be lost; set remediation.drain.deleteEmptyDirData to allow): ${list(emptydir)}`);
  if (unmanaged.length) parts.push(`pods that declare no controller (nothing would recreate them; set remediation.drain.force to allow): ${list(unmanaged)}`);
  return `cannot drain: ${parts.join('; ')}`;
}

function list(ids: string[]): string {
  return ids.length > 10 ? `${ids.slice(0, 10).join(', ')} and ${ids.length - 10} more` : ids.join(', ');
}

export interface Resources {
  /** Cores. */
  cpu: number;
  /** Bytes. */
  memory: number;
}

/** What the scheduler reserves for a pod (platform/pod-resources.ts counts it), in cores and bytes. */
export function podRequests(pod: V1Pod): Resources {
  const r = podResources(pod).requests;
  return { cpu: r.cpu / 1000, memory: r.memory };
}
