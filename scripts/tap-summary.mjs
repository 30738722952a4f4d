// Prints tap's closing summary as the plain line CI systems read: "N passed, N failed[, N skipped]".
import { readFileSync } from 'node:fs';
const log = readFileSync(process.argv[2], 'utf8');
const m = [...log.matchAll(/^# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?(?:, skip: (\d+))?.*\}$/gm)].pop();
if (!m) {
  console.log('tests: 0 passed, 1 failed (no tap summary found)');
  process.exit(1);
}
const [, , pass, fail = '0', skip = '0'] = m;
console.log(`tests: ${pass} passed, ${fail} failed, ${skip} skipped`);
