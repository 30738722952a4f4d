import { containerdCheck } from './containerd.js';
import { diskCheck } from './disk.js';
import { dockerCheck } from './docker.js';
import { kubeletCheck } from './kubelet.js';
import { loadCheck } from './load.js';
import { nodeReadyCheck } from './node-ready.js';
import { plegCheck } from './pleg.js';
import { stuckPodsCheck } from './stuck-pods.js';
import { systemdCheck } from './systemd.js';
import { systemdVersionCheck } from './systemd-version.js';
import type { CheckDefinition } from './types.js';

/** Every check nodemedic knows, in the order they are reported. Adding a check: add it here. */
export const CHECK_DEFINITIONS: readonly CheckDefinition<any>[] = [
  diskCheck,
  loadCheck,
  plegCheck,
  kubeletCheck,
  dockerCheck,
  containerdCheck,
  systemdVersionCheck,
  systemdCheck,
  nodeReadyCheck,
  stuckPodsCheck,
];

export function findCheck(id: string): CheckDefinition<any> | undefined {
  return CHECK_DEFINITIONS.find((d) => d.id === id);
}
