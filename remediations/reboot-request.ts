import type { Logger } from 'pino';
import type { ActionRecorder, DrainRebooter } from './types.js';

/**
 * The ladder's last step without Kubernetes access: it only asks for a reboot. Rebooting a node
 * without draining it first drops every pod on it (RUNBOOK: drain first), so without a way to drain
 * nothing destructive happens here; the request shows in `/status` (`rebootRequested`), the metric
 * `nodemedic_remediation_actions_total{action="reboot",result="skipped"}` and the log, for an
 * operator (or the Kubernetes side, issue 5) to act on.
 */
export function createRebootRequester(logger: Logger, recordAction: ActionRecorder): DrainRebooter {
  return {
    async requestDrainReboot({ episodeId, reason, dryRun }) {
      if (dryRun) {
        recordAction('reboot', 'dry_run');
        return { result: 'dry_run', detail: 'dry-run: would request a drain and reboot (without Kubernetes access only the request is recorded)' };
      }
      const detail = 'reboot requested, not performed: there is no Kubernetes access to drain the node first; drain it and reboot it by hand, or configure kubernetes.kubeconfig';
      logger.warn({ episodeId, reason }, detail);
      recordAction('reboot', 'skipped');
      return { result: 'skipped', detail };
    },
  };
}
