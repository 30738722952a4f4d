/**
 * Pure classification for the `stuck-pods` check: which pods on this node are the runbook's
 * "container instances abnormal" (should have gone offline and did not; stuck starting), and which
 * look abnormal for reasons that are not the node's fault and must never count.
 *
 * References (Kubernetes API and kubelet behaviour):
 * - deletionTimestamp is the time the object *will* be deleted: the request time plus the grace
 *   period (ObjectMeta; k8s.io/apiserver registry/rest/delete.go `BeforeDelete`). After stopping the
 *   containers the kubelet deletes the pod with grace 0, which sets `deletionGracePeriodSeconds: 0`;
 *   an object still there after that waits only for its finalizers.
 * - Container waiting reasons: `ContainerCreating` / `PodInitializing` (kubelet, not started yet);
 *   image errors from pkg/kubelet/images/types.go (`ErrImagePull`, `ImagePullBackOff`,
 *   `InvalidImageName`, `ErrImageNeverPull`, `ImageInspectError`, `RegistryUnavailable`) and
 *   `SignatureValidationFailed`; `CrashLoopBackOff`; `CreateContainerConfigError`.
 * - Pod conditions: `PodScheduled=False` with reason `Unschedulable` or `SchedulingGated`.
 * - Volume waits leave no trace in the pod status: the kubelet reports them as `FailedMount` events
 *   (repeated about every two minutes while it waits) and the attach/detach controller as
 *   `FailedAttachVolume`, both on the pod.
 */
