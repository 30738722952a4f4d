/**
 * The reboot lock ("slot"): at most `maxConcurrentReboots` nodes hold one of as many
 * `coordination.k8s.io/v1` Leases (`nodemedic-reboot-0`, `-1`, ...). It is held from before the cordon
 * until the uncordon (or the rollback) is done, across the reboot: the agent that rebooted finds its
 * Lease again by `holderIdentity` (the node name) and renews it until recovery ends.
 *
 * A Lease is taken by create (409 AlreadyExists: someone was faster) or, when free or expired, by an
 * update carrying the resourceVersion we read (409 Conflict: someone was faster).
 *
 * Expiry is a safety valve for a node that never comes back, judged the way client-go's leader election
 * judges it (k8s.io/client-go/tools/leaderelection, `observedTime`): from when *this* agent last saw the
 * record change (its resourceVersion), by this agent's own monotonic clock, against the holder's
 * `leaseDurationSeconds`, which the holder sets to the long `remediation.slotExpiry`. The holder's
 * `renewTime` is never compared with this node's clock: node clocks may disagree, and a clock step here
 * must never shorten anyone's hold. An agent that has just started has seen nothing change yet and waits
 * the whole duration.
 * Lease fields: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/
 */
import type { V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.js';
import { formatDuration } from '../../platform/duration.js';
import { isStatus, KubeApiError, type KubeApi } from '../../platform/kube-client.js';

export const LEASE_PREFIX = 'nodemedic-reboot-';

/**
 * A Lease time. The API server accepts `acquireTime`/`renewTime` only with exactly six fractional
 * digits (metav1.MicroTime); client-node serializes this field by calling `toISOString()`.
 */
export class MicroTime extends Date {
  override toISOString(): string {
    return super.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
  }
}

function timeOf(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const t = v instanceof Date ? v.getTime() : Date.parse(String(v));
  return Number.isNaN(t) ? undefined : t;
}

/** Milliseconds on a clock that never steps (default `performance.now()`). */
export type Monotonic = () => number;
export const monotonicNow: Monotonic = () => performance.now();

/**
 * An API error worth trying again within a deadline: no answer, 429, 5xx. A 4xx other than 429
 * (forbidden, invalid) will not change by retrying.
 */
export function isTransient(e: unknown): boolean {
  return e instanceof KubeApiError && (e.status === 0 || e.status === 429 || e.status >= 500);
}

export interface LeaseOptions {
  api: KubeApi;
  namespace: string;
  /** How many Leases (= nodes rebooting at once). */
  slots: number;
  /** Who we are in `holderIdentity`: the node name, so the same node finds its Lease after its reboot. */
  identity: string;
  /** `leaseDurationSeconds` we write: how long others wait, after they last saw the Lease change, before taking it. */
  expiryMs: number;
  /** Renew this often while holding (and keep the Lease visibly alive). */
  renewEveryMs: number;
  /** A holder that could not renew for this long (by its own monotonic clock) treats the Lease as lost. */
  renewDeadlineMs: number;
  /** Wall-clock time, only for the Lease's `acquireTime`/`renewTime` fields (what people read). */
  clock: Clock;
  /** Every interval judged in process. Default `performance.now()`. */
  monotonic?: Monotonic;
  logger: Logger;
  /** Pause between retries of a transient error. Default 1 s. */
  retryMs?: number;
}

export type AcquireResult = { ok: true; name: string; detail: string } | { ok: false; detail: string };

interface Slot {
  name: string;
  lease: V1Lease | undefined;
}

/** A slot someone holds, as seen by this agent. */
export interface HeldSlot {
  name: string;
  holder: string;
  /** By this agent's observation; false until it has watched the Lease stand still for its duration. */
  expired: boolean;
}

export class RebootLease {
  private held: string | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  /** Monotonic time of our last successful renewal (or acquisition). */
  private lastRenewed = 0;
  /** Per Lease name: the resourceVersion last seen and when (monotonic) it was first seen. */
  private readonly observed = new Map<string, { rv: string; at: number }>();
  private readonly mono: Monotonic;

  constructor(private readonly o: LeaseOptions) {
    this.mono = o.monotonic ?? monotonicNow;
  }

  /** The Lease we hold, if any. */
  get name(): string | undefined {
    return this.held;
  }

  private get retryMs(): number {
    return this.o.retryMs ?? 1000;
  }

  private slotNames(): string[] {
    return Array.from({ length: this.o.slots }, (_, i) => `${LEASE_PREFIX}${i}`);
  }

  /** Records that we saw `lease` now; a new resourceVersion restarts its expiry countdown. */
  private observe(name: string, lease: V1Lease | undefined): void {
    const rv = lease?.metadata?.resourceVersion;
    if (!lease || !rv) {
      this.observed.delete(name);
      return;
    }
    const prev = this.observed.get(name);
    if (!prev || prev.rv !== rv) this.observed.set(name, { rv, at: this.mono() });
  }

  /** How long until `lease` may be taken over, by our observation (<= 0: expired). */
  private remainingMs(name: string, lease: V1Lease): number {
    const seen = this.observed.get(name);
    const duration = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    if (!seen) return duration;
    return seen.at + duration - this.mono();
  }

  private async readSlots(): Promise<Slot[]> {
    const out: Slot[] = [];
    for (const name of this.slotNames()) {
      let lease: V1Lease | undefined;
      try {
        lease = await this.o.api.readLease(this.o.namespace, name);
      } catch (e) {
        if (!isStatus(e, 404)) throw e;
      }
      this.observe(name, lease);
      out.push({ name, lease });
    }
    return out;
  }

  /** The slots someone holds now (API errors propagate). The storm guard counts their holders as out. */
  async heldSlots(): Promise<HeldSlot[]> {
    const slots = await this.readSlots();
    return slots
      .filter((s) => !!s.lease?.spec?.holderIdentity)
      .map((s) => ({ name: s.name, holder: s.lease!.spec!.holderIdentity!, expired: this.remainingMs(s.name, s.lease!) <= 0 }));
  }

  private spec(now: number, acquired: number, transitions: number): V1Lease['spec'] {
    return {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.o.expiryMs / 1000)),
      acquireTime: new MicroTime(acquired),
      renewTime: new MicroTime(now),
      leaseTransitions: transitions,
    };
  }

  /** Which slot holds our identity now (after a restart or the reboot, the Lease is still ours). */
  async findOwn(): Promise<string | undefined> {
    const slots = await this.readSlots();
    return slots.find((s) => s.lease?.spec?.holderIdentity === this.o.identity)?.name;
  }

  /**
   * Takes a free or expired Lease, or confirms one we already hold. API errors propagate: the caller
   * treats them as "not safe" (and retries later).
   */
  async acquire(): Promise<AcquireResult> {
    const now = this.o.clock.now();
    const slots = await this.readSlots();
    const mine = slots.find((s) => s.lease?.spec?.holderIdentity === this.o.identity);
    if (mine) {
      this.held = mine.name;
      this.lastRenewed = this.mono();
      if ((await this.renew()) === 'renewed') return { ok: true, name: mine.name, detail: `lease ${this.o.namespace}/${mine.name} is already ours; renewed` };
      this.held = undefined;
    }
    const busy: string[] = [];
    for (const { name, lease } of slots) {
      if (!lease) {
        try {
          await this.o.api.createLease(this.o.namespace, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: this.o.namespace }, spec: this.spec(now, now, 0) });
          return this.took(name, 'created');
        } catch (e) {
          if (isStatus(e, 409)) {
            busy.push(`${name} (just taken by another node)`);
            continue;
          }
          throw e;
        }
      }
      const holder = lease.spec?.holderIdentity;
      const left = holder ? this.remainingMs(name, lease) : 0;
      if (holder && left > 0) {
        busy.push(`${name} held by ${holder} (taken over only if it stays unchanged for ${formatDuration(left)} more)`);
        continue;
      }
      try {
        await this.o.api.replaceLease(this.o.namespace, name, {
          ...lease,
          metadata: { ...lease.metadata, name, namespace: this.o.namespace },
          spec: this.spec(now, now, (lease.spec?.leaseTransitions ?? 0) + (holder && holder !== this.o.identity ? 1 : 0)),
        });
        return this.took(name, holder ? `taken over from ${holder}, whose lease stood unchanged for its whole duration (${formatDuration((lease.spec?.leaseDurationSeconds ?? 0) * 1000)})` : 'taken (it was free)');
      } catch (e) {
        if (isStatus(e, 409)) {
          busy.push(`${name} (just taken by another node)`);
          continue;
        }
        throw e;
      }
    }
    return {
      ok: false,
      detail: `lease: all ${this.o.slots} reboot leases in ${this.o.namespace} are held (remediation.maxConcurrentReboots is ${this.o.slots}): ${busy.join('; ')}`,
    };
  }

  private took(name: string, how: string): AcquireResult {
    this.held = name;
    this.lastRenewed = this.mono();
    this.o.logger.info({ lease: `${this.o.namespace}/${name}` }, `reboot lease ${how}`);
    return { ok: true, name, detail: `lease ${this.o.namespace}/${name} ${how}` };
  }

  /** Adopts a Lease found by `findOwn` after a restart, without touching it. */
  adopt(name: string): void {
    this.held = name;
    this.lastRenewed = this.mono();
  }

  /** One attempt: `renewed`, `lost` (not ours any more), or `unknown` (the API did not say; transient). */
  private async renewOnce(): Promise<'renewed' | 'lost' | 'unknown'> {
    const name = this.held;
    if (!name) return 'lost';
    for (let attempt = 0; attempt < 3; attempt++) {
      let lease: V1Lease;
      try {
        lease = await this.o.api.readLease(this.o.namespace, name);
      } catch (e) {
        if (isStatus(e, 404)) return 'lost';
        this.o.logger.warn({ err: (e as Error).message }, 'cannot read the reboot lease to renew it');
        return isTransient(e) ? 'unknown' : 'lost';
      }
      if (lease.spec?.holderIdentity !== this.o.identity) return 'lost';
      const now = this.o.clock.now();
      try {
        const updated = await this.o.api.replaceLease(this.o.namespace, name, {
          ...lease,
          spec: { ...lease.spec, renewTime: new MicroTime(now), acquireTime: new MicroTime(timeOf(lease.spec?.acquireTime) ?? now), leaseDurationSeconds: Math.max(1, Math.ceil(this.o.expiryMs / 1000)) },
        });
        this.observe(name, updated);
        this.lastRenewed = this.mono();
        return 'renewed';
      } catch (e) {
        if (isStatus(e, 409)) continue;
        this.o.logger.warn({ err: (e as Error).message }, 'cannot renew the reboot lease');
        return isTransient(e) ? 'unknown' : 'lost';
      }
    }
    return 'unknown';
  }

  /**
   * Renews the held Lease, retrying transient errors until `renewDeadlineMs` after the last successful
   * renewal. `renewed`, or `lost` (someone else holds it, or the deadline passed without an answer).
   */
  async renew(): Promise<'renewed' | 'lost'> {
    for (;;) {
      const r = await this.renewOnce();
      if (r !== 'unknown') return r;
      if (this.mono() - this.lastRenewed >= this.o.renewDeadlineMs) return 'lost';
      await new Promise((res) => setTimeout(res, Math.min(this.retryMs, Math.max(0, this.o.renewDeadlineMs - (this.mono() - this.lastRenewed)))));
    }
  }

  /**
   * Renews every `renewEveryMs`. `onLost` is called once, and renewal stops, when the Lease is held by
   * someone else, or (unless `keepTrying`) when it could not be renewed within `renewDeadlineMs`.
   * With `keepTrying` (after the reboot) an unreachable API only logs: the long expiry protects the slot.
   */
  startRenewing(onLost: (why: string) => void, opts: { keepTrying?: boolean } = {}): void {
    this.stopRenewing();
    const every = Math.max(100, this.o.renewEveryMs);
    let warned = false;
    const tick = async (): Promise<void> => {
      if (!this.held || !this.renewTimer) return;
      const r = await this.renewOnce();
      if (!this.renewTimer) return;
      const late = this.mono() - this.lastRenewed >= this.o.renewDeadlineMs;
      if (r === 'lost' || (r === 'unknown' && late && !opts.keepTrying)) {
        const name = this.held;
        this.stopRenewing();
        onLost(r === 'lost' ? `reboot lease ${this.o.namespace}/${name} is no longer ours` : `reboot lease ${this.o.namespace}/${name} could not be renewed for ${formatDuration(this.mono() - this.lastRenewed)}`);
        return;
      }
      if (r === 'unknown' && late && !warned) {
        warned = true;
        this.o.logger.warn(`reboot lease ${this.o.namespace}/${this.held} not renewed for ${formatDuration(this.mono() - this.lastRenewed)} (API unreachable); still holding it, retrying`);
      }
      if (r === 'renewed') warned = false;
      this.renewTimer = setTimeout(() => void tick(), every);
      this.renewTimer.unref();
    };
    this.renewTimer = setTimeout(() => void tick(), every);
    this.renewTimer.unref();
  }

  stopRenewing(): void {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
  }

  /** Forgets the held Lease without touching it (the agent stops; the plan on disk knows it). */
  forget(): void {
    this.stopRenewing();
    this.held = undefined;
  }

  /**
   * Gives the Lease back (holder cleared, so the next node need not wait for expiry) if it is still
   * ours. Returns what happened, for the event. API errors propagate (the caller keeps its plan and
   * tries again).
   */
  async release(): Promise<'released' | 'not-ours' | 'none'> {
    this.stopRenewing();
    const name = this.held ?? (await this.findOwn());
    if (!name) {
      this.held = undefined;
      return 'none';
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      let lease: V1Lease;
      try {
        lease = await this.o.api.readLease(this.o.namespace, name);
      } catch (e) {
        if (isStatus(e, 404)) {
          this.held = undefined;
          return 'none';
        }
        throw e;
      }
      if (lease.spec?.holderIdentity !== this.o.identity) {
        this.held = undefined;
        return 'not-ours';
      }
      const now = this.o.clock.now();
      try {
        await this.o.api.replaceLease(this.o.namespace, name, {
          ...lease,
          spec: { leaseDurationSeconds: 1, renewTime: new MicroTime(now), leaseTransitions: lease.spec?.leaseTransitions ?? 0 },
        });
        this.held = undefined;
        this.o.logger.info({ lease: `${this.o.namespace}/${name}` }, 'reboot lease released');
        return 'released';
      } catch (e) {
        if (isStatus(e, 409)) continue;
        throw e;
      }
    }
    throw new Error(`lease ${this.o.namespace}/${name}: kept conflicting while releasing it`);
  }
}
