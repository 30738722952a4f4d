import type { Logger } from 'pino';
import type { Host } from '../platform/host.js';
import type { KubeAccessSource } from '../platform/kube-client.js';

/** What a check concluded. `unknown` means "could not tell" and is never acted on alone. */
export type CheckStatus = 'ok' | 'problem' | 'unknown';

export const CHECK_STATUSES: readonly CheckStatus[] = ['ok', 'problem', 'unknown'];

/** What a check's `run` returns: a verdict, never an exception. */
export interface Finding {
  status: CheckStatus;
  /** UpperCamelCase, stable, documented per check (e.g. `PLEGUnhealthy`, `NotInstalled`). */
  reason: string;
  /** One human sentence: what was seen, and for a problem what to do about it. */
  message: string;
  /** Facts behind the verdict, shown in `/status` and `check --json`. Keep it small and JSON-safe. */
  evidence?: Record<string, unknown>;
}

/** A finding as published: stamped by the scheduler with the check id, time and duration (docs/CONTRACT.md). */
export interface CheckResult extends Required<Finding> {
  check: string;
  /** ISO-8601 time the check finished. */
  observedAt: string;
  durationSeconds: number;
}

/** What every check receives besides its own slice of config. */
export interface CheckDeps {
  host: Host;
  /**
   * The check runs once (`nodemedic check`, e.g. as a node-problem-detector plugin), not in the
   * daemon: a log follower looks back over recent history instead of waiting for new lines.
   */
  oneShot?: boolean;
  logger: Logger;
  nodeName: string;
  /**
   * Kubernetes access (`kubernetes.kubeconfig`, else in-cluster), for the cluster-view checks. Absent,
   * or resolving to undefined: no access, and those checks report `unknown` / `NoKubernetesAccess`.
   */
  kube?: KubeAccessSource;
  /**
   * Asks for a run of this check now, outside the schedule, because its evidence just changed (a
   * log line crossed a threshold), so the verdict is published without waiting for the next sweep.
   * Cheap and safe to call often: the agent coalesces calls, runs the check at most once per 200 ms
   * and never while another run of it is going. A requested run's result is published (`/status`,
   * `/metrics`); remediation still acts on scheduled sweeps only. Absent outside the agent.
   */
  requestRun?: () => void;
}

/** A live check instance. */
export interface Check {
  readonly id: string;
  /**
   * One evaluation. `signal` aborts when the check's timeout expires; a check that ignores it is
   * still reported `unknown` on time by the scheduler, so `run` must not hold resources forever.
   */
  run(signal: AbortSignal): Promise<Finding>;
  /** Background work (a journal follower), started once before the first sweep. */
  start?(): Promise<void> | void;
  /** Releases everything `start` took; called on shutdown and before a config reload. */
  stop?(): Promise<void> | void;
}

/** Options every check has. */
export interface BaseCheckOptions {
  enabled: boolean;
}

/** A check's Node conditions as a list (none, one or several). */
export function nodeConditionsOf(d: { readonly nodeCondition?: NodeConditionSpec | readonly NodeConditionSpec[] }): readonly NodeConditionSpec[] {
  const c = d.nodeCondition;
  return c === undefined ? [] : Array.isArray(c) ? c : [c as NodeConditionSpec];
}

/** A Node condition a check's verdict is published as (remediations/kubernetes/conditions.ts). */
export interface NodeConditionSpec {
  /** The condition `type`, named as node-problem-detector names it (e.g. `KubeletUnhealthy`). Checks may share one. */
  readonly type: string;
  /** The condition's `reason` while its checks are ok (e.g. `KubeletIsHealthy`). */
  readonly healthyReason: string;
  /**
   * `unknown` reasons that publish nothing rather than an `Unknown` condition: where the thing the
   * condition is about cannot exist on this node (no systemctl at all), an `Unknown` would only be noise.
   */
  readonly silentWhen?: readonly string[];
  /**
   * For a check that feeds several conditions (the kernel log: `KernelDeadlock`, `ReadonlyFilesystem`):
   * this condition's share of a result, as a result of its own (a `problem` that is another
   * condition's, or only an event, is `ok` here). Pure. Default: the whole result.
   */
  readonly select?: (r: CheckResult) => CheckResult;
}

/**
 * A check kind: its id, its option schema and defaults (merged under `checks.<id>`), a factory, and
 * what the rest of nodemedic needs to know about it, so that adding a check is its file, its test and
 * one line in `checks/index.ts` (docs/CONTRACT.md, "Adding a check"). Importing a check has no side
 * effects. The optional facts default to the cautious answer: not a remediation trigger, no Node
 * condition, no host paths.
 */
export interface CheckDefinition<O extends BaseCheckOptions = BaseCheckOptions> {
  readonly id: string;
  /** JSON Schema (draft 2020-12 subset understood by Ajv) for `checks.<id>`; must reject unknown keys. */
  readonly schema: Record<string, unknown>;
  /** The defaults, which are also the production values (test/registry.test.ts holds the production config to them). */
  readonly defaults: O;
  /**
   * Every `reason` the check itself can return (the scheduler's `CheckTimeout`, `CheckStillRunning`,
   * `CheckFailed` are common to all). The README's checks table lists exactly these (test/registry.test.ts).
   */
  readonly reasons?: readonly string[];
  /**
   * Whether a restart (kubelet, the container runtime, the node) can cure this check's `problem`. Only
   * such checks may be `remediation.triggers`; the others are reported and never acted on. Default false.
   */
  readonly restartCures?: boolean;
  /** The Node condition(s) this check's verdict is published as, with Kubernetes access; default none. */
  readonly nodeCondition?: NodeConditionSpec | readonly NodeConditionSpec[];
  /**
   * Options (top-level keys of `checks.<id>`) holding paths on the node that the agent opens itself
   * (not through `hostCommandPrefix`): in the DaemonSet they must be reachable from the pod, through
   * `/proc/1/root` or a mounted volume (test/registry.test.ts reads deploy/daemonset.yaml).
   */
  readonly hostPathOptions?: readonly string[];
  /**
   * How long the scheduler lets one `run` take before it reports `unknown` (reason `CheckTimeout`).
   * Defaults to the check's own `timeout` option plus a margin, else 30 s.
   */
  runTimeoutMs?(options: O): number;
  create(options: O, deps: CheckDeps): Check;
}

/** A finding for a probe that could not tell; the `reason` says why. */
export function unknown(reason: string, message: string, evidence?: Record<string, unknown>): Finding {
  return { status: 'unknown', reason, message, ...(evidence ? { evidence } : {}) };
}
