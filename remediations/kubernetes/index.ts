/**
 * The Kubernetes side of nodemedic, for the agent: the ladder's drain-reboot step, post-boot
 * recovery, Node conditions and events. With no Kubernetes access configured it still provides the
 * DrainRebooter, which then only records the request (or reboots without a drain when
 * `remediation.rebootWithoutDrain` is set).
 *
 * Wiring (agent/agent.ts):
 *   const k8s = await createKubernetesIntegration({ config, host, logger, clock, recordAction });
 *   new Agent({ ..., drainRebooter: k8s.drainRebooter });
 *   await k8s.onStartup();          // once, before the first sweep: finishes or rolls back what was in flight
 *   await k8s.afterSweep(results);  // after every full sweep: conditions, recovery after a boot
 *   k8s.status();                   // for /status
 *   await k8s.stop();               // on shutdown
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../../agent/clock.js';
import type { Config } from '../../agent/config.js';
import type { Host } from '../../agent/host.js';
import type { CheckResult } from '../../checks/types.js';
import type { ActionRecorder } from '../types.js';
import { connectKubernetes, type ConnectOptions, type KubeAccess } from './client.js';
import { DrainRebootController, type EpisodeEnd, type Tuning } from './rebooter.js';

export { connectKubernetes, KubeApiError, type KubeAccess, type KubeApi } from './client.js';
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
  /** Already connected access (tests, the CLI); skips `connectKubernetes`. `null`: none. */
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
 * Connects (kubeconfig file, in-cluster, or none) and builds the controller. Throws an Error naming
 * `kubernetes.kubeconfig` when that file is set but unusable.
 */
export async function createKubernetesIntegration(deps: KubernetesIntegrationDeps): Promise<KubernetesIntegration> {
  const kube = deps.kube === undefined ? await connectKubernetes(deps.config.kubernetes.kubeconfig, deps.connect) : (deps.kube ?? undefined);
  const logger = deps.logger.child({ component: 'kubernetes' });
  if (kube) logger.info({ access: kube.source, server: kube.api.server }, 'Kubernetes access configured');
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
