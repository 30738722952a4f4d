import { statSync } from 'node:fs';
import { configOption, type CommandIO, type CommandSpec, type ParsedArgs } from './cli-types.js';
import { defaultStateDir, loadConfig } from './config.js';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { EXIT, UsageError } from '../platform/errors.js';
import { clearPause, pausePath, readPause, writePause } from '../remediations/pause.js';
import { approvalPath, writeApproval } from '../remediations/approval.js';
import { answerProposal, proposalOnNode } from '../remediations/kubernetes/approval.js';
import { readStateFile } from '../remediations/state.js';
import type { ApprovalAnswer } from '../remediations/types.js';
import { context, operatorName } from './cli-kubernetes.js';

/** Failure to write the pause file (EX_CANTCREAT). */
const EXIT_CANTCREAT = 73;

function stateDirOf(args: ParsedArgs): string {
  return loadConfig(args.values.config as string | undefined).config.stateDir;
}

/** The longest pause `--for` accepts: a pause meant to last longer is a pause until `resume`. */
const MAX_PAUSE_MS = 365 * 86_400_000;

/**
 * Why a pause written to `stateDir` would not reach the agent, or undefined when it would. An agent
 * that runs creates its stateDir, so a missing one means no agent uses it (a typo, or a machine
 * without the agent): writing there would report success for a pause nobody reads. And a non-root
 * user's embedded default is a per-user directory that the root agent never reads.
 */
function unreachableStateDir(stateDir: string, create: boolean): string | undefined {
  const uid = process.getuid?.();
  if (uid !== undefined && uid !== 0 && stateDir === defaultStateDir()) {
    return (
      `not running as root, so the state directory is the per-user default ${stateDir}, which an agent running ` +
      'as root does not read: run it as root (sudo nodemedic ...), or give --config with the agent\'s stateDir'
    );
  }
  let isDir: boolean;
  try {
    isDir = statSync(stateDir).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return undefined; // the write reports it
    if (create) return undefined;
    return `the state directory ${stateDir} does not exist, so no agent reads it (is nodemedic running on this node? it creates the directory on start); pass --create-state-dir to create it anyway`;
  }
  return isDir ? undefined : `the state directory ${stateDir} is not a directory`;
}

function refuse(io: CommandIO, cmd: string, why: string): number {
  io.err(`nodemedic ${cmd}: ${why}\n`);
  return EXIT_CANTCREAT;
}

/**
 * `nodemedic pause`: the agent keeps checking and reporting but takes no remediation action. The
 * pause is a file in `stateDir` that the running agent reads before every decision (no HTTP
 * endpoint mutates anything), so it also holds across agent restarts.
 */
