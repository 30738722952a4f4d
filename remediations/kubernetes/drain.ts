/**
 * Evicting a node's pods the way `kubectl drain` does (k8s.io/kubectl/pkg/drain/drain.go): every pod
 * through the policy/v1 Eviction API in parallel; a 429 (a PodDisruptionBudget allows no disruption
 * now) is retried every 5 s until the drain's timeout; then wait until each pod is gone, which is a
 * 404 or a pod of the same name with another UID (a StatefulSet recreated it). Finished pods are
 * deleted instead. Eviction semantics: https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/
 */
import { setMaxListeners } from 'node:events';
import type { V1Pod } from '@kubernetes/client-node';
import type { Clock } from '../../platform/clock.js';
import { formatDuration } from '../../platform/duration.js';
import { KubeApiError, isStatus, type KubeApi } from '../../platform/kube-client.js';
import type { DrainPodPlan, PlannedPod } from './pods.js';

export interface DrainSettings {
  timeoutMs: number;
  /** -1: each pod's own terminationGracePeriodSeconds. */
  gracePeriodSeconds: number;
  /** kubectl waits 5 s between evictions refused by a PDB; tests shorten it. */
  evictionRetryMs?: number;
  /** kubectl polls every 1 s for the pod to be gone. */
  podPollMs?: number;
  /** At most this many API requests at once, whatever the number of pods. Default 16. */
  maxInFlight?: number;
}

/** Progress, pod by pod, for the CLI's output and the log. */
export type DrainProgress =
  | { type: 'keep'; pod: string; why: string }
  | { type: 'evict' | 'delete'; pod: string; note?: string }
  | { type: 'blocked'; pod: string; detail: string; attempt: number }
  | { type: 'retry'; pod: string; detail: string }
  | { type: 'gone'; pod: string; how: 'evicted' | 'deleted' }
  | { type: 'failed'; pod: string; detail: string };

export interface DrainOutcome {
  ok: boolean;
  timedOut: boolean;
  aborted: boolean;
  evicted: string[];
  deleted: string[];
  kept: { pod: string; why: string }[];
  /** Pods that were to go and had not gone when the drain ended. */
  remaining: string[];
  failures: { pod: string; detail: string }[];
  /** How many evictions a PodDisruptionBudget refused (429) before they were allowed or the drain ended. */
  refusedByPdb: number;
  durationMs: number;
  /** One sentence for events, logs and the CLI summary. */
  summary: string;
}

export interface DrainRun {
  api: KubeApi;
  plan: DrainPodPlan;
  settings: DrainSettings;
  clock: Clock;
  signal?: AbortSignal;
  onProgress?: (p: DrainProgress) => void;
}

class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await f();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/** Resolves after `ms`, or early when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A failure that no amount of waiting fixes (kubectl gives up on these too). */
function isPermanent(e: unknown): boolean {
  if (!(e instanceof KubeApiError)) return false;
  // 500 from the eviction subresource is its answer to a pod with more than one PDB; 4xx other than 429 are our error.
  return e.status === 500 || (e.status >= 400 && e.status < 500 && e.status !== 429 && e.status !== 408);
}

