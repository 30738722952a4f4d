/**
 * The `remediation:` section: how the ladder behaves, its guards and budgets, and (when Kubernetes
 * access is configured) how the last step drains and reboots. Durations are strings (platform/duration.ts).
 */
import { neverTriggers } from '../checks/index.js';
import { parseDuration } from '../platform/duration.js';
import { parseQuantity } from '../platform/quantity.js';

/**
 * `off`: nothing. `dry-run`: the ladder decides and reports what it would do. `enforce`: it acts.
 * `approve`: as `enforce`, but the steps in `approval.steps` are proposed and wait for a person
 * (`nodemedic approve`, or the Node annotation) before they run; the rest run as in `enforce`.
 */
export type RemediationMode = 'off' | 'dry-run' | 'approve' | 'enforce';

/**
 * The part of the agent's configuration that remediation reads. agent/config.ts's `Config` has all of
 * it (and is passed as is); it is spelled out here so that remediations never import the agent.
 */
export interface RemediationConfig {
  nodeName: string;
  stateDir: string;
  /** Per check its options; the ladder reads the `unit` of kubelet, docker and containerd. */
  checks: Record<string, { enabled: boolean } & Record<string, unknown>>;
  remediation: RemediationOptions;
  kubernetes: { kubeconfig: string; conditionHeartbeat?: string };
}


/**
 * Ladder steps, in the runbook's order. `reexec-systemd` runs only in episodes whose cause is PID 1
 * (remediations/README.md); other episodes pass over it.
 */
export type StepName = 'restart-kubelet' | 'restart-runtime' | 'reexec-systemd' | 'drain-reboot';
export const STEP_NAMES: readonly StepName[] = ['restart-kubelet', 'restart-runtime', 'reexec-systemd', 'drain-reboot'];

export interface DrainOptions {
  /** Give up evicting after this long; then roll back (uncordon, release the Lease) and do not reboot. */
  timeout: string;
  /** Evict pods with emptyDir volumes (their data is lost), like `kubectl drain --delete-emptydir-data`. */
  deleteEmptyDirData: boolean;
  /** Delete pods that no controller will recreate, like `kubectl drain --force`. */
  force: boolean;
  /** Reboot even when the drain timed out. Off: a failed drain never reboots. */
  forceRebootAfterTimeout: boolean;
  /** Per-pod grace period override in seconds; -1 uses each pod's own. */
  gracePeriodSeconds: number;
}

export interface EvidenceSettings {
  /** Collect a bundle before every action (and dry-run report). Off: actions name no bundle; `nodemedic collect` still works. */
  enabled: boolean;
  /** Total size of `<stateDir>/evidence/` (a Kubernetes quantity, e.g. `50Mi`); the oldest bundles are removed first. */
  maxTotalSize: string;
  /** How long collecting may delay an action; what is not gathered by then is named in the bundle as missing. */
  timeout: string;
  /** Last lines taken from each journal (kubelet, the runtimes). */
  journalLines: number;
}

