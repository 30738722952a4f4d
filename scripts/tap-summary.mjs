// Prints tap's closing summary as the plain line CI systems read: "N passed, N failed[, N skipped]",
// preceded by every failing assertion with the path of subtests that leads to it and the start of its
// diagnostics. CI keeps only the tail of a long log, so a failure deep in a 6,000-test run would otherwise
// be reported as a count with no name.
import { readFileSync } from 'node:fs';

const log = readFileSync(process.argv[2], 'utf8');
const lines = log.split('\n');

/** Subtest names by nesting depth (4 spaces per level), as "# Subtest: NAME" announces them. */
const stack = [];
const failures = [];
for (let i = 0; i < lines.length; i++) {
  const line = lines[i];
  const sub = /^( *)# Subtest: (.*)$/.exec(line);
  if (sub) {
    const depth = sub[1].length / 4;
    stack.length = depth;
    stack[depth] = sub[2];
    continue;
  }
  const notOk = /^( *)not ok \d+ - (.*)$/.exec(line);
  if (!notOk) continue;
  const depth = notOk[1].length / 4;
  // A parent's own "not ok" only repeats its children's; report the leaves.
  const name = notOk[2].replace(/ # time=.*$/, '');
  const isParent = stack[depth] !== undefined && name === stack[depth] && hasChildFailure(failures, stack.slice(0, depth + 1));
  if (isParent) continue;
  const diag = [];
  for (let j = i + 1; j < lines.length && diag.length < 14; j++) {
    const d = lines[j];
    if (!d.startsWith(notOk[1] + '  ')) break;
    diag.push(d.slice(notOk[1].length));
  }
  failures.push({ path: [...stack.slice(0, depth), name].filter((s) => s !== undefined), diag });
}

function hasChildFailure(found, prefix) {
  return found.some((f) => f.path.length > prefix.length && prefix.every((p, k) => f.path[k] === p));
}

if (failures.length > 0) {
  console.log(`\nfailing assertions (${failures.length}):`);
  for (const f of failures.slice(0, 20)) {
    console.log(`- ${f.path.join(' > ')}`);
    for (const d of f.diag) console.log(`    ${d}`);
  }
  if (failures.length > 20) console.log(`- … and ${failures.length - 20} more in the log`);
}

const m = [...log.matchAll(/^# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?(?:, skip: (\d+))?.*\}$/gm)].pop();
if (!m) {
  console.log('tests: 0 passed, 1 failed (no tap summary found)');
  process.exit(1);
}
const [, , pass, fail = '0', skip = '0'] = m;
console.log(`tests: ${pass} passed, ${fail} failed, ${skip} skipped`);
