import type { CheckResult } from '../checks/types.js';
import { EXIT } from '../platform/errors.js';

/** `check`'s exit code (node-problem-detector custom-plugin protocol): 0 ok, 1 a problem, 2 unknown only. */
export function exitCodeFor(results: readonly Pick<CheckResult, 'status'>[]): number {
  if (results.some((r) => r.status === 'problem')) return EXIT.problem;
  if (results.some((r) => r.status === 'unknown')) return EXIT.unknown;
  return EXIT.ok;
}

/** A plain-text table: one row per check, the message wrapped to the terminal width. */
export function formatTable(results: readonly CheckResult[], width = process.stdout.columns || 120): string {
  const rows = results.map((r) => [r.check, r.status.toUpperCase(), r.reason, r.message] as const);
  const head = ['CHECK', 'STATUS', 'REASON', 'MESSAGE'] as const;
  const w = [0, 1, 2].map((i) => Math.max(head[i]!.length, ...rows.map((r) => r[i]!.length)));
  const indent = w[0]! + w[1]! + w[2]! + 6;
  const msgWidth = Math.max(30, width - indent);
  const line = (cols: readonly string[]): string => {
    const msg = wrap(cols[3]!, msgWidth);
    const first = `${cols[0]!.padEnd(w[0]!)}  ${cols[1]!.padEnd(w[1]!)}  ${cols[2]!.padEnd(w[2]!)}  ${msg[0] ?? ''}`;
    return [first, ...msg.slice(1).map((m) => `${' '.repeat(indent)}${m}`)].join('\n');
  };
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let cur = '';
  for (const word of text.split(/\s+/)) {
    if (cur && cur.length + 1 + word.length > width) {
      out.push(cur);
      cur = word;
    } else cur = cur ? `${cur} ${word}` : word;
  }
  if (cur) out.push(cur);
  return out;
}
