/**
 * test/fixtures/corpus is real data copied verbatim (PROVENANCE.md, SOURCES.md): every file still has
 * the bytes it was copied with, none is missing, and none was added without a checksum. A data line is
 * never edited to make a test pass; this is what makes that visible.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const dir = fileURLToPath(new URL('./fixtures/corpus/', import.meta.url));
const NOT_DATA = new Set(['CHECKSUMS.sha256', 'PROVENANCE.md']);

function files(d: string): string[] {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(d, e.name)) : [relative(dir, join(d, e.name)).split(sep).join('/')],
  );
}

t.test('every corpus file has the bytes it was copied with', async (t) => {
  const listed = new Map(
    readFileSync(join(dir, 'CHECKSUMS.sha256'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(l);
        if (!m) throw new Error(`CHECKSUMS.sha256: not "<sha256>  <path>": ${l}`);
        return [m[2]!, m[1]!] as const;
      }),
  );
  t.ok(listed.size >= 20, `the checksum list is the whole corpus (${listed.size} files)`);
  const present = files(dir).filter((f) => !NOT_DATA.has(f));
  t.same(present.filter((f) => !listed.has(f)), [], 'no file without a checksum');
  t.same([...listed.keys()].filter((f) => !present.includes(f)), [], 'no listed file missing');
  for (const f of present.filter((f) => listed.has(f))) {
    t.equal(createHash('sha256').update(readFileSync(join(dir, f))).digest('hex'), listed.get(f), f);
  }
});

t.test('SOURCES.md names every data file the tests read', async (t) => {
  const sources = readFileSync(join(dir, 'SOURCES.md'), 'utf8');
  for (const f of ['rpmvercmp.tsv', 'rpm-evr-compare.tsv', 'rpmvercmp-disabled-oddities.tsv', 'systemd-el7-versions.txt', 'systemctl-version', 'kubelet-pleg.tsv', 'kubelet-other.tsv', 'pleg-message-fragments.txt', 'journal-json-sample.jsonl']) {
    t.ok(sources.includes(f), `SOURCES.md says where ${f} came from`);
  }
});
