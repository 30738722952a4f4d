import { join } from 'node:path';
import { readBoundedFile } from '../platform/host.js';
import { removeFileDurably, writeFileAtomic } from '../platform/atomic-file.js';
import type { PauseState } from './types.js';

/**
 * The operator's pause lives in its own file, `<stateDir>/pause.json`, written only by
 * `nodemedic pause` / `nodemedic resume` and only read by the agent: the two never write the same
 * file, and the pause survives agent restarts.
 */
export const PAUSE_FILE = 'pause.json';
/** A pause file is a few hundred bytes; anything much larger is not one. */
const PAUSE_MAX_BYTES = 64 * 1024;
/** Read before every decision: a stateDir on a hung mount must not stall the ladder. */
const PAUSE_READ_TIMEOUT_MS = 5000;

/** On disk: times as ISO-8601 so an operator can read (and if need be write) the file by hand. */
interface PauseFileV1 {
  version: 1;
  since: string;
  until: string | null;
  reason: string;
}

export function pausePath(stateDir: string): string {
  return join(stateDir, PAUSE_FILE);
}

function parsePause(text: string): PauseState {
  const d = JSON.parse(text) as Partial<PauseFileV1> | null;
  if (!d || typeof d !== 'object' || d.version !== 1) throw new Error('not a version 1 pause file');
  const since = typeof d.since === 'string' ? Date.parse(d.since) : NaN;
  if (!Number.isFinite(since)) throw new Error(`since: not a time: ${JSON.stringify(d.since)}`);
  let until: number | null = null;
  if (d.until !== null) {
    until = typeof d.until === 'string' ? Date.parse(d.until) : NaN;
    if (!Number.isFinite(until)) throw new Error(`until: not a time: ${JSON.stringify(d.until)}`);
  }
  if (typeof d.reason !== 'string') throw new Error('reason: not a string');
  return { since, until, reason: d.reason };
}

/**
 * The pause, or null when there is none. A pause file that exists but cannot be read or parsed
 * counts as a pause without end (fails closed: someone meant to stop the agent from acting), with
 * `error` saying why, so `/status` and the log show it.
 */
export async function readPause(stateDir: string): Promise<PauseState | null> {
  const path = pausePath(stateDir);
  let text: string;
  try {
    // Bounded: a FIFO, a device or a huge file in its place is refused, a hung mount times out.
    text = await readBoundedFile(path, { maxBytes: PAUSE_MAX_BYTES, timeoutMs: PAUSE_READ_TIMEOUT_MS });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return { since: 0, until: null, reason: '', error: `cannot read the pause file: ${(e as Error).message}` };
  }
  try {
    return parsePause(text);
  } catch (e) {
    return { since: 0, until: null, reason: '', error: `${path} is invalid (${(e as Error).message}); remove it with \`nodemedic resume\`` };
  }
}

/** Writes the pause atomically (replacing any earlier one). */
export async function writePause(stateDir: string, p: { since: number; until: number | null; reason: string }): Promise<void> {
  const file: PauseFileV1 = {
    version: 1,
    since: new Date(p.since).toISOString(),
    until: p.until === null ? null : new Date(p.until).toISOString(),
    reason: p.reason,
  };
  await writeFileAtomic(pausePath(stateDir), JSON.stringify(file, null, 2) + '\n');
}

/** Removes the pause; false when there was none. */
export async function clearPause(stateDir: string): Promise<boolean> {
  return removeFileDurably(pausePath(stateDir));
}
