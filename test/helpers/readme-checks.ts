import type { CheckDefinition } from '../../checks/types.js';

/** The rows of README.md's `## Checks` table: the id (first column) and every `Reason` of the last. */
export function readmeChecksTable(readme: string): { id: string; reasons: string[] }[] {
  const section = readme.split(/^## /m).find((s) => s.startsWith('Checks\n'));
  if (!section) throw new Error('README.md has no "## Checks" section');
  return section
    .split('\n')
    .filter((l) => /^\| `[^`]+` \|/.test(l))
    .map((l) => {
      const cells = l.split('|').slice(1, -1);
      const id = /`([^`]+)`/.exec(cells[0]!)![1]!;
      const reasons = [...cells[cells.length - 1]!.matchAll(/`([A-Z][A-Za-z]+)`/g)].map((m) => m[1]!);
      return { id, reasons };
    });
}

/**
 * Where the README's checks table and the registry disagree; empty when they agree. The table's prose
 * (when a check says `problem`) is written by hand; its rows, their order and the reasons are held to
 * what each check declares.
 */
export function readmeChecksTableProblems(readme: string, defs: readonly CheckDefinition<any>[]): string[] {
  const rows = readmeChecksTable(readme);
  const out: string[] = [];
  for (const d of defs) {
    const row = rows.find((r) => r.id === d.id);
    if (!row) {
      out.push(`check ${d.id} is registered but has no row in README.md's checks table (reasons: ${(d.reasons ?? []).join(', ')})`);
      continue;
    }
    const declared = [...(d.reasons ?? [])].sort();
    const listed = [...row.reasons].sort();
    for (const r of declared.filter((x) => !listed.includes(x))) out.push(`check ${d.id}: reason ${r} is missing from README.md's table`);
    for (const r of listed.filter((x) => !declared.includes(x))) out.push(`check ${d.id}: README.md lists reason ${r}, which the check does not declare`);
  }
  for (const r of rows) if (!defs.some((d) => d.id === r.id)) out.push(`README.md's checks table has a row for ${r.id}, which is not registered`);
  const common = rows.map((r) => r.id).filter((id) => defs.some((d) => d.id === id));
  const registered = defs.map((d) => d.id).filter((id) => common.includes(id));
  if (common.join() !== registered.join()) out.push(`README.md's checks table is not in the registry's order (${registered.join(', ')})`);
  return out;
}
