/** Exit codes from docs/CONTRACT.md (sysexits.h for usage and config). */
export const EXIT = {
  ok: 0,
  problem: 1,
  unknown: 2,
  usage: 64,
  /** EX_UNAVAILABLE: what the command needs is not set up here (Kubernetes access not configured). */
  unavailable: 69,
  /** EX_SOFTWARE: a bug; the message says what, without a stack unless NODEMEDIC_DEBUG is set. */
  software: 70,
  config: 78,
} as const;

/**
 * The command needs something this node's configuration does not provide (a kubeconfig for the
 * cluster commands). Not an invalid config: the embedded defaults are valid, they just have none.
 */
export class NotConfiguredError extends Error {
  override name = 'NotConfiguredError';
}

/** A bad command line; the message names the offending flag. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** An invalid configuration; each problem names its key path (`checks.disk.maxUsedPercent: must be <= 100`). */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid config ${source}:\n  ${problems.join('\n  ')}`);
  }
}
