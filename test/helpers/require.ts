import { execFileSync } from 'node:child_process';

type Tap = { skip(...args: any[]): unknown; fail(...args: any[]): unknown };

/** Integration components must be present in CI; elsewhere their absence only skips. */
export const integrationRequired = process.env.CI === 'true' || process.env.NODEMEDIC_REQUIRE_INTEGRATION === '1';

export function which(cmd: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when every command in `commands` is on PATH (and we are root, which these tests need).
 * Otherwise skips the test with how to get them, or fails it when integration tests are required.
 */
export async function requireComponent(t: Tap, what: string, commands: readonly string[], needRoot = true): Promise<boolean> {
  const missing = commands.filter((c) => !which(c));
  const notRoot = needRoot && process.getuid?.() !== 0;
  if (!missing.length && !notRoot) return true;
  const why = notRoot ? `${what} tests need root` : `${what} needs ${missing.join(', ')}, not installed`;
  const msg = `${why}; run \`npm run test:setup\` (as root) to install it`;
  if (integrationRequired) t.fail(`${msg} (CI=true or NODEMEDIC_REQUIRE_INTEGRATION=1: absent components fail)`);
  else t.skip(msg);
  return false;
}