import type { CoreV1Event, V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { formatDuration } from '../platform/duration.js';
import { timeMs } from './kube-check.js';
import type { Finding } from './types.js';

/** Why an abnormal-looking pod does not count against the node. */
export type ExclusionReason =
  /** An image cannot be pulled (name, tag, registry, credentials): the application's or the registry's problem. */
  | 'ImagePullError'
  /** A container keeps exiting (including liveness-probe kills): the application's problem. */
  | 'CrashLoopBackOff'
  /** Running, but a readiness or startup probe fails: the probe or the application, not the node. */
  | 'ProbeFailing'
  /** The scheduler has not placed it (or it is gated): the control plane's business. */
  | 'Unschedulable'
  /** Waiting for a volume to attach or mount (`FailedAttachVolume` / `FailedMount` events). */
  | 'VolumeWait'
  /** A ConfigMap or Secret it needs is missing (`CreateContainerConfigError`). */
  | 'ContainerConfigError'
  /** The runtime refused the container as specified (`CreateContainerError`, `RunContainerError`, hook errors). */
  | 'ContainerError'
  /** Its containers are gone and the kubelet has deleted it; only another controller's finalizers keep the object. */
  | 'Finalizers';

export const IMAGE_PULL_ERRORS: readonly string[] = [
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'ImageInspectError',
  'RegistryUnavailable',
  'SignatureValidationFailed',
];

/**
 * Waiting reasons of a container the kubelet has not managed to start. The empty reason is a
 * container the runtime created but never started (the kubelet maps that state to a bare `waiting`).
 */
const NOT_STARTED = new Set(['ContainerCreating', 'PodInitializing', '']);
const CONFIG_ERRORS = new Set(['CreateContainerConfigError']);
export const VOLUME_WAIT_EVENTS: readonly string[] = ['FailedAttachVolume', 'FailedMount', 'FailedMapVolume'];
/** A volume-wait event this recent means the wait is still going on (the kubelet repeats FailedMount about every 2m). */
export const VOLUME_EVENT_RECENT_MS = 10 * 60_000;

/** What one pod looks like to the check. */
export type PodVerdict =
  | { kind: 'healthy' }
  /** Being deleted; it should be gone from `dueMs` (its deletionTimestamp) on. */
  | { kind: 'terminating'; dueMs: number; requestedMs: number; detail: string }
  /** Bound to the node and not started since `sinceMs`. */
  | { kind: 'starting'; sinceMs: number; detail: string }
  | { kind: 'excluded'; reason: ExclusionReason; detail: string; sinceMs?: number };

export function podName(pod: V1Pod): string {
  return `${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? '?'}`;
}

function allStatuses(pod: V1Pod): V1ContainerStatus[] {
  const st = pod.status ?? {};
  return [...(st.initContainerStatuses ?? []), ...(st.containerStatuses ?? [])];
}

function clip(s: string | undefined, n = 200): string {
  if (!s) return '';
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** One line per container for the evidence: `app: waiting ContainerCreating`, `init: terminated Completed (0)`. */
export function describeContainers(pod: V1Pod): string[] {
  const st = pod.status ?? {};
  const line = (c: V1ContainerStatus, init: boolean): string => {
    const name = `${init ? 'init:' : ''}${c.name}`;
    const s = c.state ?? {};
    if (s.waiting) return `${name}: waiting ${s.waiting.reason ?? ''}${s.waiting.message ? ` (${clip(s.waiting.message, 120)})` : ''}`.trimEnd();
    if (s.running) return `${name}: running${c.ready ? '' : ', not ready'}${c.restartCount ? `, ${c.restartCount} restarts` : ''}`;
    if (s.terminated) return `${name}: terminated ${s.terminated.reason ?? ''} (exit ${s.terminated.exitCode})`;
    return `${name}: no state`;
  };
  const out = [...(st.initContainerStatuses ?? []).map((c) => line(c, true)), ...(st.containerStatuses ?? []).map((c) => line(c, false))];
  return out.length ? out : ['no container status (the kubelet has not reported the pod)'];
}

/** When the pod was bound to this node, as well as the API tells: PodScheduled, else the kubelet's startTime, else creation. */
function scheduledAt(pod: V1Pod): number | undefined {
  const c = pod.status?.conditions?.find((x) => x.type === 'PodScheduled' && x.status === 'True');
  return timeMs(c?.lastTransitionTime) ?? timeMs(pod.status?.startTime) ?? timeMs(pod.metadata?.creationTimestamp);
}

/** A container without any state counts as waiting with no reason. */
function waitingReason(c: V1ContainerStatus): string | undefined {
  const s = c.state;
  if (!s || (!s.running && !s.terminated && !s.waiting)) return '';
  return s.waiting ? (s.waiting.reason ?? '') : undefined;
}

function waiting(c: V1ContainerStatus, reasons: ReadonlySet<string> | readonly string[]): boolean {
  const r = waitingReason(c);
  return r !== undefined && (reasons instanceof Set ? reasons.has(r) : (reasons as readonly string[]).includes(r));
}

function waitDetail(c: V1ContainerStatus): string {
  const w = c.state?.waiting;
  return `container ${c.name}: ${w?.reason ?? 'waiting'}${w?.message ? ` (${clip(w.message, 160)})` : ''}`;
}

/**
 * Classifies one pod from its object alone. Volume waits need the pod's events and are applied
 * afterwards (`volumeWait`). The exclusions explain why a pod does not *start*; none of them keeps a
 * pod from going away, so a terminating pod is only ever excluded for finalizers.
 */
export function classifyPod(pod: V1Pod): PodVerdict {
  const meta = pod.metadata ?? {};
  const st = pod.status ?? {};
  const statuses = allStatuses(pod);
  const due = timeMs(meta.deletionTimestamp);
  if (due !== undefined) {
    const grace = meta.deletionGracePeriodSeconds ?? 0;
    if (grace === 0 && (meta.finalizers?.length ?? 0) > 0) {
      return {
        kind: 'excluded',
        reason: 'Finalizers',
        detail: `deleted by the kubelet; waiting for finalizers ${meta.finalizers!.join(', ')}, which their controllers remove`,
        sinceMs: due,
      };
    }
    return { kind: 'terminating', dueMs: due, requestedMs: due - grace * 1000, detail: `deletion requested with a ${grace}s grace period` };
  }

  const scheduled = st.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False') {
    return {
      kind: 'excluded',
      reason: 'Unschedulable',
      detail: `not scheduled: ${scheduled.reason ?? 'Unschedulable'}${scheduled.message ? ` (${clip(scheduled.message, 160)})` : ''}`,
      ...(timeMs(scheduled.lastTransitionTime) !== undefined ? { sinceMs: timeMs(scheduled.lastTransitionTime)! } : {}),
    };
  }
  const since = scheduledAt(pod);
  const withSince = since !== undefined ? { sinceMs: since } : {};
  const image = statuses.find((c) => waiting(c, IMAGE_PULL_ERRORS));
  if (image) return { kind: 'excluded', reason: 'ImagePullError', detail: waitDetail(image), ...withSince };
  const crash = statuses.find((c) => waiting(c, ['CrashLoopBackOff']));
  if (crash) return { kind: 'excluded', reason: 'CrashLoopBackOff', detail: `${waitDetail(crash)}, ${crash.restartCount ?? 0} restarts`, ...withSince };
  const config = statuses.find((c) => waiting(c, CONFIG_ERRORS));
  if (config) return { kind: 'excluded', reason: 'ContainerConfigError', detail: waitDetail(config), ...withSince };

  if (st.phase === 'Pending') {
    const initRunning = (st.initContainerStatuses ?? []).some((c) => c.state?.running);
    if (!statuses.length) {
      return { kind: 'starting', sinceMs: since ?? 0, detail: 'no container status: the kubelet has not reported the pod' };
    }
    // PodInitializing while an init container runs is the application's own init work, not a stuck start.
    const stuck = statuses.filter((c) => waiting(c, NOT_STARTED) && !(initRunning && waitingReason(c) === 'PodInitializing'));
    const other = statuses.find((c) => {
      const r = waitingReason(c);
      return r !== undefined && !NOT_STARTED.has(r);
    });
    if (other) return { kind: 'excluded', reason: 'ContainerError', detail: waitDetail(other), ...withSince };
    if (stuck.length) {
      return { kind: 'starting', sinceMs: since ?? 0, detail: stuck.map((c) => `${c.name} ${waitingReason(c) || 'created, never started'}`).join(', ') };
    }
    return { kind: 'healthy' };
  }

  if (st.phase === 'Running') {
    const specs = new Map((pod.spec?.containers ?? []).map((c) => [c.name, c]));
    const notReady = (st.containerStatuses ?? []).find((c) => {
      const spec = specs.get(c.name);
      return c.state?.running && !c.ready && (spec?.readinessProbe || (spec?.startupProbe && c.started === false));
    });
    if (notReady) {
      const readyCond = st.conditions?.find((c) => c.type === 'Ready' && c.status === 'False');
      const probe = notReady.started === false && specs.get(notReady.name)?.startupProbe ? 'startup' : 'readiness';
      const t = timeMs(readyCond?.lastTransitionTime) ?? timeMs(notReady.state?.running?.startedAt);
      return {
        kind: 'excluded',
        reason: 'ProbeFailing',
        detail: `container ${notReady.name} runs but is not ready: its ${probe} probe fails${notReady.restartCount ? ` (${notReady.restartCount} restarts)` : ''}`,
        ...(t !== undefined ? { sinceMs: t } : {}),
      };
    }
  }
  return { kind: 'healthy' };
}

function eventTime(e: CoreV1Event): number | undefined {
  return timeMs(e.series?.lastObservedTime) ?? timeMs(e.lastTimestamp) ?? timeMs(e.eventTime) ?? timeMs(e.firstTimestamp) ?? timeMs(e.metadata?.creationTimestamp);
}

function forPod(events: readonly CoreV1Event[], pod: V1Pod): CoreV1Event[] {
  const uid = pod.metadata?.uid;
  return events.filter((e) => e.involvedObject?.kind === 'Pod' && e.involvedObject.name === pod.metadata?.name && (!uid || !e.involvedObject.uid || e.involvedObject.uid === uid));
}

/** The volume wait `events` show for `pod` at `now`, as a sentence, or undefined when there is none. */
export function volumeWait(events: readonly CoreV1Event[], pod: V1Pod, now: number): string | undefined {
  const recent = forPod(events, pod)
    .filter((e) => VOLUME_WAIT_EVENTS.includes(e.reason ?? '') && (eventTime(e) ?? 0) >= now - VOLUME_EVENT_RECENT_MS)
    .sort((a, b) => (eventTime(b) ?? 0) - (eventTime(a) ?? 0));
  const e = recent[0];
  return e ? `${e.reason}: ${clip(e.message, 200)}` : undefined;
}

/** The latest Warning event about `pod`, for the evidence of a stuck start (e.g. `FailedCreatePodSandBox`). */
export function lastWarning(events: readonly CoreV1Event[], pod: V1Pod): string | undefined {
  const e = forPod(events, pod)
    .filter((x) => x.type === 'Warning')
    .sort((a, b) => (eventTime(b) ?? 0) - (eventTime(a) ?? 0))[0];
  return e ? `${e.reason}: ${clip(e.message, 200)}` : undefined;
}

export interface StuckThresholds {
  /** After its deletionTimestamp (which already includes the grace period). */
  terminatingAfterMs: number;
  startingAfterMs: number;
}

/** Evidence lists are capped to this many pods each (the counts stay exact). */
export const EVIDENCE_CAP = 20;

/** A stuck-start candidate whose events were asked for: the events, or why they could not be read. */
export type PodEvents = { events: readonly CoreV1Event[] } | { error: string };

/**
 * Starting candidates past their threshold, oldest first: the pods whose events decide whether they
 * wait for a volume. At most `EVIDENCE_CAP` of them are looked up per run.
 */
export function podsNeedingEvents(pods: readonly V1Pod[], now: number, t: StuckThresholds): V1Pod[] {
  return pods
    .map((p) => ({ p, v: classifyPod(p) }))
    .filter((x): x is { p: V1Pod; v: Extract<PodVerdict, { kind: 'starting' }> } => x.v.kind === 'starting' && now - x.v.sinceMs >= t.startingAfterMs)
    .sort((a, b) => a.v.sinceMs - b.v.sinceMs)
    .slice(0, EVIDENCE_CAP)
    .map((x) => x.p);
}

interface StuckEntry {
  pod: string;
  category: 'terminating' | 'starting';
  phase: string;
  for: string;
  since: string;
  containers: string[];
  overdueBy?: string;
  lastEvent?: string;
  detail: string;
  /** For sorting (oldest first); dropped from the evidence. */
  at: number;
}

/**
 * The `stuck-pods` verdict (pure): `pods` bound to (or nominated for) this node, `events` per pod UID
 * for the pods `podsNeedingEvents` named, at `now`.
 */
export function assessPods(nodeName: string, pods: readonly V1Pod[], events: ReadonlyMap<string, PodEvents>, now: number, t: StuckThresholds): Finding {
  const stuck: StuckEntry[] = [];
  const excluded: { pod: string; reason: ExclusionReason; phase: string; detail: string; for?: string; at: number }[] = [];
  const undetermined: { pod: string; why: string; for: string }[] = [];
  const below = { terminating: 0, starting: 0 };
  const phase = (p: V1Pod): string => (p.metadata?.deletionTimestamp ? `${p.status?.phase ?? 'Unknown'} (terminating)` : (p.status?.phase ?? 'Unknown'));
  for (const pod of pods) {
    const v = classifyPod(pod);
    const name = podName(pod);
    if (v.kind === 'healthy') continue;
    if (v.kind === 'excluded') {
      excluded.push({ pod: name, reason: v.reason, phase: phase(pod), detail: v.detail, ...(v.sinceMs !== undefined ? { for: formatDuration(Math.max(0, now - v.sinceMs)) } : {}), at: v.sinceMs ?? now });
      continue;
    }
    if (v.kind === 'terminating') {
      const overdue = now - v.dueMs;
      if (overdue < t.terminatingAfterMs) {
        below.terminating++;
        continue;
      }
      stuck.push({
        pod: name,
        category: 'terminating',
        phase: phase(pod),
        for: formatDuration(Math.max(0, now - v.requestedMs)),
        since: new Date(v.requestedMs).toISOString(),
        overdueBy: formatDuration(overdue),
        containers: describeContainers(pod),
        detail: v.detail,
        at: v.requestedMs,
      });
      continue;
    }
    const age = now - v.sinceMs;
    if (age < t.startingAfterMs) {
      below.starting++;
      continue;
    }
    const uid = pod.metadata?.uid ?? name;
    const ev = events.get(uid);
    if (!ev || 'error' in ev) {
      // A volume wait cannot be ruled out without the events: never count what might not be the node's fault.
      undetermined.push({ pod: name, why: ev ? `events unreadable: ${ev.error}` : 'events not looked up (too many candidates this run)', for: formatDuration(age) });
      continue;
    }
    const vol = volumeWait(ev.events, pod, now);
    if (vol) {
      excluded.push({ pod: name, reason: 'VolumeWait', phase: phase(pod), detail: vol, for: formatDuration(age), at: v.sinceMs });
      continue;
    }
    const warn = lastWarning(ev.events, pod);
    stuck.push({
      pod: name,
      category: 'starting',
      phase: phase(pod),
      for: formatDuration(age),
      since: new Date(v.sinceMs).toISOString(),
      containers: describeContainers(pod),
      ...(warn ? { lastEvent: warn } : {}),
      detail: v.detail,
      at: v.sinceMs,
    });
  }
  stuck.sort((a, b) => a.at - b.at);
  excluded.sort((a, b) => a.at - b.at);
  const terminating = stuck.filter((s) => s.category === 'terminating');
  const starting = stuck.filter((s) => s.category === 'starting');
  const evidence: Record<string, unknown> = {
    node: nodeName,
    pods: pods.length,
    thresholds: { stuckTerminatingAfter: formatDuration(t.terminatingAfterMs), stuckStartingAfter: formatDuration(t.startingAfterMs) },
    stuckCount: { terminating: terminating.length, starting: starting.length },
    stuck: stuck.slice(0, EVIDENCE_CAP).map(({ at: _at, ...s }) => s),
    excludedCount: excluded.length,
    excluded: excluded.slice(0, EVIDENCE_CAP).map(({ at: _at, ...e }) => e),
    belowThreshold: below,
    ...(undetermined.length ? { undetermined: undetermined.slice(0, EVIDENCE_CAP) } : {}),
    ...(stuck.length > EVIDENCE_CAP || excluded.length > EVIDENCE_CAP || undetermined.length > EVIDENCE_CAP ? { truncated: true } : {}),
  };
  const excludedNote = excluded.length ? `; ${excluded.length} not counted (${summarizeReasons(excluded.map((e) => e.reason))})` : '';
  if (stuck.length) {
    const parts: string[] = [];
    if (terminating.length) {
      const o = terminating[0]!;
      parts.push(`${terminating.length} terminating past grace + ${formatDuration(t.terminatingAfterMs)} (oldest ${o.pod}, ${o.overdueBy} overdue)`);
    }
    if (starting.length) {
      const o = starting[0]!;
      parts.push(`${starting.length} not started for over ${formatDuration(t.startingAfterMs)} (oldest ${o.pod}, ${o.for}: ${o.detail})`);
    }
    return {
      status: 'problem',
      reason: terminating.length && starting.length ? 'PodsStuck' : terminating.length ? 'PodsStuckTerminating' : 'PodsStuckStarting',
      message: `${stuck.length} pod${stuck.length === 1 ? '' : 's'} stuck on node ${nodeName}: ${parts.join('; ')}${excludedNote}; runbook: restart kubelet, then the container runtime`,
      evidence,
    };
  }
  if (undetermined.length) {
    return {
      status: 'unknown',
      reason: 'CannotRuleOutCauses',
      message: `${undetermined.length} pod${undetermined.length === 1 ? '' : 's'} on node ${nodeName} not started for over ${formatDuration(t.startingAfterMs)}, but a volume wait cannot be ruled out (${undetermined[0]!.why})${excludedNote}`,
      evidence,
    };
  }
  const waitingNote = below.terminating || below.starting ? `; ${below.terminating + below.starting} terminating or starting within their thresholds` : '';
  return { status: 'ok', reason: 'NoStuckPods', message: `no stuck pods on node ${nodeName} (${pods.length} pods)${waitingNote}${excludedNote}`, evidence };
}

function summarizeReasons(reasons: readonly string[]): string {
  const n = new Map<string, number>();
  for (const r of reasons) n.set(r, (n.get(r) ?? 0) + 1);
  return [...n]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([r, c]) => `${c} ${r}`)
    .join(', ');
}

