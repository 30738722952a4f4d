import type { Logger } from 'pino';
import type { Config } from '../agent/config.js';
import type { Host } from '../agent/host.js';
import type { CheckResult } from '../checks/types.js';
import type { ActionRecorder, DrainRebooter, Remediator } from './types.js';

/** What the agent hands the remediation component. */
export interface RemediatorDeps {
  config: Config;
  host: Host;
  logger: Logger;
  recordAction: ActionRecorder;
  /** The last step's implementation; without Kubernetes it only records a reboot request. */
  drainRebooter?: DrainRebooter;
  /** Runs the given checks now (outside the schedule) and returns their results; used to judge a step after settle. */
  requestSweep?: (only?: readonly string[]) => Promise<readonly CheckResult[]>;
}

// Placeholder until the ladder lands (issue 4): reports the mode, never acts.
export function createRemediator(deps: RemediatorDeps): Remediator {
  return {
    start: async () => {},
    afterSweep: async (_results: readonly CheckResult[]) => {},
    status: () => ({ mode: deps.config.remediation.mode, episode: null }),
    stop: async () => {},
  };
}
