import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** One row of test/fixtures/kernel/*.tsv. */
export interface KernelRow {
  label: string;
  line: string;
  source: string;
  note: string;
}

const DIR = fileURLToPath(new URL('../fixtures/kernel/', import.meta.url));

/** A TSV field, unquoted the CSV way (`"a ""b"""` → `a "b"`); the corpus quotes fields that hold `"`. */
function field(f: string): string {
  return f.length >= 2 && f.startsWith('"') && f.endsWith('"') ? f.slice(1, -1).replaceAll('""', '"') : f;
}

export function kernelRows(): KernelRow[] {
  const out: KernelRow[] = [];
  for (const file of ['kernel-lines.tsv', 'extra-lines.tsv']) {
    const lines = readFileSync(DIR + file, 'utf8').split('\n').slice(1);
    for (const l of lines) {
      if (!l) continue;
      const [label, line, source, note] = l.split('\t').map(field);
      if (!label || line === undefined || !source) throw new Error(`${file}: malformed row ${JSON.stringify(l.slice(0, 80))}`);
      out.push({ label, line, source, note: note ?? '' });
    }
  }
  return out;
}
