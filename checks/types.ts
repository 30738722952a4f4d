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

/** A finding as published: stamped by the scheduler with the check id, time and duration (SPEC.md). */
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

/**
 * A check kind: its id, its option schema and defaults (merged under `checks.<id>`), and a factory.
 * Listed explicitly in `checks/index.ts`; importing a check has no side effects.
 */
export interface CheckDefinition<O extends BaseCheckOptions = BaseCheckOptions> {
  readonly id: string;
  /** JSON Schema (draft 2020-12 subset understood by Ajv) for `checks.<id>`; must reject unknown keys. */
  readonly schema: Record<string, unknown>;
  readonly defaults: O;
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