export async function drainPods(run: DrainRun): Promise<DrainOutcome> {
  const { api, plan, settings, clock } = run;
  const started = clock.now();
  const retryMs = settings.evictionRetryMs ?? 5000;
  const pollMs = settings.podPollMs ?? 1000;
  const limiter = new Limiter(settings.maxInFlight ?? 16);
  const grace = settings.gracePeriodSeconds >= 0 ? settings.gracePeriodSeconds : undefined;
  const stop = new AbortController();
  // Every pod being waited for listens on this one signal; a node has ~110 pods, not a leak.
  setMaxListeners(0, stop.signal);
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    stop.abort();
  }, settings.timeoutMs);
  const onOuterAbort = (): void => stop.abort();
  run.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (run.signal?.aborted) stop.abort();
  const progress = (p: DrainProgress): void => {
    try {
      run.onProgress?.(p);
    } catch {
      // A broken progress printer must not break the drain.
    }
  };

  const out: DrainOutcome = {
    ok: false,
    timedOut: false,
    aborted: false,
    evicted: [],
    deleted: [],
    kept: plan.keep.map((k) => ({ pod: k.id, why: k.disposition.action === 'keep' ? k.disposition.why : '' })),
    remaining: [],
    failures: [],
    refusedByPdb: 0,
    durationMs: 0,
    summary: '',
  };
  for (const k of out.kept) progress({ type: 'keep', pod: k.pod, why: k.why === 'daemonset' ? 'DaemonSet pod stays' : 'mirror (static) pod stays' });

  const waitGone = async (p: PlannedPod): Promise<boolean> => {
    const uid = p.pod.metadata?.uid;
    const ns = p.pod.metadata?.namespace ?? 'default';
    const name = p.pod.metadata?.name ?? '';
    while (!stop.signal.aborted) {
      try {
        const cur: V1Pod = await limiter.run(() => api.readPod(ns, name));
        if (cur.metadata?.uid !== uid) return true;
      } catch (e) {
        if (isStatus(e, 404)) return true;
        // A transient read error: keep waiting until the drain's deadline.
      }
      await sleep(pollMs, stop.signal);
    }
    return false;
  };

  const removeOne = async (p: PlannedPod, how: 'evict' | 'delete'): Promise<void> => {
    const ns = p.pod.metadata?.namespace ?? 'default';
    const name = p.pod.metadata?.name ?? '';
    const note = p.disposition.action === 'evict' ? p.disposition.note : undefined;
    progress({ type: how, pod: p.id, ...(note ? { note } : {}) });
    let attempt = 0;
    for (;;) {
      if (stop.signal.aborted) {
        out.remaining.push(p.id);
        return;
      }
      try {
        if (how === 'evict') await limiter.run(() => api.evictPod(ns, name, grace));
        else await limiter.run(() => api.deletePod(ns, name, grace));
        break;
      } catch (e) {
        if (isStatus(e, 404)) break;
        if (isStatus(e, 429)) {
          attempt++;
          out.refusedByPdb++;
          progress({ type: 'blocked', pod: p.id, detail: (e as KubeApiError).detail || 'a PodDisruptionBudget allows no disruption now', attempt });
        } else if (isPermanent(e)) {
          const detail = (e as Error).message;
          out.failures.push({ pod: p.id, detail });
          progress({ type: 'failed', pod: p.id, detail });
          return;
        } else {
          progress({ type: 'retry', pod: p.id, detail: (e as Error).message });
        }
        await sleep(retryMs, stop.signal);
      }
    }
    if (await waitGone(p)) {
      (how === 'evict' ? out.evicted : out.deleted).push(p.id);
      progress({ type: 'gone', pod: p.id, how: how === 'evict' ? 'evicted' : 'deleted' });
    } else {
      out.remaining.push(p.id);
    }
  };

  try {
    await Promise.all([...plan.delete.map((p) => removeOne(p, 'delete')), ...plan.evict.map((p) => removeOne(p, 'evict'))]);
  } finally {
    clearTimeout(deadline);
    run.signal?.removeEventListener('abort', onOuterAbort);
  }
  out.timedOut = timedOut;
  out.aborted = !timedOut && stop.signal.aborted;
  out.durationMs = clock.now() - started;
  out.ok = !out.failures.length && !out.remaining.length && !stop.signal.aborted;
  const ds = out.kept.filter((k) => k.why === 'daemonset').length;
  const parts = [
    `evicted ${out.evicted.length} pods`,
    `deleted ${out.deleted.length} finished pods`,
    `left ${out.kept.length} (${ds} DaemonSet, ${out.kept.length - ds} mirror)`,
  ];
  if (out.refusedByPdb) parts.push(`${out.refusedByPdb} evictions refused by a PodDisruptionBudget and retried`);
  if (out.failures.length) parts.push(`${out.failures.length} failed (${out.failures.slice(0, 3).map((f) => `${f.pod}: ${f.detail}`).join('; ')})`);
  if (out.remaining.length) parts.push(`${out.remaining.length} not gone (${out.remaining.slice(0, 5).join(', ')}${out.remaining.length > 5 ? ', ...' : ''})`);
  const ending = out.timedOut ? `timed out after ${formatDuration(settings.timeoutMs)}` : out.aborted ? 'aborted' : out.ok ? 'done' : 'failed';
  out.summary = `drain ${ending} in ${formatDuration(out.durationMs)}: ${parts.join(', ')}`;
  return out;
}