export interface RemediationOptions {
  mode: RemediationMode;
  /** A trigger must stay a problem this long before the first step. */
  grace: string;
  /** After a step, wait this long, then judge it. Also: never restart a unit that started less than this ago. */
  settle: string;
  /** Checks whose `problem` starts an episode. `unknown` never does. */
  triggers: string[];
  /** The ladder, in order. */
  steps: StepName[];
  /** Per trigger, the step to start from (e.g. `docker: restart-runtime`); default the first step. */
  firstStep: Record<string, StepName>;
  /** At most this many restarts of one unit per rolling hour. */
  restartsPerHour: number;
  /** At most this many reboot requests per rolling day. */
  rebootsPerDay: number;
  /** At most this many re-executions of systemd (PID 1) per rolling day (`reexec-systemd`). */
  reexecsPerDay: number;
  /**
   * After a verified reexec, kill (SIGKILL) runc processes older than this, as the runbook does after
   * the upgrade (`killall runc`); empty: never (the default). Read from `checks.systemd.procPath`.
   */
  killStuckRuncAfter: string;
  /** Restarting docker without live-restore kills every container on the node; refuse unless this is true. */
  allowRuntimeRestartWithoutLiveRestore: boolean;
  /** How long `systemctl restart` may take. */
  commandTimeout: string;
  /** Without Kubernetes access, reboot anyway (no drain). Off: the reboot stays a request. */
  rebootWithoutDrain: boolean;
  /** More than this many NotReady/nodemedic-cordoned nodes (a count, or a percentage like `20%`) blocks drains. */
  maxUnhealthyNodes: number | string;
  /** At most this many nodes of the cluster reboot at once (a coordination.k8s.io Lease each). */
  maxConcurrentReboots: number;
  /** Namespace of the reboot Leases. */
  leaseNamespace: string;
  /**
   * The reboot Lease is renewed every third of this; a holder that cannot renew it for this long before
   * the reboot gives up its drain (rolls back). It is not the Lease's expiry: see `slotExpiry`.
   */
  leaseDuration: string;
  /**
   * The safety valve of a reboot slot: another agent takes over a Lease only after it has seen it
   * unchanged for this long (by its own monotonic clock). The holder keeps the slot across its reboot, so
   * this must cover the reboot, the boot and `recovery.timeout` with the API down. Default 1h.
   */
  slotExpiry: string;
  /** A drain-reboot refused (slot busy, storm guard, API error) is tried again after `initial`, doubling up to `max`. */
  retryBackoff: { initial: string; max: string };
  /** Where the boot id is read: a different one after a reboot means the reboot happened. */
  bootIdFile: string;
  /** Reboots only in this window (`HH:MM-HH:MM`, UTC); empty: any time. */
  rebootWindow: string;
  drain: DrainOptions;
  /** The evidence bundle written before every action (remediations/README.md, "Evidence"). */
  evidence: EvidenceSettings;
  recovery: {
    /** After a reboot, how long to wait for the checks to be ok and the Node Ready before giving up. */
    timeout: string;
  };
  /** `mode: approve` (remediations/README.md, "Approval"). */
  approval: {
    /** The steps that wait for a person; the others run as in `enforce`. Default: reexec-systemd and drain-reboot. */
    steps: StepName[];
    /** A proposal nobody answered lapses after this long; it is proposed anew (new id) if the fault persists. */
    expiry: string;
  };
}

const duration = { type: 'string', format: 'duration' } as const;

const EVIDENCE_MIN_BYTES = 2 ** 20;
const EVIDENCE_MAX_BYTES = 10 * 2 ** 30;

/** `evidence.maxTotalSize` in bytes (NaN when it is not a size). */
export function evidenceMaxBytes(e: EvidenceSettings): number {
  try {
    return parseQuantity(e.maxTotalSize);
  } catch {
    return NaN;
  }
}

export const remediationDefaults: RemediationOptions = {
  mode: 'dry-run',
  grace: '1m',
  settle: '2m',
  // node-ready is opt-in: the cluster also marks nodes NotReady for its own reasons (control plane,
  // network), and restarting every node's kubelet at once would only add load (issue 8).
  triggers: ['pleg', 'kubelet', 'docker', 'containerd', 'stuck-pods', 'systemd'],
  steps: ['restart-kubelet', 'restart-runtime', 'reexec-systemd', 'drain-reboot'],
  firstStep: {},
  restartsPerHour: 3,
  rebootsPerDay: 1,
  reexecsPerDay: 2,
  killStuckRuncAfter: '',
  allowRuntimeRestartWithoutLiveRestore: false,
  commandTimeout: '90s',
  rebootWithoutDrain: false,
  maxUnhealthyNodes: '10%',
  maxConcurrentReboots: 1,
  leaseNamespace: 'kube-system',
  leaseDuration: '5m',
  slotExpiry: '1h',
  retryBackoff: { initial: '1m', max: '15m' },
  bootIdFile: '/proc/sys/kernel/random/boot_id',
  rebootWindow: '',
  drain: {
    timeout: '10m',
    deleteEmptyDirData: false,
    force: false,
    forceRebootAfterTimeout: false,
    gracePeriodSeconds: -1,
  },
  evidence: { enabled: true, maxTotalSize: '50Mi', timeout: '10s', journalLines: 20_000 },
  recovery: { timeout: '15m' },
  // Restarts are what the runbook does first and undo themselves; a reboot and re-executing PID 1 are not.
  approval: { steps: ['reexec-systemd', 'drain-reboot'], expiry: '1h' },
};

const stepName = { enum: ['restart-kubelet', 'restart-runtime', 'reexec-systemd', 'drain-reboot'] } as const;

