import { configOption, type CommandSpec, type ParsedArgs } from './cli-types.js';
import { loadConfig } from './config.js';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { EXIT, UsageError } from '../platform/errors.js';
import { clearPause, pausePath, readPause, writePause } from '../remediations/pause.js';

/** Failure to write the pause file (EX_CANTCREAT). */
const EXIT_CANTCREAT = 73;

function stateDirOf(args: ParsedArgs): string {
  return loadConfig(args.values.config as string | undefined).config.stateDir;
}

/**
 * `nodemedic pause`: the agent keeps checking and reporting but takes no remediation action. The
 * pause is a file in `stateDir` that the running agent reads before every decision (no HTTP
 * endpoint mutates anything), so it also holds across agent restarts.
 */
export const pauseCommand: CommandSpec = {
  name: 'pause',
  summary: 'stop remediation actions (checks and reporting go on), for a while or until `resume`',
  usage: 'nodemedic pause [--for DURATION] [--reason TEXT] [--config F]',
  options: { ...configOption, for: { type: 'string' }, reason: { type: 'string' } },
  async run(args, io) {
    let forMs: number | null = null;
    if (args.values.for !== undefined) {
      try {
        forMs = parseDuration(String(args.values.for));
      } catch (e) {
        throw new UsageError(`--for: ${(e as Error).message}`);
      }
      if (forMs <= 0) throw new UsageError(`--for: must be longer than 0, got ${JSON.stringify(args.values.for)}`);
    }
    const reason = typeof args.values.reason === 'string' ? args.values.reason.trim() : '';
    if (reason.length > 500) throw new UsageError(`--reason: at most 500 characters, got ${reason.length}`);
    const stateDir = stateDirOf(args);
    const since = Date.now();
    const until = forMs === null ? null : since + forMs;
    try {
      await writePause(stateDir, { since, until, reason });
    } catch (e) {
      io.err(`nodemedic pause: cannot write ${pausePath(stateDir)}: ${(e as Error).message}\n`);
      return EXIT_CANTCREAT;
    }
    const howLong = until === null ? 'until `nodemedic resume`' : `for ${formatDuration(forMs!)} (until ${new Date(until).toISOString()})`;
    io.out(`remediation paused ${howLong}${reason ? `: ${reason}` : ''}\nchecks and reporting go on; the agent takes no action (see \`nodemedic status\`)\n`);
    return EXIT.ok;
  },
};

/** `nodemedic resume`: ends a pause; the ladder carries on at the agent's next decision. */
export const resumeCommand: CommandSpec = {
  name: 'resume',
  summary: 'end a `pause`: remediation acts again',
  usage: 'nodemedic resume [--config F]',
  options: { ...configOption },
  async run(args, io) {
    const stateDir = stateDirOf(args);
    const before = await readPause(stateDir);
    let removed: boolean;
    try {
      removed = await clearPause(stateDir);
    } catch (e) {
      io.err(`nodemedic resume: cannot remove ${pausePath(stateDir)}: ${(e as Error).message}\n`);
      return EXIT_CANTCREAT;
    }
    if (!removed) io.out('remediation was not paused\n');
    else if (before && before.until !== null && before.until <= Date.now()) io.out('remediation resumed (the pause had already lapsed)\n');
    else io.out('remediation resumed\n');
    return EXIT.ok;
  },
};

export const REMEDIATION_COMMANDS: readonly CommandSpec[] = [pauseCommand, resumeCommand];
