/** Exit codes from SPEC.md (sysexits.h for usage and config). */
export const EXIT = {
  ok: 0,
  problem: 1,
  unknown: 2,
  usage: 64,
  config: 78,
} as const;

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
