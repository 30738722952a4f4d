/**
 * Child of the pleg-throughput step (bench/pleg-throughput.ts): the FileSource + classifier runs of that
 * step, in a process that the step starts with the unit's NODE_OPTIONS, so that the table also shows the
 * rate of the agent as it ships. argv: BUILT_FILE FOLLOWED_PATH RUNS. Prints one JSON line:
 * `{ ms, lines, unhealthy }` (per run: milliseconds and lines read; unhealthy lines of the last run).
 */
import { classifyKubeletLine, isUnhealthyLabel } from '../checks/pleg-classify.js';
import { throughFileSource } from './pleg-throughput.js';

const [built, followed, runsArg] = process.argv.slice(2);
if (!built || !followed || !(Number(runsArg) > 0)) {
  process.stderr.write('usage: pleg-throughput-child BUILT_FILE FOLLOWED_PATH RUNS\n');
  process.exit(64);
}
const ms: number[] = [];
const lines: number[] = [];
let unhealthy = 0;
for (let i = 0; i < Number(runsArg); i++) {
  unhealthy = 0;
  const r = await throughFileSource(built, followed, (text) => {
    if (isUnhealthyLabel(classifyKubeletLine(text).label)) unhealthy++;
  });
  ms.push(r.ms);
  lines.push(r.lines);
}
process.stdout.write(`${JSON.stringify({ ms, lines, unhealthy })}\n`);
