/**
 * The one way a drain-reboot is undone, whether it was rolled back, recovered after the boot, or found
 * as an orphan: uncordon only a cordon that carries our token (read from the Node, so what the server
 * did counts, not what the client believed), then give back the reboot slot, then forget the plan.
 * kured's lock/drainer split: the lock is released only after the uncordon.
 */
import type { Logger } from 'pino';
import type { KubeApi } from '../../platform/kube-client.js';
import type { ActionName, ActionResult } from '../types.js';
import { uncordon } from './cordon.js';
import type { NodeEvent } from './events.js';
import type { RebootLease } from './lease.js';
import type { PlanStore, RebootPlan } from './plan.js';

export interface UndoDeps {
  api: KubeApi | undefined;
  node: string;
  lease: RebootLease | undefined;
  store: PlanStore;
  logger: Logger;
  event(ev: NodeEvent): Promise<void>;
  action(name: ActionName, result: ActionResult): void;
}

/**
 * Uncordon-if-ours, release, remove the plan (when there is one). `why` goes into the uncordon event.
 * API errors propagate, with the plan left in place, so the caller retries the whole undo later.
 * Returns what was done, for messages.
 */
export async function undo(d: UndoDeps, plan: Pick<RebootPlan, 'episodeId' | 'kubernetes' | 'cordon'> | undefined, why: string): Promise<string[]> {
  const notes: string[] = [];
  if (d.api && (!plan || plan.kubernetes)) {
    if (plan?.cordon?.ours) {
      const u = await uncordon(d.api, d.node, plan.cordon.token);
      if (u === 'uncordoned') {
        d.action('uncordon', 'success');
        notes.push(`uncordoned ${d.node}`);
        await d.event({ reason: 'NodemedicUncordon', type: 'Normal', message: `uncordoned ${d.node}: ${why}` });
      } else if (u === 'not-ours') {
        notes.push(`left ${d.node} cordoned: its cordon mark is no longer ours`);
      }
    } else if (plan?.cordon?.preexistingBy) {
      notes.push(`left ${d.node} cordoned: it was cordoned by ${plan.cordon.preexistingBy} before`);
    }
    if (d.lease) {
      const l = await d.lease.release();
      if (l === 'released') notes.push('released the reboot lease');
    }
  }
  if (plan) await d.store.remove();
  return notes;
}
