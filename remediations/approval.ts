import { join } from 'node:path';
import { readBoundedFile } from '../platform/host.js';
import { removeFileDurably, writeFileAtomic } from '../platform/atomic-file.js';
import type { ApprovalAnswer } from './types.js';

/**
 * `mode: approve` answers given on the node: `nodemedic approve` / `nodemedic reject` write
 * `<stateDir>/approval.json`, the agent only reads it (as with pause.json, the two never write the
 * same file). An answer names the proposal it is for; the agent ignores one for any other id, so a
 * stale file never approves a later proposal. Answers given from elsewhere go on the Node as
 * annotations (remediations/kubernetes/approval.ts).
 */
export const APPROVAL_FILE = 'approval.json';
/** An answer is a few hundred bytes; anything much larger is not one. */
const APPROVAL_MAX_BYTES = 64 * 1024;
/** Read while a proposal waits, before a decision: a stateDir on a hung mount must not stall the ladder. */
const APPROVAL_READ_TIMEOUT_MS = 5000;

interface ApprovalFileV1 {
  version: 1;
  id: string;
  decision: 'approve' | 'reject';
  by: string;
  /** When it was given (ISO-8601), for people reading the file. */
  at: string;
}

export function approvalPath(stateDir: string): string {
  return join(stateDir, APPROVAL_FILE);
}

/**
 * The answer in `approval.json`, null when there is none, or `{ error }` when the file cannot be read
 * or is not an answer. An unreadable answer approves nothing (fails closed); the caller logs it.
 */
export async function readApproval(stateDir: string): Promise<ApprovalAnswer | { error: string } | null> {
  let text: string;
  try {
    text = await readBoundedFile(approvalPath(stateDir), { maxBytes: APPROVAL_MAX_BYTES, timeoutMs: APPROVAL_READ_TIMEOUT_MS });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return { error: `cannot read ${approvalPath(stateDir)}: ${(e as Error).message}` };
  }
  try {
    const d = JSON.parse(text) as Partial<ApprovalFileV1> | null;
    if (!d || typeof d !== 'object' || d.version !== 1) throw new Error('not a version 1 approval file');
    if (typeof d.id !== 'string' || !d.id) throw new Error('id: not a proposal id');
    if (d.decision !== 'approve' && d.decision !== 'reject') throw new Error(`decision: must be approve or reject, got ${JSON.stringify(d.decision)}`);
    if (typeof d.by !== 'string') throw new Error('by: not a string');
    return { id: d.id, decision: d.decision, by: d.by };
  } catch (e) {
    return { error: `${approvalPath(stateDir)} is not an answer (${(e as Error).message}); approving nothing` };
  }
}

/** Writes the answer atomically, replacing an earlier one. */
export async function writeApproval(stateDir: string, a: ApprovalAnswer, at: number): Promise<void> {
  const file: ApprovalFileV1 = { version: 1, id: a.id, decision: a.decision, by: a.by, at: new Date(at).toISOString() };
  await writeFileAtomic(approvalPath(stateDir), JSON.stringify(file, null, 2) + '\n');
}

/** Removes the answer once it has been acted on; false when there was none. */
export async function clearApproval(stateDir: string): Promise<boolean> {
  return removeFileDurably(approvalPath(stateDir));
}
