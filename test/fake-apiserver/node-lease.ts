/**
 * A kubelet's node heartbeat for the fake API server: the Lease `kube-node-lease/<node>` that kubelet
 * renews every 10 s (here every `everyMs`), with `renewTime` a MicroTime as the real API server
 * requires, written as the kubelet's update would be (watchers of the lease see each renewal).
 * `stop()` is a kubelet that lost its connection: the lease stands still.
 * Reference: https://kubernetes.io/docs/concepts/architecture/leases/#node-heart-beats
 */
import type { FakeApiServer } from './server.js';

function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class NodeLeaseRenewer {
  private timer: NodeJS.Timeout | undefined;
  renewals = 0;

  constructor(
    private readonly fake: FakeApiServer,
    readonly node: string,
    private readonly everyMs = 200,
  ) {}

  /** Renews once now (creating the lease the first time), then every `everyMs`. */
  start(): void {
    this.renew();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.renew(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  renew(): void {
    // Through the server's own write path: a resourceVersion from its sequence, an event to watchers.
    this.fake.writeLease({
      metadata: { name: this.node, namespace: 'kube-node-lease' },
      spec: { holderIdentity: this.node, leaseDurationSeconds: 40, renewTime: microTime(Date.now()) },
    });
    this.renewals++;
  }
}
