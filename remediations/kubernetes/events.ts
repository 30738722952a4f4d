/**
 * Kubernetes Events on the Node for every action and refusal, so `kubectl describe node` tells the
 * story. core/v1 Events, as the kubelet writes them: for a cluster-scoped object they live in the
 * `default` namespace; `firstTimestamp`/`lastTimestamp` are set and `eventTime` is not (it would need
 * MicroTime precision and the `action`/`reportingController` fields of the events.k8s.io shape).
 * Reference: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/
 */
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.js';
import type { KubeApi } from '../../platform/kube-client.js';

/** Reasons nodemedic uses, UpperCamelCase and stable (tools filter on them; docs/CONTRACT.md lists them). */
export const EVENT_REASONS = [
  'NodemedicCordon',
  'NodemedicUncordon',
  'NodemedicDrainStarted',
  'NodemedicDrainSucceeded',
  'NodemedicDrainFailed',
  'NodemedicReboot',
  'NodemedicRebooted',
  'NodemedicRecovered',
  'NodemedicRecoveryFailed',
  'NodemedicRollback',
  'NodemedicGuardRefused',
  'NodemedicDryRun',
  'NodemedicRestart',
  'NodemedicRestartFailed',
  'NodemedicReexec',
  'NodemedicReexecFailed',
  'NodemedicStepSkipped',
  'NodemedicApprovalRequired',
  'NodemedicMaintenance',
  'NodemedicMaintenanceDone',
  'NodemedicMaintenanceFailed',
] as const;
export type EventReason = (typeof EVENT_REASONS)[number];

export interface NodeEvent {
  reason: EventReason;
  type: 'Normal' | 'Warning';
  message: string;
}

export class EventRecorder {
  private seq = 0;

  constructor(
    private readonly api: KubeApi,
    private readonly node: { name: string; uid?: string },
    private readonly clock: Clock,
    private readonly logger: Logger,
    /** `source.component`; the agent and the CLI say who they are. */
    private readonly component = 'nodemedic',
  ) {}

  /** Never throws: an event that cannot be written is logged, the action goes on. */
  async record(ev: NodeEvent): Promise<void> {
    const now = new Date(this.clock.now());
    // client-go names events `<object>.<unix nanos in hex>`; a counter keeps two in one ms apart.
    const name = `${this.node.name}.${(BigInt(now.getTime()) * 1_000_000n + BigInt(this.seq++ % 1_000_000)).toString(16)}`;
    const message = ev.message.length > 1024 ? `${ev.message.slice(0, 1021)}...` : ev.message;
    try {
      await this.api.createEvent('default', {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace: 'default' },
        involvedObject: { apiVersion: 'v1', kind: 'Node', name: this.node.name, ...(this.node.uid ? { uid: this.node.uid } : {}) },
        reason: ev.reason,
        message,
        type: ev.type,
        count: 1,
        firstTimestamp: now,
        lastTimestamp: now,
        source: { component: this.component, host: this.node.name },
        reportingComponent: this.component,
        reportingInstance: this.node.name,
      });
    } catch (e) {
      this.logger.warn({ reason: ev.reason, err: (e as Error).message }, 'cannot write a Kubernetes event');
    }
  }
}
