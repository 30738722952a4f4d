/**
 * docs/CONTRACT.md's configuration tables are the operator's reference: every key the agent accepts is
 * there with its default, so a key added (or a default changed) without the contract fails here.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import { remediationDefaults } from '../remediations/config.js';
import { resolveConfig } from '../agent/config.js';
import { EVENT_REASONS } from '../remediations/kubernetes/events.js';

const contract = readFileSync(new URL('../docs/CONTRACT.md', import.meta.url), 'utf8');

/** `| cell | cell |` rows of the first table whose header row starts with `header` (after the line starting with `after`). */
function table(header: string, after = ''): string[][] {
  const lines = contract.split('\n');
  const from = after ? lines.findIndex((l) => l.startsWith(after)) : 0;
  const at = from < 0 ? -1 : lines.findIndex((l, i) => i > from && l.startsWith(header));
  if (at < 0) return [];
  const rows: string[][] = [];
  for (const l of lines.slice(at + 2)) {
    if (!l.startsWith('|')) break;
    rows.push(l.slice(1, -1).split(' | ').map((c) => c.trim()));
  }
  return rows;
}

/** Leaf keys of a defaults object, dotted (`drain.timeout`); arrays and empty objects are leaves. */
function leaves(o: Record<string, unknown>, prefix = ''): [string, unknown][] {
  return Object.entries(o).flatMap(([k, v]) =>
    v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length ? leaves(v as Record<string, unknown>, `${prefix}${k}.`) : [[`${prefix}${k}`, v] as [string, unknown]],
  );
}

const shown = (v: unknown): string => (Array.isArray(v) ? `[${v.join(', ')}]` : v && typeof v === 'object' ? '{}' : String(v));
const plain = (cell: string): string => cell.replace(/[`"]/g, '').trim();

t.test('every remediation key is in the contract with its default', async (t) => {
  const byKey = new Map(table('| key | default | meaning |', '`remediation` (').map(([k, d]) => [plain(k!), plain(d!)]));
  t.ok(byKey.size > 20, `the remediation table was found (${byKey.size} rows)`);
  const keys = leaves(remediationDefaults as unknown as Record<string, unknown>);
  for (const [key, value] of keys) t.equal(byKey.get(key), shown(value), `remediation.${key}`);
  t.same([...byKey.keys()].filter((k) => !keys.some(([key]) => key === k)), [], 'no row for a key that does not exist');
});

t.test('every top-level and kubernetes key is in the contract with its default', async (t) => {
  const byKey = new Map(table('| key | default | meaning |').map(([k, d]) => [plain(k!), plain(d!)]));
  const defaults = resolveConfig({}, 'test') as unknown as Record<string, unknown>;
  for (const [key, value] of leaves({ kubernetes: defaults.kubernetes, log: defaults.log, http: defaults.http, schedule: defaults.schedule })) {
    t.equal(byKey.get(key), shown(value), key);
  }
});

t.test('every check option is in the contract, with its scalar default', async (t) => {
  const rows = new Map(table('| check | keys (default) |').map(([id, keys]) => [plain(id!), keys!]));
  t.same([...rows.keys()], CHECK_DEFINITIONS.map((d) => d.id), 'one row per check, in registry order');
  for (const d of CHECK_DEFINITIONS) {
    const row = rows.get(d.id) ?? '';
    for (const [key, value] of Object.entries(d.defaults as Record<string, unknown>)) {
      if (key === 'enabled') continue;
      t.match(row, `\`${key}\``, `checks.${d.id}.${key} is named`);
      if (typeof value === 'number' || (typeof value === 'string' && value !== '') || typeof value === 'boolean') {
        t.ok(row.includes(`\`${key}\` (${value}`) || row.includes(`\`${key}\` (\`${value}\``), `checks.${d.id}.${key}: default ${value}`);
      }
    }
  }
});

t.test('every Event reason is in the contract', async (t) => {
  const rows = table('| reason | type | when |').map(([r]) => r!).join(' ');
  for (const reason of EVENT_REASONS) t.match(rows, `\`${reason}\``, reason);
});
