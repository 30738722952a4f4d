import { join } from 'node:path';
import { Ajv } from 'ajv';
import type { Logger } from 'pino';
import { STEP_NAMES } from './config.js';
import { emptyState } from './decide.js';
import { moveAside, writeFileAtomic } from '../platform/atomic-file.js';
import { readBoundedFile } from '../platform/host.js';

/** The state keeps bounded history (a few hundred KB at most); far more is not our file. */
const STATE_MAX_BYTES = 16 * 1024 * 1024;
/** A state directory on a hung disk must not stall the ladder's start forever. */
const STATE_READ_TIMEOUT_MS = 10_000;
import type { LadderState } from './types.js';

export const STATE_FILE = 'state.json';
/** After a corrupt state file, no reboot request for this long: the budget history is gone. */
export const CORRUPT_REBOOT_HOLD_MS = 24 * 3_600_000;

const ms = { type: 'number', minimum: 0 } as const;
const msOrNull = { anyOf: [ms, { type: 'null' }] } as const;
const step = { enum: STEP_NAMES } as const;
const mode = { enum: ['dry-run', 'enforce'] } as const;
const episodeMode = { enum: ['dry-run', 'approve', 'enforce'] } as const;
const result = { enum: ['success', 'failure', 'dry_run', 'skipped'] } as const;
const strList = { type: 'array', items: { type: 'string' } } as const;

/** The shape of `state.json` version 1; anything else is treated as corrupt. */
const stateSchema = {
  type: 'object',
  required: ['version', 'seq', 'problemSince', 'episode', 'latch', 'budgets', 'liveRestore', 'rebootRequest', 'actions'],
  additionalProperties: false,
  properties: {
    version: { const: 1 },
    seq: { type: 'integer', minimum: 0 },
    problemSince: { type: 'object', additionalProperties: ms },
    episode: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          required: ['id', 'mode', 'trigger', 'reason', 'triggers', 'startedAt', 'ladder', 'stepIndex', 'phase', 'stepStartedAt', 'judgeAt', 'deferred', 'state'],
          additionalProperties: false,
          properties: {
            id: { type: 'string', minLength: 1 },
            mode: episodeMode,
            trigger: { type: 'string' },
            reason: { type: 'string' },
            triggers: strList,
            startedAt: ms,
            ladder: { type: 'array', items: step },
            stepIndex: { type: 'integer', minimum: 0 },
            phase: { enum: ['due', 'acting', 'settling', 'deferred', 'retrying', 'awaiting-approval'] },
            retries: { type: 'integer', minimum: 0 },
            approved: {
              type: 'object',
              required: ['step', 'by', 'proposalId'],
              additionalProperties: false,
              properties: { step, by: { type: 'string' }, proposalId: { type: 'string' } },
            },
            stepStartedAt: msOrNull,
            judgeAt: msOrNull,
            deferred: { anyOf: [step, { type: 'null' }] },
            state: { enum: ['active', 'recovered', 'exhausted', 'abandoned'] },
            endedAt: ms,
            endReason: { type: 'string' },
          },
        },
      ],
    },
    latch: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          required: ['episodeId', 'triggers', 'since'],
          additionalProperties: false,
          properties: { episodeId: { type: 'string' }, triggers: strList, since: ms, mode: episodeMode },
        },
      ],
    },
    budgets: {
      type: 'object',
      required: ['restarts', 'reboots', 'noRebootBefore'],
      additionalProperties: false,
      properties: {
        restarts: { type: 'object', additionalProperties: { type: 'array', items: ms } },
        reboots: { type: 'array', items: ms },
        reexecs: { type: 'array', items: ms },
        noRebootBefore: msOrNull,
      },
    },
    liveRestore: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          required: ['enabled', 'observedAt'],
          additionalProperties: false,
          properties: { enabled: { type: 'boolean' }, observedAt: ms },
        },
      ],
    },
    rebootRequest: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          required: ['episodeId', 'at', 'reason', 'result', 'detail'],
          additionalProperties: false,
          properties: { episodeId: { type: 'string' }, at: ms, reason: { type: 'string' }, result, detail: { type: 'string' } },
        },
      ],
    },
    actions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'episodeId', 'step', 'action', 'mode', 'intentAt', 'reason'],
        additionalProperties: false,
        properties: {
          id: { type: 'string' },
          episodeId: { type: 'string' },
          step,
          action: { enum: ['restart_kubelet', 'restart_docker', 'restart_containerd', 'reexec_systemd', 'cordon', 'drain', 'reboot', 'uncordon', null] },
          unit: { type: 'string' },
          mode,
          intentAt: ms,
          bootId: { type: 'string' },
          reason: { type: 'string' },
          outcome: {
            type: 'object',
            required: ['result', 'detail', 'at'],
            additionalProperties: false,
            properties: { result, detail: { type: 'string' }, at: ms, inferred: { type: 'boolean' }, retry: { type: 'boolean' } },
          },
        },
      },
    },
    proposal: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          required: ['id', 'episodeId', 'step', 'action', 'reason', 'proposedAt', 'expiresAt'],
          additionalProperties: false,
          properties: {
            id: { type: 'string', minLength: 1 },
            episodeId: { type: 'string' },
            step,
            action: { enum: ['restart_kubelet', 'restart_docker', 'restart_containerd', 'reexec_systemd', 'reboot', null] },
            unit: { type: 'string' },
            reason: { type: 'string' },
            proposedAt: ms,
            expiresAt: ms,
          },
        },
      ],
    },
  },
} as const;

