import type { CheckResult } from '../checks/types.js';

/** Metric label values for `nodemedic_remediation_actions_total` (docs/CONTRACT.md). */
export type ActionName =
  | 'restart_kubelet'
  | 'restart_docker'
  | 'restart_containerd'
  | 'reexec_systemd'
  | 'cordon'
  | 'drain'
  | 'reboot'
  | 'uncordon';
export type ActionResult = 'success' | 'failure' | 'dry_run' | 'skipped';

/** Counts actions for `/metrics`; provided by the agent. */
export type ActionRecorder = (action: ActionName, result: ActionResult) => void;

/**
 * The agent's remediation component: fed every sweep's results, it decides and acts.
 * Implementations never throw out of these methods; failures are logged and recorded.
 */
export interface Remediator {
  /** Loads persisted state; resumes an episode that was in progress. */
  start(): Promise<void>;
  /** Called after every sweep with the latest results of all checks. */
  afterSweep(results: readonly CheckResult[]): Promise<void>;
  /** JSON for `/status`'s `remediation` field. */
  status(): Record<string, unknown>;
  /** Finishes or safely abandons what is in flight. */
  stop(): Promise<void>;
}

/**
 * The ladder's last step. Without Kubernetes it only records the request; with Kubernetes access it
 * runs guards, takes the reboot Lease, cordons, drains and reboots (issue 5).
 *
 * Implementations count what they do in `nodemedic_remediation_actions_total` themselves (`reboot`,
 * and `cordon`, `drain`, `uncordon` where they do them) with the agent's ActionRecorder; the ladder
 * counts only drain-reboot steps it skips without calling `requestDrainReboot` (budget spent).
 */
export interface DrainRebooter {
  requestDrainReboot(req: { episodeId: string; reason: string; dryRun: boolean }): Promise<{
    result: ActionResult;
    /** Why, in one sentence, for logs, `/status` and events. */
    detail: string;
    /** Refused or failed before any reboot: worth retrying while the trigger persists. */
    retry?: boolean;
  }>;
  /**
   * Whether a container runtime may be restarted now (with Kubernetes access: the storm guard). Absent:
   * always. Never throws.
   */
  runtimeRestartAllowed?(): Promise<{ ok: boolean; detail: string }>;
  /** Why it waits without progress (e.g. recovery with the API unreachable), for a metric; null when not. */
  waiting?(): string | null;
  /**
   * Tells the cluster about a ladder step other than drain-reboot (a restart, a reexec of PID 1), as
   * an Event on the Node, so `kubectl describe node` tells the whole story. Absent without Kubernetes
   * access. Never throws.
   */
  stepEvent?(ev: { step: string; unit?: string; mode: string; result: ActionResult; detail: string }): Promise<void>;
  /**
   * `mode: approve`: shows a new proposal where people look (with Kubernetes: an annotation on the Node
   * and an Event), or removes it (null) once it was answered, lapsed or its episode ended. Never throws.
   */
  proposal?(p: Proposal | null, evidence?: string): Promise<void>;
  /** `mode: approve`: an answer to proposal `id` given on the cluster's side (the Node annotation); null when none. Never throws. */
  approvalFromCluster?(id: string): Promise<ApprovalAnswer | null>;
}

/** What the ladder knows about a systemd unit it may restart (from `systemctl show`). */
export interface UnitFacts {
  /** `loaded`, `not-found`, `masked`, ... */
  loadState: string;
  /** `active`, `activating`, `failed`, `inactive`, ... */
  activeState: string;
  /**
   * When the unit last entered `active` (ms since the epoch), or null if it never has since boot.
   * The "recently started" guard and the judgment of an interrupted restart compare against it.
   */
  lastStartMs: number | null;
  /**
   * systemd has a job queued or running for the unit. A restart's start may still be queued while
   * the unit shows `failed` or `inactive` (its stop just ended), so a unit with a job is not judged yet.
   */
  jobPending?: boolean;
}

/** Operator pause written by `nodemedic pause` into `stateDir/pause.json`. */
export interface PauseState {
  /** When the pause was set (ms since the epoch). */
  since: number;
  /** When it lapses by itself (ms since the epoch); null: until `nodemedic resume`. */
  until: number | null;
  /** Why, as given with `--reason`; shown in `/status` and logs. */
  reason: string;
  /** Set by the agent when `pause.json` exists but cannot be read: the agent then stays paused (fails closed). */
  error?: string;
}

/** How an action ended. */
export interface ActionOutcome {
  result: ActionResult;
  /** One sentence: why, for logs and `/status`. */
  detail: string;
  /** When the outcome was known (ms). */
  at: number;
  /**
   * True when the agent did not see the action finish (it crashed or was killed after writing the
   * intent) and the outcome was judged afterwards from the unit's start time or the boot id.
   */
  inferred?: boolean;
  /**
   * The step was refused or failed before doing anything (slot busy, storm guard, API error): try it
   * again after a backoff while its trigger persists, instead of moving on. Nothing is spent.
   */
  retry?: boolean;
}

/** Ladder steps (remediations/config.ts `StepName`) resolved to what they act on. */
export type Runtime = 'docker' | 'containerd';

/**
 * One entry of the action log (the last 100 are persisted). Written as an intent before the action
 * is carried out and completed with its outcome afterwards, so a crash in between is detectable.
 */
