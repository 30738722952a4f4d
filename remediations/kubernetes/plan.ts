/**
 * The drain-reboot plan on disk: written before each step that changes the node or the cluster, with
 * fsync of the file and of its directory, so an agent killed at any point (or the reboot itself) finds
 * on restart what was in flight and can finish or undo it.
 */
import { link, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readBoundedFile, type FileReadError } from '../../platform/host.js';

export type PlanPhase =
  /** Taking the reboot Lease (the plan is written first, so a Lease is never held without it). */
  | 'leasing'
  /** About to cordon (the plan is written first so a cordon never exists without it). */
  | 'cordoning'
  /** Cordoned, evicting. */
  | 'draining'
  /**
   * `nodemedic maintain` only: drained, the operator's work (a command, the systemd upgrade) runs, then
   * the node's health is awaited. The agent leaves this phase alone: the `maintain` process owns it.
   */
  | 'maintaining'
  /**
   * `nodemedic maintain` only: the work failed (or the node was not healthy after it). The node stays
   * cordoned, the slot is released, and the plan stays until an operator runs `nodemedic uncordon`.
   */
  | 'maintenance-failed'
  /** Drained; `systemctl reboot` is being issued. */
  | 'rebooting'
  /** Booted again; waiting for the checks to be ok and the Node Ready. */
  | 'recovering'
  /**
   * Judged bad for `recovery.timeout` of time in which the API answered (see recovery.ts): the node
   * stays cordoned and no second reboot is tried.
   */
  | 'recovery-failed';

export interface RebootPlan {
  version: 1;
  episodeId: string;
  reason: string;
  /** `agent` (the ladder), `cli` (`nodemedic reboot`) or `maintain` (`nodemedic maintain`). */
  origin: 'agent' | 'cli' | 'maintain';
  node: string;
  phase: PlanPhase;
  /** `/proc/sys/kernel/random/boot_id` when the plan was made: a different one later means we rebooted. */
  bootId: string;
  createdAt: string;
  updatedAt: string;
  /** Whether the cluster is involved (false: `rebootWithoutDrain` without Kubernetes access). */
  kubernetes: boolean;
  lease?: { namespace: string; name: string };
  cordon?: {
    token: string;
    /** False when the node was already cordoned by someone else: then it is never uncordoned by us. */
    ours: boolean;
    /** Who had cordoned it, when not us. */
    preexistingBy?: string;
  };
  drainSummary?: string;
  rebootIssuedAt?: string;
  recovery?: {
    bootId: string;
    since: string;
    /** Informational: `since` + `recovery.timeout`. The timeout is judged on `judgedMs`, not on this. */
    deadline: string;
    /** Time (ms) in which the API answered and the checks were judged, and were bad. Absent in old plans: 0. */
    judgedMs?: number;
  };
  /** Why the episode ended badly, for `recovery-failed` and `maintenance-failed`. */
  failure?: string;
  /**
   * Present for `nodemedic maintain`, from the plan's creation until it is removed: while it is, the
   * agent's ladder starts no episode for `checks` (remediations/maintenance.ts).
   */
  maintenance?: MaintenanceRecord;
}

/** What a `nodemedic maintain` records in its plan, for the agent and for people reading `/status`. */
export interface MaintenanceRecord {
  /** `--reason`, or a default naming the command. */
  reason: string;
  /** What is done, for display: the command line (argv joined with spaces), or `systemd upgrade`. */
  work: string;
  /** Who ran it (`operator/<user>`). */
  by: string;
  /** The check ids the maintenance disturbs: the agent starts no remediation episode for them. */
  checks: string[];
  /** Whether the node reboots after the work (then post-boot recovery ends the maintenance). */
  reboot: boolean;
  /** PID of the `nodemedic maintain` process: a plan whose process is gone is stale (`nodemedic uncordon` clears it). */
  pid: number;
  /** Where the work's output is kept (under `<stateDir>/evidence/`), once it started. */
  log?: string;
}

export class PlanExistsError extends Error {
  override name = 'PlanExistsError';
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeSynced(path: string, text: string): Promise<void> {
  const fh = await open(path, 'w', 0o600);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A plan is a few hundred bytes; anything far larger is not one. */
const PLAN_MAX_BYTES = 64 * 1024;
/** Bound on reading the plan (the stateDir is local disk; a hung one must not wedge recovery). */
const PLAN_READ_TIMEOUT_MS = 5000;

export class PlanStore {
  readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'drain-reboot.json');
  }

  /** The plan, or undefined when none. A file that is not a plan is an error naming the file. */
  async read(): Promise<RebootPlan | undefined> {
    let text: string;
    try {
      // Bounded like every outside file: a plan is a few hundred bytes; a stateDir on a hung mount fails the read.
      text = await readBoundedFile(this.path, { maxBytes: PLAN_MAX_BYTES, timeoutMs: PLAN_READ_TIMEOUT_MS });
    } catch (e) {
      if ((e as FileReadError).code === 'ENOENT') return undefined;
      throw e;
    }
    let plan: RebootPlan;
    try {
      plan = JSON.parse(text) as RebootPlan;
    } catch (e) {
      throw new Error(`${this.path}: not valid JSON (${(e as Error).message}); move it away after checking the node's cordon by hand`);
    }
    if (plan?.version !== 1 || typeof plan.phase !== 'string' || typeof plan.bootId !== 'string') {
      throw new Error(`${this.path}: not a nodemedic drain-reboot plan (version 1)`);
    }
    return plan;
  }

  /** Writes a new plan; fails with PlanExistsError if one exists (another run is in flight). */
  async create(plan: RebootPlan): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.new`;
    await writeSynced(tmp, JSON.stringify(plan, null, 2));
    try {
      // link() is an atomic create-if-absent: two runs racing cannot both own the plan.
      await link(tmp, this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new PlanExistsError(`a drain-reboot is already in flight (${this.path} exists)`);
      throw e;
    } finally {
      await unlink(tmp).catch(() => {});
    }
    await fsyncDir(dirname(this.path));
  }

  async update(plan: RebootPlan): Promise<void> {
    const tmp = `${this.path}.${process.pid}.new`;
    await writeSynced(tmp, JSON.stringify(plan, null, 2));
    await rename(tmp, this.path);
    await fsyncDir(dirname(this.path));
  }

  async remove(): Promise<void> {
    try {
      await unlink(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    await fsyncDir(dirname(this.path)).catch(() => {});
  }
}
