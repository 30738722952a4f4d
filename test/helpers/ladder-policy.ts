import { remediationDefaults } from '../../remediations/config.js';
import type { LadderPolicy } from '../../remediations/decide.js';

const MIN = 60_000;

/** The ladder's policy as the pure tests start from it (enforce, grace 1m, settle 2m, the default ladder), with `over`. */
export function testPolicy(over: Partial<LadderPolicy> = {}): LadderPolicy {
  return {
    mode: 'enforce',
    graceMs: 1 * MIN,
    settleMs: 2 * MIN,
    triggers: remediationDefaults.triggers,
    steps: remediationDefaults.steps,
    firstStep: {},
    restartsPerHour: 3,
    rebootsPerDay: 1,
    allowRuntimeRestartWithoutLiveRestore: false,
    units: { kubelet: 'kubelet', docker: 'docker', containerd: 'containerd' },
    pause: null,
    ...over,
  };
}