export interface ActionRecord {
  /** Unique within the state file: `<episode id>/<n>`. */
  id: string;
  episodeId: string;
  step: import('./config.js').StepName;
  /** Metric label; null when there was nothing to act on (e.g. no container runtime on the node). */
  action: ActionName | null;
  /** The systemd unit a restart acts on. */
  unit?: string;
  /** Mode the action was decided in; `dry-run` actions never consume budgets. An approved action is `enforce`. */
  mode: 'dry-run' | 'enforce';
  /** When the intent was recorded (ms). */
  intentAt: number;
  /** The boot id when the intent was recorded; tells a reboot that happened from one that did not. */
  bootId?: string;
  /** Why the step was chosen. */
  reason: string;
  /** Absent while the action is in flight (or was interrupted). */
  outcome?: ActionOutcome;
}

/** How an episode ended, or `active` while it runs. */
export type EpisodeState = 'active' | 'recovered' | 'exhausted' | 'abandoned';

/**
 * Where an active episode is:
 * - `due`: the step at `stepIndex` is to be decided now;
 * - `acting`: its action was ordered (intent written) and has no outcome yet;
 * - `settling`: the step is done; at `judgeAt` the triggers are judged (recovered, or the next step);
 * - `deferred`: the step's unit (re)started less than `settle` ago; at `judgeAt` the step is reconsidered;
 * - `retrying`: the step was refused (reboot slot busy, storm guard) or failed on an API error before
 *   it did anything; at `judgeAt` (backoff) it is taken again if its trigger persists;
 * - `awaiting-approval` (`mode: approve`): the step is proposed (`LadderState.proposal`) and waits for a
 *   person until `judgeAt`, when the proposal lapses.
 */
export type EpisodePhase = 'due' | 'acting' | 'settling' | 'deferred' | 'retrying' | 'awaiting-approval';

/** One run of the ladder, from a trigger's problem to recovery or exhaustion. */
export interface Episode {
  /** `<UTC start time>-<n>`, e.g. `20261127T100000Z-3`; in every log line of the episode. */
  id: string;
  /** The mode the episode runs in; a mode change abandons it. */
  mode: 'dry-run' | 'approve' | 'enforce';
  /** The trigger that started the episode. */
  trigger: string;
  /** That trigger's reason and message when the episode started. */
  reason: string;
  /** Every trigger seen in `problem` during the episode; recovery needs all of them `ok`. */
  triggers: string[];
  startedAt: number;
  /** The steps this episode walks, fixed when it starts (the configured order from the first step). */
  ladder: import('./config.js').StepName[];
  /** Index into `ladder` of the current step. */
  stepIndex: number;
  phase: EpisodePhase;
  /** When the current step was taken (intent time), or null before any step. */
  stepStartedAt: number | null;
  /** When the ladder next judges (`settling`, `deferred`), ms; null otherwise. */
  judgeAt: number | null;
  /** The step already deferred once because its unit had just started; a second deferral skips it. */
  deferred: import('./config.js').StepName | null;
  /** How often the current step was refused and is being retried (backoff doubles each time). */
  retries?: number;
  /** `mode: approve`: the step a person approved in this episode (its retries need no new answer). */
  approved?: { step: import('./config.js').StepName; by: string; proposalId: string };
  state: EpisodeState;
  endedAt?: number;
  /** Why it ended, one sentence. */
  endReason?: string;
}

/** Everything the ladder persists in `stateDir/state.json`. */
export interface LadderState {
  version: 1;
  /** Episode counter, for ids. */
  seq: number;
  /** Per trigger, since when (ms) it has been `problem` without an `ok` in between. */
  problemSince: Record<string, number>;
  /** The active episode, or the last one that ended (kept for `/status`). */
  episode: Episode | null;
  /**
   * Set when an episode is exhausted: no action until each of `triggers` is `ok` again and no
   * trigger is `problem`.
   */
  latch: { episodeId: string; triggers: string[]; since: number; /** The exhausted episode's mode; another mode is not held by it. */ mode?: 'dry-run' | 'approve' | 'enforce' } | null;
  budgets: {
    /** Per unit, when real (enforce) restarts were ordered, within the last hour. */
    restarts: Record<string, number[]>;
    /** When real reboot requests were made, within the last day. */
    reboots: number[];
    /** When real re-executions of systemd were ordered, within the last day (absent in older state files). */
    reexecs?: number[];
    /** No reboot request before this time (ms); set after a corrupt state file. */
    noRebootBefore: number | null;
  };
  /** Docker's live-restore setting as last reported by the docker check (a hung daemon cannot say). */
  liveRestore: { enabled: boolean; observedAt: number } | null;
  /** A reboot the ladder asked for and that has not been cleared (for `/status` and a node condition). */
  rebootRequest: { episodeId: string; at: number; reason: string; result: ActionResult; detail: string } | null;
  /** The last 100 actions, oldest first. */
  actions: ActionRecord[];
  /** `mode: approve`: the step waiting for a person (absent in older state files). */
  proposal?: Proposal | null;
}

/**
 * A step the ladder wants to take in `mode: approve` and may not take alone. It is shown on four
 * surfaces (an Event and an annotation on the Node, `/status`, `nodemedic_remediation_pending_approval`)
 * and runs only when an approval names its `id`; a lapsed proposal is replaced by one with a new id,
 * so an approval given for an old one never runs anything.
 */
export interface Proposal {
  /** `<episode id>/<step>/<n>`. */
  id: string;
  episodeId: string;
  step: import('./config.js').StepName;
  action: ActionName | null;
  unit?: string;
  /** Why the ladder wants it, as the action's reason would say. */
  reason: string;
  proposedAt: number;
  /** Unanswered by then, it lapses (`remediation.approval.expiry`). */
  expiresAt: number;
}

/** A person's answer to a proposal: `nodemedic approve`/`reject`, or the Node annotation. */
export interface ApprovalAnswer {
  /** The proposal answered; an answer for another id is ignored. */
  id: string;
  decision: 'approve' | 'reject';
  /** Who, as given (`operator/<user>` from the CLI, `annotation` from the Node). */
  by: string;
}
