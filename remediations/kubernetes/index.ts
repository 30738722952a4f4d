/**
 * The Kubernetes side of nodemedic, for the agent: the ladder's drain-reboot step, post-boot
 * recovery, Node conditions and events. With no Kubernetes access configured it still provides the
 * DrainRebooter, which then only records the request (or reboots without a drain when
 * `remediation.rebootWithoutDrain` is set).
 *
 * Wiring (agent/agent.ts):
 *   const k8s = createKubernetesIntegration({ config, host, logger, clock, recordAction });
 *   createRemediator({ ..., drainRebooter: k8s.drainRebooter });
 *   await k8s.onStartup();         // once, before the first sweep: finishes or rolls back what was in flight
 *   void k8s.afterSweep(results);  // after every full sweep: conditions, recovery after a boot (never overlaps)
 *   k8s.status();                  // for /status
 *   await k8s.stop();              // on shutdown and before a config reload
 * Nothing is loaded or connected until the first API call (client-node takes about a second to load).
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../../platform/clock.js';
import type { RemediationConfig as Config } from '../config.js';
import type { Host } from '../../platform/host.js';
import type { CheckResult } from '../../checks/types.js';
import type { ActionRecorder } from '../types.js';
import { kubeAccessKind, lazyKubeAccess, lazyKubeApi, type ConnectOptions, type KubeAccess, type KubeAccessSource } from '../../platform/kube-client.js';
import { DrainRebootController, type EpisodeEnd, type Tuning } from './rebooter.js';

export { connectKubernetes, KubeApiError, type KubeAccess, type KubeApi } from '../../platform/kube-client.js';
export { DrainRebootController, type DrainRebootResult, type EpisodeEnd, type Tuning } from './rebooter.js';

export interface KubernetesIntegrationDeps {
  config: Config;
  host: Host;
  logger: Logger;
  clock?: Clock;
  recordAction: ActionRecorder;
  /** Default: `/proc/sys/kernel/random/boot_id` through the host. */
  readBootId?: () => Promise<string>;
  tuning?: Tuning;
  onEpisodeEnd?: (end: EpisodeEnd) => void;
  connect?: ConnectOptions;
  /** A shared, lazily connecting access for `kubernetes.kubeconfig` (the agent's); default a new one. */
  access?: KubeAccessSource;
  /** Already connected access (tests, the CLI); `null`: none. Overrides `kubernetes.kubeconfig`. */
  kube?: KubeAccess | null;
}

export interface KubernetesIntegration {
  /** `kubeconfig FILE`, `in-cluster` or `none`. */
  readonly access: string;
  readonly drainRebooter: DrainRebootController;
  /** Resumes after a restart or a reboot. Never throws. */
  onStartup(): Promise<void>;
  /** Node conditions and recovery; call after every full sweep. Never throws. */
  afterSweep(results: readonly CheckResult[]): Promise<void>;
  /** Same as `afterSweep`, under the name the conditions are known by. */
  publishConditions(results: readonly CheckResult[]): Promise<void>;
  status(): Record<string, unknown>;
  stop(): Promise<void>;
}

/**
 * Builds the controller for `kubernetes.kubeconfig` (a file), the in-cluster ServiceAccount, or none.
 * Synchronous: the connection is made on the first API call, and a broken kubeconfig makes those calls
 * fail (guards then refuse, naming `kubernetes.kubeconfig`) rather than the agent fail to start.
 */
export function createKubernetesIntegration(deps: KubernetesIntegrationDeps): KubernetesIntegration {
  let kube: KubeAccess | undefined;
  if (deps.kube !== undefined) {
    kube = deps.kube ?? undefined;
  } else {
    const kind = kubeAccessKind(deps.config.kubernetes.kubeconfig, deps.connect?.env);
    if (kind) kube = { source: kind, api: lazyKubeApi(deps.access ?? lazyKubeAccess(deps.config.kubernetes.kubeconfig, deps.connect), kind) };
  }
  const logger = deps.logger.child({ component: 'kubernetes' });
  if (kube) logger.info({ access: kube.source }, 'Kubernetes access configured');
  else logger.info('no Kubernetes access (kubernetes.kubeconfig empty, not in a pod): drain, cordon, conditions and events are off');
  const controller = new DrainRebootController({
    config: deps.config,
    host: deps.host,
    logger,
    clock: deps.clock ?? systemClock,
    recordAction: deps.recordAction,
    kube,
    ...(deps.readBootId ? { readBootId: deps.readBootId } : {}),
    ...(deps.tuning ? { tuning: deps.tuning } : {}),
    ...(deps.onEpisodeEnd ? { onEpisodeEnd: deps.onEpisodeEnd } : {}),
  });
  return {
    access: kube?.source ?? 'none',
    drainRebooter: controller,
    onStartup: () => controller.onStartup(),
    afterSweep: (r) => controller.afterSweep(r),
    publishConditions: (r) => controller.afterSweep(r),
    status: () => controller.status(),
    stop: () => controller.stop(),
  };
}
