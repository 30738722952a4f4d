#!/usr/bin/env node
/**
 * Finds file paths in the repository's code that point outside the checkout: a clone on another
 * machine has nothing beside it, so a test, benchmark or script that reads `../shared/...` or
 * `/work/...` fails there (issue 12). Docs are scanned too: a reference a clone cannot follow is dead. Run: `node scripts/outside-paths.mjs` (exit 1 and a list when
 * something is found); test/outside-paths.test.ts runs it in CI.
 *
 * What counts, and why it is not brittle:
 * - A relative path (`../x`, `'..'`) that leaves the checkout from every place it can be resolved
 *   from: the file's folder; for compiled code also its folder under `dist/` (so `agent/version.ts`
 *   may read `../../package.json`). In Markdown, where prose cannot say which folder it means, a
 *   `../` path must also name something that exists in the checkout.
 * - A relative path resolved against the repository root (`resolve(REPO_ROOT, '../x')`): leaves it by
 *   construction, whatever folder the file is in.
 * - An absolute path into a person's or a build machine's folders (`/work/`, `/home/`, `/Users/`,
 *   `/root/`), which no node and no clone has. Host paths the agent is about (`/proc/1/root/...`,
 *   `/var/lib/kubelet`, `/opt/nodemedic`) are the product, not the developer's machine, and stay allowed.
 * Data (`test/fixtures/corpus/`) is not code and is not scanned; nor are `node_modules`, `dist`, `.git`.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const CODE_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs', '.sh', '.json', '.yaml', '.yml', '.md']);
/** Extensionless files that are code. */
const CODE_FILES = new Set(['.ci/run', '.taprc']);
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', '.tap', 'tmp']);
const SKIP_PREFIXES = ['test/fixtures/corpus/'];
const SKIP_FILES = new Set(['package-lock.json']);
/** The rules and their tests name forbidden paths on purpose, as examples. */
const SELF = new Set(['scripts/outside-paths.mjs', 'test/outside-paths.test.ts']);

/** Every code file of the checkout, as repository-relative paths with `/`. */
export function codeFiles(root = REPO_ROOT) {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const abs = join(dir, e.name);
      const rel = relative(root, abs).split(sep).join('/');
      if (e.isDirectory()) {
        if (SKIP_DIRS.has(e.name) || e.name.startsWith('.tmp-')) continue;
        if (SKIP_PREFIXES.some((p) => `${rel}/`.startsWith(p))) continue;
        walk(abs);
      } else if (e.isFile() || (e.isSymbolicLink() && statSync(abs, { throwIfNoEntry: false })?.isFile())) {
        if (SKIP_FILES.has(e.name) || SELF.has(rel)) continue;
        if (CODE_EXTENSIONS.has(extname(e.name)) || CODE_FILES.has(rel)) out.push(rel);
      }
    }
  };
  walk(root);
  return out.sort();
}

// `..` starting a path: not part of a longer path (`a/..`), a word (`1..3`) or a spread (`...x`).
const RELATIVE = /(?<![\w./~$-])\.\.(?![.\w])(?:\/[\w.@+-]*)*/g;
// A relative path handed to resolve()/join() after something named like the repository root.
const FROM_ROOT = /\b\w*(?:ROOT|Root|root)\w*\s*,\s*['"`](\.\.(?:\/[^'"`]*)?)['"`]/g;
// Absolute paths into places only a developer's machine has.
const PERSONAL = /(?<![\w.})\]>*-])\/(?:work|home|Users|root)\/[^\s'"`)]*/g;

function lineOf(text, index) {
  return text.slice(0, index).split('\n').length;
}

/** Folders whose `.ts` files tsc compiles into `dist/` (tsconfig.json's `include`): they run from there. */
const COMPILED = ['platform/', 'agent/', 'checks/', 'remediations/', 'bench/'];

/** Where a relative path in `rel` may be resolved from: its folder, and for compiled code its folder under `dist/`. */
function bases(rel) {
  const dir = dirname(rel);
  if (rel.endsWith('.ts') && COMPILED.some((c) => rel.startsWith(c))) return [dir, join('dist', dir)];
  return [dir];
}

/**
 * The outside paths named in one file's text. `rel` is the file's repository-relative path; pure, so
 * the rules can be tested on made-up text.
 */
export function findOutsidePaths(rel, text, exists = (p) => existsSync(join(REPO_ROOT, p))) {
  const found = [];
  const inside = (p) => {
    const r = relative('/repo', resolve('/repo', p));
    return r === '' || (!r.startsWith('..') && !r.startsWith(sep));
  };
  for (const m of text.matchAll(RELATIVE)) {
    const token = m[0];
    if (!bases(rel).some((b) => inside(join(b, token)))) {
      found.push({ file: rel, line: lineOf(text, m.index), path: token, why: 'leaves the checkout' });
    } else if (rel.endsWith('.md') && !exists(join(dirname(rel), token))) {
      // Prose cannot say which folder it means; what a clone does not have is a dead reference either way.
      found.push({ file: rel, line: lineOf(text, m.index), path: token, why: 'names nothing in the checkout' });
    }
  }
  for (const m of text.matchAll(FROM_ROOT)) {
    found.push({ file: rel, line: lineOf(text, m.index), path: m[1], why: 'resolved against the repository root, so it leaves the checkout' });
  }
  for (const m of text.matchAll(PERSONAL)) {
    found.push({ file: rel, line: lineOf(text, m.index), path: m[0], why: "a path on a developer's machine" });
  }
  return found;
}

/** Every outside path in the checkout's code. */
export function scanRepository(root = REPO_ROOT) {
  return codeFiles(root).flatMap((rel) => findOutsidePaths(rel, readFileSync(join(root, rel), 'utf8')));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const found = scanRepository();
  for (const f of found) console.log(`${f.file}:${f.line}: ${f.path} (${f.why})`);
  process.exitCode = found.length ? 1 : 0;
}