export const pauseCommand: CommandSpec = {
  name: 'pause',
  summary: 'stop remediation actions (checks and reporting go on), for a while or until `resume`',
  usage: 'nodemedic pause [--for DURATION] [--reason TEXT] [--create-state-dir] [--config F]',
  options: { ...configOption, for: { type: 'string' }, reason: { type: 'string' }, 'create-state-dir': { type: 'boolean' } },
  async run(args, io) {
    let forMs: number | null = null;
    if (args.values.for !== undefined) {
      try {
        forMs = parseDuration(String(args.values.for));
      } catch (e) {
        throw new UsageError(`--for: ${(e as Error).message}`);
      }
      if (forMs <= 0) throw new UsageError(`--for: must be longer than 0, got ${JSON.stringify(args.values.for)}`);
      // Far beyond this, the end time is not a date at all ("Invalid time value").
      if (!(forMs <= MAX_PAUSE_MS)) {
        throw new UsageError(`--for: must be at most 365d (for longer, leave --for out: the pause then lasts until \`nodemedic resume\`), got ${JSON.stringify(String(args.values.for).slice(0, 40))}`);
      }
    }
    const reason = typeof args.values.reason === 'string' ? args.values.reason.trim() : '';
    if (reason.length > 500) throw new UsageError(`--reason: at most 500 characters, got ${reason.length}`);
    const stateDir = stateDirOf(args);
    const unreachable = unreachableStateDir(stateDir, args.values['create-state-dir'] === true);
    if (unreachable) return refuse(io, 'pause', unreachable);
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
    const uid = process.getuid?.();
    if (uid !== undefined && uid !== 0 && stateDir === defaultStateDir()) return refuse(io, 'resume', unreachableStateDir(stateDir, false)!);
    const before = await readPause(stateDir);
    // Nothing paused is nothing to do, also where nothing could be written (a read-only filesystem).
    if (before === null) {
      io.out('remediation was not paused\n');
      return EXIT.ok;
    }
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

/**
 * `nodemedic approve` / `reject` (`remediation.mode: approve`): answers the proposal waiting on this
 * node, by writing `approval.json` into stateDir for the agent to read, or with `--node` by annotating
 * that Node (any machine with the kubeconfig). `--id` makes sure the answer is for the proposal the
 * operator looked at: a proposal lapses and is replaced by one with a new id.
 */
function answerCommand(decision: ApprovalAnswer['decision']): CommandSpec {
  const name = decision === 'approve' ? 'approve' : 'reject';
  return {
    name,
    summary: decision === 'approve' ? 'remediation.mode approve: let the proposed action run (its guards and budgets still apply)' : 'remediation.mode approve: drop the proposed action (no new proposal until the fault clears)',
    usage: `nodemedic ${name} [--id PROPOSAL] [--node NAME] [--config F]`,
    options: { ...configOption, id: { type: 'string' }, node: { type: 'string' } },
    async run(args, io) {
      const want = typeof args.values.id === 'string' ? args.values.id : undefined;
      const by = operatorName(io.env);
      const mismatch = (current: string): string => `proposal ${JSON.stringify(want)} is not the one waiting (${current}); it lapsed or was answered: look again with \`nodemedic status\``;
      if (typeof args.values.node === 'string') {
        const ctx = await context(args, io);
        let shown;
        try {
          shown = proposalOnNode(await ctx.api.getNode(ctx.node));
          if (!shown) return refuseAnswer(io, name, `no proposal is waiting on node ${ctx.node}`);
          if ('error' in shown) return refuseAnswer(io, name, `node ${ctx.node}: ${shown.error}`);
          if (want && want !== shown.id) return refuseAnswer(io, name, mismatch(shown.id));
          await answerProposal(ctx.api, ctx.node, { id: shown.id, decision, by });
        } catch (e) {
          return refuseAnswer(io, name, `node ${ctx.node}: ${(e as Error).message}`);
        }
        io.out(`${decision === 'approve' ? 'approved' : 'rejected'} ${shown.id} (${shown.step}: ${shown.reason}) on node ${ctx.node}; its agent acts at its next sweep\n`);
        return EXIT.ok;
      }
      const { config } = loadConfig(args.values.config as string | undefined, io.env);
      const unreachable = unreachableStateDir(config.stateDir, false);
      if (unreachable) return refuse(io, name, unreachable);
      let proposal;
      try {
        proposal = (await readStateFile(config.stateDir)).proposal ?? null;
      } catch (e) {
        return refuseAnswer(io, name, `cannot read the agent's state in ${config.stateDir}: ${(e as Error).message}`);
      }
      if (!proposal) return refuseAnswer(io, name, `no proposal is waiting on this node (remediation.mode is ${config.remediation.mode}${config.remediation.mode === 'approve' ? '' : '; proposals exist only in mode approve'})`);
      if (want && want !== proposal.id) return refuseAnswer(io, name, mismatch(proposal.id));
      try {
        await writeApproval(config.stateDir, { id: proposal.id, decision, by }, Date.now());
      } catch (e) {
        io.err(`nodemedic ${name}: cannot write ${approvalPath(config.stateDir)}: ${(e as Error).message}\n`);
        return EXIT_CANTCREAT;
      }
      io.out(`${decision === 'approve' ? 'approved' : 'rejected'} ${proposal.id} (${proposal.step}: ${proposal.reason}); the agent acts at its next sweep (see \`nodemedic status\`)\n`);
      return EXIT.ok;
    },
  };
}

/** Nothing to answer, or not the proposal meant: nothing was written. */
function refuseAnswer(io: CommandIO, cmd: string, why: string): number {
  io.err(`nodemedic ${cmd}: ${why}\n`);
  return EXIT.problem;
}

export const approveCommand = answerCommand('approve');
export const rejectCommand = answerCommand('reject');

export const REMEDIATION_COMMANDS: readonly CommandSpec[] = [pauseCommand, resumeCommand, approveCommand, rejectCommand];
