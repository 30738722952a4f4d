/**
 * Cluster-wide reboot concurrency: at most `maxConcurrentReboots` nodes hold one of as many
 * `coordination.k8s.io/v1` Leases (`nodemedic-reboot-0`, `-1`, ...). A Lease is taken by create (409
 * AlreadyExists: someone was faster) or, when free or expired, by an update carrying the
 * resourceVersion we read (409 Conflict: someone was faster). The holder renews it; a holder that dies
 * stops renewing and its Lease can be taken over once `renewTime + leaseDurationSeconds` has passed, so
 * it blocks the fleet at most that long. Expiry is judged with this node's clock against the holder's
 * renewTime, as kured does: node clocks are assumed NTP-synchronised.
 * Lease fields: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/
 */
import type { V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.js';
import { formatDuration } from '../../platform/duration.js';
import { isStatus, type KubeApi } from '../../platform/kube-client.js';

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

export interface LeaseOptions {
  api: KubeApi;
  namespace: string;
  /** How many Leases (= nodes rebooting at once). */
  slots: number;
  /** Who we are in `holderIdentity`: the node name, so the same node finds its Lease after its reboot. */
  identity: string;
  durationMs: number;
  clock: Clock;
  logger: Logger;
}

export type AcquireResult = { ok: true; name: string; detail: string } | { ok: false; detail: string };

interface Slot {
  name: string;
  lease: V1Lease | undefined;
}

export class RebootLease {
  private held: string | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private lastRenewed = 0;

  constructor(private readonly o: LeaseOptions) {}

  /** The Lease we hold, if any. */
  get name(): string | undefined {
    return this.held;
  }

  private slotNames(): string[] {
    return Array.from({ length: this.o.slots }, (_, i) => `${LEASE_PREFIX}${i}`);
  }

  private async readSlots(): Promise<Slot[]> {
    const out: Slot[] = [];
    for (const name of this.slotNames()) {
      try {
        out.push({ name, lease: await this.o.api.readLease(this.o.namespace, name) });
      } catch (e) {
        if (!isStatus(e, 404)) throw e;
        out.push({ name, lease: undefined });
      }
    }
    return out;
  }

  private expiresAt(l: V1Lease): number {
    const renewed = timeOf(l.spec?.renewTime) ?? timeOf(l.spec?.acquireTime) ?? 0;
    return renewed + (l.spec?.leaseDurationSeconds ?? 0) * 1000;
  }

  private spec(now: number, acquired: number, transitions: number): V1Lease['spec'] {
    return {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.o.durationMs / 1000)),
      acquireTime: new MicroTime(acquired),
      renewTime: new MicroTime(now),
      leaseTransitions: transitions,
    };
  }

  /** Which slot names hold our identity now (after a restart, the Lease may still be ours). */
  async findOwn(): Promise<string | undefined> {
    const slots = await this.readSlots();
    return slots.find((s) => s.lease?.spec?.holderIdentity === this.o.identity)?.name;
  }

  /**
   * Takes a free or expired Lease, or renews one we already hold. API errors propagate: the caller
   * treats them as "not safe".
   */
  async acquire(): Promise<AcquireResult> {
    const now = this.o.clock.now();
    const slots = await this.readSlots();
    const mine = slots.find((s) => s.lease?.spec?.holderIdentity === this.o.identity);
    if (mine) {
      this.held = mine.name;
      if (await this.renew()) return { ok: true, name: mine.name, detail: `lease ${this.o.namespace}/${mine.name} is already ours; renewed` };
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
      const expires = this.expiresAt(lease);
      if (holder && expires > now) {
        busy.push(`${name} held by ${holder} for ${formatDuration(expires - now)} more unless renewed`);
        continue;
      }
      try {
        await this.o.api.replaceLease(this.o.namespace, name, {
          ...lease,
          metadata: { ...lease.metadata, name, namespace: this.o.namespace },
          spec: this.spec(now, now, (lease.spec?.leaseTransitions ?? 0) + (holder && holder !== this.o.identity ? 1 : 0)),
        });
        return this.took(name, holder ? `taken over from ${holder}, whose lease expired ${formatDuration(now - expires)} ago` : 'taken (it was free)');
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
    this.lastRenewed = this.o.clock.now();
    this.o.logger.info({ lease: `${this.o.namespace}/${name}` }, `reboot lease ${how}`);
    return { ok: true, name, detail: `lease ${this.o.namespace}/${name} ${how}` };
  }

  /** Adopts a Lease found by `findOwn` after a restart, without touching it. */
  adopt(name: string): void {
    this.held = name;
    this.lastRenewed = this.o.clock.now();
  }

  /** Renews the held Lease; false when it is no longer ours (or cannot be confirmed as ours). */
  async renew(): Promise<boolean> {
    const name = this.held;
    if (!name) return false;
    for (let attempt = 0; attempt < 3; attempt++) {
      let lease: V1Lease;
      try {
        lease = await this.o.api.readLease(this.o.namespace, name);
      } catch (e) {
        if (isStatus(e, 404)) return false;
        this.o.logger.warn({ err: (e as Error).message }, 'cannot read the reboot lease to renew it');
        return false;
      }
      if (lease.spec?.holderIdentity !== this.o.identity) return false;
      const now = this.o.clock.now();
      try {
        await this.o.api.replaceLease(this.o.namespace, name, {
          ...lease,
          spec: { ...lease.spec, renewTime: new MicroTime(now), acquireTime: new MicroTime(timeOf(lease.spec?.acquireTime) ?? now), leaseDurationSeconds: Math.max(1, Math.ceil(this.o.durationMs / 1000)) },
        });
        this.lastRenewed = now;
        return true;
      } catch (e) {
        if (isStatus(e, 409)) continue;
        this.o.logger.warn({ err: (e as Error).message }, 'cannot renew the reboot lease');
        return false;
      }
    }
    return false;
  }

  /**
   * Renews every third of the duration. `onLost` is called once when renewal fails for so long that
   * the Lease may have expired, or when it is found held by someone else.
   */
  startRenewing(onLost: (why: string) => void): void {
    this.stopRenewing();
    const every = Math.max(200, Math.floor(this.o.durationMs / 3));
    const tick = async (): Promise<void> => {
      if (!this.held) return;
      const ok = await this.renew();
      if (!this.renewTimer) return;
      if (!ok && this.o.clock.now() - this.lastRenewed >= this.o.durationMs - every) {
        this.stopRenewing();
        onLost(`reboot lease ${this.o.namespace}/${this.held} could not be renewed for ${formatDuration(this.o.clock.now() - this.lastRenewed)}`);
        return;
      }
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

  /**
   * Gives the Lease back (holder cleared, so the next node need not wait for expiry) if it is still
   * ours. Returns what happened, for the event.
   */
  async release(): Promise<'released' | 'not-ours' | 'none'> {
    this.stopRenewing();
    const name = this.held ?? (await this.findOwn());
    this.held = undefined;
    if (!name) return 'none';
    for (let attempt = 0; attempt < 3; attempt++) {
      let lease: V1Lease;
      try {
        lease = await this.o.api.readLease(this.o.namespace, name);
      } catch (e) {
        if (isStatus(e, 404)) return 'none';
        throw e;
      }
      if (lease.spec?.holderIdentity !== this.o.identity) return 'not-ours';
      const now = this.o.clock.now();
      try {
        await this.o.api.replaceLease(this.o.namespace, name, {
          ...lease,
          spec: { leaseDurationSeconds: 1, renewTime: new MicroTime(now), leaseTransitions: lease.spec?.leaseTransitions ?? 0 },
        });
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