let validator: ReturnType<Ajv['compile']> | undefined;
function validate(data: unknown): string | null {
  validator ??= new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile(stateSchema);
  if (validator(data)) return null;
  const e = validator.errors?.[0];
  return `${e?.instancePath || '(top level)'} ${e?.message ?? 'invalid'}`;
}

/** Parses and checks a state file's text; throws an Error saying what is wrong. */
export function parseState(text: string): LadderState {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON: ${(e as Error).message}`);
  }
  const problem = validate(data);
  if (problem) throw new Error(`not a version 1 ladder state: ${problem}`);
  return data as LadderState;
}

export interface LoadedState {
  state: LadderState;
  /** Set when the file was corrupt: where it was kept, and what was wrong. */
  corrupt?: { keptAt: string; error: string };
}

/**
 * The agent's state as it is on disk, for the CLI: read only, never moved aside or replaced (that
 * is the agent's to do). A missing file is a fresh state; an unreadable or corrupt one throws.
 */
export async function readStateFile(stateDir: string): Promise<LadderState> {
  let text: string;
  try {
    text = await readBoundedFile(join(stateDir, STATE_FILE), { maxBytes: STATE_MAX_BYTES, timeoutMs: STATE_READ_TIMEOUT_MS });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
    throw e;
  }
  return parseState(text);
}

/**
 * The ladder's persistent state in `<stateDir>/state.json`. Every save is atomic (temporary file,
 * fsync, rename, fsync of the directory) and saves are serialized, so the file always holds one
 * complete state.
 */
export class StateStore {
  readonly path: string;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly dir: string,
    private readonly logger: Logger,
  ) {
    this.path = join(dir, STATE_FILE);
  }

  /**
   * Reads the state. A missing file is a fresh state. A corrupt one (bad JSON, wrong shape, another
   * version) is renamed to `state.json.corrupt-<time>` for inspection and replaced by a conservative
   * state: no reboot request for 24 hours, since the budget history is lost. That is logged as an error.
   */
  async load(now: number): Promise<LoadedState> {
    let text: string;
    try {
      // Bounded: a directory, FIFO or device in its place is refused (reported, retried by the
      // caller), a hung disk times out, a runaway file is not read whole.
      text = await readBoundedFile(this.path, { maxBytes: STATE_MAX_BYTES, timeoutMs: STATE_READ_TIMEOUT_MS });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { state: emptyState() };
      throw new Error((e as Error).message);
    }
    try {
      return { state: parseState(text) };
    } catch (e) {
      const error = (e as Error).message;
      const keptAt = `${this.path}.corrupt-${new Date(now).toISOString().replace(/[:.]/g, '-')}`;
      await moveAside(this.path, keptAt);
      const state = emptyState();
      state.budgets.noRebootBefore = now + CORRUPT_REBOOT_HOLD_MS;
      await this.save(state);
      this.logger.error(
        { stateFile: this.path, keptAt, error, noRebootBefore: new Date(state.budgets.noRebootBefore).toISOString() },
        'remediation state file is corrupt: kept aside, replaced by a conservative state (no reboot request for 24h)',
      );
      return { state, corrupt: { keptAt, error } };
    }
  }

  /** Atomically replaces the state file; resolves once it is durable. */
  save(state: LadderState): Promise<void> {
    const text = JSON.stringify(state, null, 1) + '\n';
    const run = this.chain.then(() => writeFileAtomic(this.path, text));
    this.chain = run.catch(() => {});
    return run;
  }
}
