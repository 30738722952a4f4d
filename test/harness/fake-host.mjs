#!/usr/bin/env node
/**
 * A fake node behind `hostCommandPrefix` for fleet tests: the agent's host commands arrive here as
 * `node fake-host.mjs DIR <argv...>` and act only on files in DIR, never on this machine.
 *
 * - `[timeout ...] [env TZ=UTC] systemctl show --property=... -- UNIT`: a loaded, active unit whose
 *   start time is `DIR/boot-time` (written by the test at each simulated boot).
 * - `[timeout ...] systemctl restart -- UNIT`: recorded; the unit "restarts" (its start time moves).
 *   It cures nothing: the fault of these tests is cured only by a reboot.
 * - `systemctl reboot`: recorded and `DIR/reboot-requested` created (exclusively); the test, playing
 *   systemd and the machine, stops the agent, keeps it down, changes the boot id and starts it again.
 * Every command is appended to `DIR/commands.log` as one JSON line with its time.
 * Anything else fails (exit 1), so an unexpected command shows up in the agent's results.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, ...argv] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: fake-host.mjs DIR COMMAND...\n');
  process.exit(2);
}
appendFileSync(join(dir, 'commands.log'), `${JSON.stringify({ at: Date.now(), argv })}\n`);

let args = argv;
// timeout(1): options, then the duration.
if (args[0] === 'timeout') {
  args = args.slice(1);
  while (args[0]?.startsWith('-')) args = args[0] === '-k' || args[0] === '-s' ? args.slice(2) : args.slice(1);
  args = args.slice(1);
}
if (args[0] === 'env') {
  args = args.slice(1);
  while (args[0]?.includes('=')) args = args.slice(1);
}

function systemdTime(ms) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  return `${days[d.getUTCDay()]} ${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} UTC`;
}

function unitStart(unit) {
  const f = join(dir, `start-${unit}`);
  if (existsSync(f)) return Number(readFileSync(f, 'utf8'));
  const boot = join(dir, 'boot-time');
  return existsSync(boot) ? Number(readFileSync(boot, 'utf8')) : Date.now() - 3600_000;
}

if (args[0] !== 'systemctl') {
  process.stderr.write(`fake-host: not simulated: ${argv.join(' ')}\n`);
  process.exit(1);
}
const verb = args[1];
const unit = args.at(-1)?.replace(/\.service$/, '');
if (verb === 'show') {
  const start = unitStart(unit);
  const lines = [
    `Id=${unit}.service`,
    'LoadState=loaded',
    'ActiveState=active',
    'SubState=running',
    'Result=success',
    'MainPID=4242',
    'NRestarts=0',
    `ActiveEnterTimestamp=${systemdTime(start)}`,
    `InactiveExitTimestamp=${systemdTime(start)}`,
    `ExecMainStartTimestamp=${systemdTime(start)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  process.exit(0);
}
if (verb === 'restart') {
  writeFileSync(join(dir, `start-${unit}`), String(Date.now()));
  process.exit(0);
}
if (verb === 'reboot') {
  try {
    writeFileSync(join(dir, 'reboot-requested'), String(Date.now()), { flag: 'wx' });
  } catch {
    // A second request before the "machine" went down: systemd would take it as the same job.
  }
  process.exit(0);
}
process.stderr.write(`fake-host: systemctl ${verb}: not simulated\n`);
process.exit(1);
