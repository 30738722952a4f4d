import { containerdCheck } from './containerd.js';
import { diskCheck } from './disk.js';
import { dockerCheck } from './docker.js';
import { kernelCheck } from './kernel.js';
import { kubeletCheck } from './kubelet.js';
import { kubeletConnectionCheck } from './kubelet-connection.js';
import { loadCheck } from './load.js';
import { nodeReadyCheck } from './node-ready.js';
import { plegCheck } from './pleg.js';
import { resourcesCheck } from './resources.js';
import { stuckPodsCheck } from './stuck-pods.js';
import { systemdVersionCheck } from './systemd-version.js';
import type { CheckDefinition } from './types.js';

/** Every check nodemedic knows, in the order they are reported. Adding a check: add it here. */
export const CHECK_DEFINITIONS: readonly CheckDefinition<any>[] = [
  diskCheck,
  loadCheck,
  resourcesCheck,
  kernelCheck,
  plegCheck,
  kubeletCheck,
  dockerCheck,
  containerdCheck,
  systemdVersionCheck,
  nodeReadyCheck,
  kubeletConnectionCheck,
  stuckPodsCheck,
];

export function findCheck(id: string): CheckDefinition<any> | undefined {
  return CHECK_DEFINITIONS.find((d) => d.id === id);
}
