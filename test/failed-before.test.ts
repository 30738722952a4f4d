// Issue 11's fleet faults, each a test that fails without its fix: the evidence is
// test/failed-before/RESULTS.md, made by scripts/failed-before.sh (30-60 minutes, not part of npm test).
// What npm test holds: every patch still applies to this tree (so the script can be run again at any
// commit), and the results name every patch as caught by its test.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const DIR = join(ROOT, 'test/failed-before');
const patches = readdirSync(DIR).filter((f) => f.endsWith('.patch')).sort();

t.test('each old behaviour still applies to this tree as a patch', async (t) => {
  t.ok(patches.length >= 10, `${patches.length} patches, one or more per item 1-10`);
  for (const p of patches) {
    const r = await run('git', ['apply', '--check', join(DIR, p)], { cwd: ROOT }).then(
      () => 'applies',
      (e: { stderr?: string }) => `does not apply: ${e.stderr ?? ''}`,
    );
    t.equal(r, 'applies', p);
  }
});

t.test('RESULTS.md records every patch as caught by its test', async (t) => {
  const results = readFileSync(join(DIR, 'RESULTS.md'), 'utf8');
  for (const p of patches) {
    const row = results.split('\n').find((l) => l.includes(`test/failed-before/${p}`));
    t.match(row, /\| fails, as it must \(\d+ failing assertions/, p);
  }
  const items = new Set([...results.matchAll(/^\| (\d+): /gm)].map((m) => Number(m[1])));
  t.same([...items].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'items 1-10 of issue 11, each with a row');
});
