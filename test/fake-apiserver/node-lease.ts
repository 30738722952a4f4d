/**
 * A kubelet's node heartbeat for the fake API server: the Lease `kube-node-lease/<node>` that kubelet
 * renews every 10 s (here every `everyMs`), with `renewTime` a MicroTime as the real API server
 * requires. `stop()` is a kubelet that lost its connection: the lease stands still.
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
    const k = `kube-node-lease/${this.node}`;
    const now = Date.now();
    const cur = this.fake.leases.get(k);
    const rv = String(Number(cur?.metadata?.resourceVersion ?? 5000) + 1);
    this.fake.leases.set(k, {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.node, namespace: 'kube-node-lease', resourceVersion: rv, ...(cur ? { uid: cur.metadata.uid } : { uid: `lease-${this.node}` }) },
      spec: { holderIdentity: this.node, leaseDurationSeconds: 40, renewTime: microTime(now) },
    });
    this.renewals++;
  }
}