export const remediationSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: { enum: ['off', 'dry-run', 'approve', 'enforce'] },
    grace: duration,
    settle: duration,
    triggers: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true },
    steps: { type: 'array', items: stepName, uniqueItems: true, minItems: 1 },
    firstStep: { type: 'object', additionalProperties: stepName },
    restartsPerHour: { type: 'integer', minimum: 0 },
    rebootsPerDay: { type: 'integer', minimum: 0 },
    reexecsPerDay: { type: 'integer', minimum: 0 },
    killStuckRuncAfter: { type: 'string', description: 'empty (off) or a duration', pattern: '^$|^(?:\\d+(?:\\.\\d+)?(?:ms|s|m|h|d))+$' },
    allowRuntimeRestartWithoutLiveRestore: { type: 'boolean' },
    commandTimeout: duration,
    rebootWithoutDrain: { type: 'boolean' },
    maxUnhealthyNodes: {
      anyOf: [
        { type: 'integer', minimum: 0 },
        { type: 'string', pattern: '^(100|[1-9]?[0-9])%$', description: 'a percentage like "10%"' },
      ],
    },
    maxConcurrentReboots: { type: 'integer', minimum: 1 },
    leaseNamespace: { type: 'string', minLength: 1 },
    leaseDuration: duration,
    slotExpiry: duration,
    retryBackoff: { type: 'object', additionalProperties: false, properties: { initial: duration, max: duration } },
    bootIdFile: { type: 'string', minLength: 1 },
    rebootWindow: { type: 'string', description: 'empty or a UTC window HH:MM-HH:MM', pattern: '^$|^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$' },
    drain: {
      type: 'object',
      additionalProperties: false,
      properties: {
        timeout: duration,
        deleteEmptyDirData: { type: 'boolean' },
        force: { type: 'boolean' },
        forceRebootAfterTimeout: { type: 'boolean' },
        gracePeriodSeconds: { type: 'integer', minimum: -1 },
      },
    },
    evidence: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        maxTotalSize: { type: 'string', pattern: '^[0-9]+(Ki|Mi|Gi)?$', description: 'a size like "50Mi" (bytes, Ki, Mi or Gi)' },
        timeout: duration,
        journalLines: { type: 'integer' },
      },
    },
    recovery: {
      type: 'object',
      additionalProperties: false,
      properties: { timeout: duration },
    },
    approval: {
      type: 'object',
      additionalProperties: false,
      properties: { steps: { type: 'array', items: stepName, uniqueItems: true }, expiry: duration },
    },
  },
} as const;

/**
 * Checks that are reported but never start a restart (no restart cures a full disk, load or an old
 * systemd): each check says so itself (`restartCures` in checks/types.ts).
 */
export const NEVER_TRIGGERS: readonly string[] = neverTriggers();

/**
 * What the schema cannot say: cross-field rules of `remediation`. Returns one message per problem,
 * each naming its key path; empty when the section is consistent.
 */
export function remediationProblems(r: RemediationOptions, knownChecks: readonly string[]): string[] {
  const out: string[] = [];
  r.triggers.forEach((t, i) => {
    if (NEVER_TRIGGERS.includes(t)) {
      out.push(`remediation.triggers.${i}: "${t}" cannot be a trigger (a restart cures none of ${NEVER_TRIGGERS.join(', ')})`);
    } else if (!knownChecks.includes(t)) {
      out.push(`remediation.triggers.${i}: no check named "${t}" (checks: ${knownChecks.join(', ')})`);
    }
  });
  const ms = (d: string): number => {
    try {
      return parseDuration(d);
    } catch {
      return NaN;
    }
  };
  if (ms(r.slotExpiry) < ms(r.recovery.timeout) + ms(r.leaseDuration)) {
    out.push(`remediation.slotExpiry: ${r.slotExpiry} is shorter than recovery.timeout (${r.recovery.timeout}) plus leaseDuration (${r.leaseDuration}); a node still recovering (or booting) could lose its reboot slot`);
  }
  if (ms(r.retryBackoff.max) < ms(r.retryBackoff.initial)) {
    out.push(`remediation.retryBackoff.max: ${r.retryBackoff.max} is shorter than retryBackoff.initial (${r.retryBackoff.initial})`);
  }
  const cap = evidenceMaxBytes(r.evidence);
  if (!(cap >= EVIDENCE_MIN_BYTES && cap <= EVIDENCE_MAX_BYTES)) {
    out.push(`remediation.evidence.maxTotalSize: ${r.evidence.maxTotalSize} is out of range (1Mi to 10Gi): a bundle is up to a few MiB`);
  }
  for (const [trigger, step] of Object.entries(r.firstStep)) {
    if (!r.triggers.includes(trigger)) {
      out.push(`remediation.firstStep.${trigger}: "${trigger}" is not in remediation.triggers`);
    }
    if (!r.steps.includes(step)) {
      out.push(`remediation.firstStep.${trigger}: step "${step}" is not in remediation.steps (${r.steps.join(', ')})`);
    }
  }
  return out;
}
