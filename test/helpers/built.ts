import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

type Tap = { fail(...args: any[]): unknown };

/** The repository root (this file is test/helpers/built.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The compiled CLI, as `npm pack` ships it and systemd runs it. */
export const CLI_JS = join(REPO_ROOT, 'dist', 'agent', 'cli.js');

/**
 * True when `dist/` holds a compiled copy, no older than its source, of every module given
 * (repository-relative `.ts` paths). Tests that run the compiled agent (as a systemd service, from
 * an `npm pack` tarball) would otherwise test stale code; `npm test` builds first, a single
 * `npx tap test/x.test.ts` does not. Fails the test with the fix when not.
 */
export function requireBuilt(t: Tap, sources: readonly string[] = ['agent/cli.ts']): boolean {
  const stale: string[] = [];
  for (const src of sources) {
    const js = join(REPO_ROOT, 'dist', src.replace(/\.ts$/, '.js'));
    if (!existsSync(js)) stale.push(`${js} is missing`);
    else if (statSync(js).mtimeMs + 1 < statSync(join(REPO_ROOT, src)).mtimeMs) stale.push(`${js} is older than ${src}`);
  }
  if (!stale.length) return true;
  t.fail(`${stale.join('; ')}: run \`npm run build\` first (\`npm test\` does)`);
  return false;
}
