import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { containerdCheck } from './containerd.js';
import { diskCheck } from './disk.js';
import { dockerCheck } from './docker.js';
import { kernelCheck } from './kernel.js';
import { kubeletCheck } from './kubelet.js';
import { kubeletConnectionCheck } from './kubelet-connection.js';
import { loadCheck } from './load.js';
import { networkCheck } from './network.js';
import { nodeReadyCheck } from './node-ready.js';
import { overcommitCheck } from './overcommit.js';
import { plegCheck } from './pleg.js';
import { resourcesCheck } from './resources.js';
import { stuckPodsCheck } from './stuck-pods.js';
import { systemdCheck } from './systemd.js';
import { systemdVersionCheck } from './systemd-version.js';
import type { CheckDefinition } from './types.js';

/** The checks nodemedic ships, in the order they are reported. Adding a check: one line here. */
const BUILT_IN: readonly CheckDefinition<any>[] = [
  diskCheck,
  loadCheck,
  resourcesCheck,
  kernelCheck,
  plegCheck,
  kubeletCheck,
  dockerCheck,
  containerdCheck,
  systemdVersionCheck,
  systemdCheck,
  networkCheck,
  nodeReadyCheck,
  kubeletConnectionCheck,
  stuckPodsCheck,
  overcommitCheck,
];

/** Names extra check modules; see `loadExtraChecks`. */
export const EXTRA_CHECKS_ENV = 'NODEMEDIC_EXTRA_CHECKS';

/**
 * Check modules named in `$NODEMEDIC_EXTRA_CHECKS`: absolute paths separated by `:`, each module's
 * default export a CheckDefinition. For tests and for trying a check out without rebuilding; a node
 * whose service environment an attacker can set is lost anyway (NODE_OPTIONS does the same). Read once,
 * when this module loads: the config schema, the defaults and the metrics all derive from the list.
 * A bad entry throws at startup naming the variable, never a half-registered check.
 */
export async function loadExtraChecks(value: string | undefined): Promise<CheckDefinition<any>[]> {
  const out: CheckDefinition<any>[] = [];
  for (const path of (value ?? '').split(':').filter(Boolean)) {
    if (!isAbsolute(path)) throw new Error(`${EXTRA_CHECKS_ENV}: "${path}" is not an absolute path`);
    const mod = (await import(pathToFileURL(path).href)) as { default?: Partial<CheckDefinition<any>> };
    const def = mod.default;
    if (!def || typeof def.id !== 'string' || typeof def.create !== 'function' || !def.schema || !def.defaults) {
      throw new Error(`${EXTRA_CHECKS_ENV}: ${path} has no default export with id, schema, defaults and create()`);
    }
    out.push(def as CheckDefinition<any>);
  }
  return out;
}

function registry(defs: readonly CheckDefinition<any>[]): readonly CheckDefinition<any>[] {
  const seen = new Set<string>();
  for (const d of defs) {
    if (seen.has(d.id)) throw new Error(`two checks are named "${d.id}"`);
    seen.add(d.id);
  }
  return Object.freeze([...defs]);
}

/** Every check nodemedic knows, in the order they are reported: the built-in ones, then any extra. */
export const CHECK_DEFINITIONS: readonly CheckDefinition<any>[] = registry([...BUILT_IN, ...(await loadExtraChecks(process.env[EXTRA_CHECKS_ENV]))]);

export function findCheck(id: string): CheckDefinition<any> | undefined {
  return CHECK_DEFINITIONS.find((d) => d.id === id);
}

/** Checks whose problem no restart cures: reported, never a remediation trigger. */
export function neverTriggers(defs: readonly CheckDefinition<any>[] = CHECK_DEFINITIONS): string[] {
  return defs.filter((d) => !d.restartCures).map((d) => d.id);
}
