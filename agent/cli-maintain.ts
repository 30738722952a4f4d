/**
 * `nodemedic maintain`: the runbook's maintenance flow (drain and cordon, maintain, make schedulable
 * again) as one command with the ladder's safety: a reboot slot, the storm, capacity and window guards,
 * a rollback when the drain fails or is interrupted, and a node left cordoned, saying why, when the
 * work fails. `maintain --systemd-upgrade` is the runbook's cure for an old systemd as that work:
 * `yum update -y systemd && systemctl daemon-reexec && killall runc`, with the runc kill narrowed to the
 * stuck ones. The flow itself is the drain-reboot controller's (remediations/kubernetes/rebooter.ts,
 * `maintain()`); this file is the command line, the work, and the health checks it is judged by.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from 'pino';
import { Agent } from './agent.js';
import { configOption, type CommandIO, type CommandSpec } from './cli-types.js';
import { drainingAccess, operatorName, progressPrinter } from './cli-kubernetes.js';
import { loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import type { CheckResult } from '../checks/types.js';
import { systemClock } from '../platform/clock.js';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { ConfigError, EXIT, UsageError } from '../platform/errors.js';
import { RealHost, type Host } from '../platform/host.js';
import { runStreamed } from '../platform/stream-command.js';
import type { MaintenanceRequest } from '../remediations/kubernetes/maintenance.js';
import { DrainRebootController } from '../remediations/kubernetes/rebooter.js';
import { NEVER_TRIGGERS } from '../remediations/config.js';
import { reexecSystemd } from '../remediations/reexec.js';

/** `maintain`'s exit codes besides 0 (done), 1 (refused, or rolled back: nothing changed), 64, 69, 78. */
export const MAINTAIN_EXIT = {
  /** The work failed or timed out, was interrupted, or the node was not healthy after it: it stays cordoned. */
  failed: 3,
} as const;

/** `--timeout`'s default: the bound of the work (the command, or the package upgrade). */
const DEFAULT_WORK_TIMEOUT = '1h';
/** The work's output file is cut here (the terminal still gets everything). */
const LOG_MAX_BYTES = 16 * 1024 * 1024;

/** One output file per maintenance under `<stateDir>/evidence/`, next to the ladder's bundles. */
class WorkLog {
  private bytes = 0;
  private cut = false;
  private constructor(
    readonly path: string,
    private readonly stream: WriteStream,
  ) {}

  /** `<stateDir>/evidence/<time>-maintain-<label>.log`. */
  static pathFor(stateDir: string, label: string, at: number): string {
    return join(stateDir, 'evidence', `${new Date(at).toISOString().replace(/[-:]/g, '')}-maintain-${label}.log`);
  }

  static open(path: string): WorkLog {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    return new WorkLog(path, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
  }

  write(b: Buffer | string): void {
    if (this.cut) return;
    const buf = typeof b === 'string' ? Buffer.from(b) : b;
    if (this.bytes + buf.length > LOG_MAX_BYTES) {
      this.cut = true;
      this.stream.write(`\n# nodemedic: output cut at ${LOG_MAX_BYTES} bytes\n`);
      return;
    }
    this.bytes += buf.length;
    this.stream.write(buf);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.stream.end(resolve));
  }
}

/** Passes a command's output to the terminal (decoded per stream, so a character split across chunks survives) and to the log. */
function teeTo(io: CommandIO, log: WorkLog): (b: Buffer, s: 'stdout' | 'stderr') => void {
  const dec = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  return (b, s) => {
    log.write(b);
    const text = dec[s].write(b);
    if (text) (s === 'stdout' ? io.out : io.err)(text);
  };
}

/** Says a step on the terminal and in the log. */
function say(io: CommandIO, log: WorkLog, line: string): void {
  io.out(`${line}\n`);
  log.write(`# ${line}\n`);
}

/** Runs `argv` on the node (behind `hostCommandPrefix`), streamed; one sentence for the result. */
async function streamed(io: CommandIO, log: WorkLog, config: Config, argv: readonly string[], timeoutMs: number, signal: AbortSignal): Promise<{ ok: boolean; detail: string }> {
  say(io, log, `running on ${config.nodeName}: ${argv.join(' ')}`);
  const r = await runStreamed(argv, { prefix: config.hostCommandPrefix, timeoutMs, signal, onOutput: teeTo(io, log) });
  log.write(`\n# ${r.exitCode === 0 ? 'exit code 0' : r.error ?? 'failed'}\n`);
  if (r.exitCode === 0) return { ok: true, detail: `\`${argv.join(' ')}\` succeeded` };
  return { ok: false, detail: `\`${argv.join(' ')}\` failed (${r.error ?? 'failed'})` };
}

/**
 * Runs the given checks once, each time with fresh instances: a check that caches a definite answer
 * (systemd-version keeps one for 10 minutes) must not report the state from before the work.
 */
async function runChecks(config: Config, logger: Logger, ids: readonly string[]): Promise<CheckResult[]> {
  if (!ids.length) return [];
  const agent = new Agent({ config, logger, serve: false });
  await agent.start(ids);
  try {
    return await agent.sweep();
  } finally {
    await agent.stop();
  }
}

const enabled = (config: Config, id: string): boolean => !!config.checks[id]?.enabled;

/** `yum` on rpm nodes, `apt-get` on Debian/Ubuntu: whichever exists on the node, behind the prefix. */
async function packageManager(host: Host): Promise<'yum' | 'apt-get' | undefined> {
  for (const pm of ['yum', 'apt-get'] as const) {
    // `command -v` is the portable test; the name is passed as an argument, never spliced into the script.
    const r = await host.run(['sh', '-c', 'command -v "$1"', 'sh', pm], { timeoutMs: 10_000 });
    if (r.exitCode === 0 && r.stdout.trim()) return pm;
  }
  return undefined;
}

/**
 * The runbook's `yum update -y systemd && systemctl daemon-reexec && killall runc`, then a check that
 * `systemd-version` is ok. `killall runc` is narrowed to runc processes older than a threshold (the
 * systemd check's `stuckRuncAfter`, 10m by default, or `remediation.killStuckRuncAfter` if set): runc
 * lives for a moment per container start, exec or probe, and the DaemonSet pods that stay on a drained
 * node keep starting them; killing those would fail a start or a probe half way and can leave a
 * container half created. The stuck ones are those hung on the old PID 1's D-Bus, which is what the
 * threshold (the same that makes the systemd check report them) selects.
 */
async function systemdUpgrade(io: CommandIO, log: WorkLog, config: Config, host: Host, logger: Logger, timeoutMs: number, signal: AbortSignal): Promise<{ ok: boolean; detail: string }> {
  const pm = await packageManager(host);
  if (!pm) return { ok: false, detail: 'neither yum nor apt-get was found on the node (behind hostCommandPrefix): cannot upgrade systemd' };
  const argv = pm === 'yum' ? ['yum', 'update', '-y', 'systemd'] : ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '--only-upgrade', '-y', 'systemd'];
  const up = await streamed(io, log, config, argv, timeoutMs, signal);
  if (!up.ok) return up;
  if (signal.aborted) return { ok: false, detail: `${up.detail}; stopped before systemctl daemon-reexec` };
  const sd: Record<string, unknown> = config.checks.systemd ?? {};
  const runcAfter = config.remediation.killStuckRuncAfter || (typeof sd.stuckRuncAfter === 'string' ? sd.stuckRuncAfter : '10m');
  say(io, log, `running on ${config.nodeName}: systemctl daemon-reexec, then killing runc processes older than ${runcAfter}`);
  const re = await reexecSystemd(host, {
    busTimeoutMs: parseDuration(typeof sd.timeout === 'string' ? sd.timeout : '10s'),
    timeoutMs: parseDuration(config.remediation.commandTimeout),
    procPath: typeof sd.procPath === 'string' ? sd.procPath : '/proc',
    killStuckRuncAfterMs: parseDuration(runcAfter),
  });
  say(io, log, re.detail);
  if (re.result !== 'success') return { ok: false, detail: `${up.detail}; ${re.detail}` };
  const [v] = await runChecks(config, logger, ['systemd-version']);
  say(io, log, `systemd-version: ${v ? `${v.status} (${v.reason}): ${v.message}` : 'no result'}`);
  if (v?.status !== 'ok') return { ok: false, detail: `${up.detail}; systemd re-executed; but systemd-version is ${v ? `${v.status} (${v.reason}): ${v.message}` : 'not reported'}` };
  return { ok: true, detail: `${up.detail}; ${re.detail}; systemd-version ok (${v.reason})` };
}

export const maintainCommand: CommandSpec = {
  name: 'maintain',
  summary: 'drain this node for maintenance (reboot slot, guards, cordon, drain), run a command on it, (reboot,) and make it schedulable again once healthy',
  usage: 'nodemedic maintain [--config F] [--reason TEXT] [--reboot] [--timeout D] [--dry-run] -- COMMAND [ARGS...] | nodemedic maintain --systemd-upgrade [--reason TEXT] [--reboot] [--timeout D] [--dry-run]',
  options: {
    ...configOption,
    reason: { type: 'string' },
    reboot: { type: 'boolean' },
    timeout: { type: 'string' },
    'dry-run': { type: 'boolean' },
    'systemd-upgrade': { type: 'boolean' },
  },
  positionals: { min: 0, max: Number.MAX_SAFE_INTEGER },
  help: [
    'Takes a reboot slot (the Lease pool of the drain-reboot; storm, capacity and window guards), cordons',
    'with a nodemedic.io/ mark, drains (DaemonSet and mirror pods stay), runs COMMAND on the node (through',
    'hostCommandPrefix, bounded by --timeout, default 1h; no stdin), its output shown and kept in',
    '<stateDir>/evidence/, then (--reboot) reboots, or waits until the trigger checks are ok and the Node',
    'Ready, uncordons and releases the slot. A running agent starts no episode meanwhile.',
    'A signal (Ctrl-C, SIGTERM, SIGHUP) during the drain rolls it back; during the command it stops it.',
    '',
    'exit codes:',
    '  0   done (with --reboot: the reboot was issued); --dry-run: the guards would let it go ahead',
    '  1   refused (guards, slot, a drain in flight) or the drain failed or was interrupted and rolled',
    '      back: the node is as before, schedulable, slot released',
    `  ${MAINTAIN_EXIT.failed}   the work failed, timed out or was interrupted, or the node was not healthy after it`,
    '      (remediation.recovery.timeout): the node stays cordoned, the reason in an Event, the',
    '      UnderMaintenance condition and /status; fix it, then `nodemedic uncordon`',
    '  64  usage · 69 no Kubernetes access configured · 78 invalid config',
  ].join('\n'),
  async run(args, io) {
    const command = args.positionals;
    const upgrade = !!args.values['systemd-upgrade'];
    if (upgrade && command.length) throw new UsageError('--systemd-upgrade and a COMMAND contradict each other: give one');
    if (!upgrade && !command.length) throw new UsageError('missing the COMMAND to run (after --), or --systemd-upgrade');
    let workTimeoutMs: number;
    try {
      workTimeoutMs = parseDuration((args.values.timeout as string | undefined) ?? DEFAULT_WORK_TIMEOUT);
    } catch {
      throw new UsageError(`--timeout: must be a duration with a unit (500ms, 10s, 5m, 2h), got ${JSON.stringify(args.values.timeout)}`);
    }
    const { config, source } = loadConfig(args.values.config as string | undefined, io.env);
    if (upgrade && !enabled(config, 'systemd-version')) throw new ConfigError(source, ['checks.systemd-version.enabled: maintain --systemd-upgrade verifies the upgrade with this check; enable it']);
    const kube = await drainingAccess(config, source, io, 'maintain');
    const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level, 'stderr');
    const host = new RealHost({ commandPrefix: config.hostCommandPrefix });
    const by = operatorName(io.env);
    const what = upgrade ? 'systemd upgrade' : command.join(' ');
    const reason = (args.values.reason as string | undefined) ?? `requested by ${by} with nodemedic maintain`;
    const dryRun = !!args.values['dry-run'];

    if (upgrade) {
      // Nothing to cure is nothing to drain for; a version that cannot be read is not upgraded blind.
      const [v] = await runChecks(config, logger, ['systemd-version']);
      io.out(`systemd-version before: ${v ? `${v.status} (${v.reason}): ${v.message}` : 'no result'}\n`);
      if (v?.status === 'ok') {
        io.out(`summary: nothing to do: systemd-version is ok (${v.reason}); the node was not touched\n`);
        return EXIT.ok;
      }
      if (v?.status !== 'problem') {
        io.err(`nodemedic maintain: systemd-version cannot tell (${v?.reason ?? 'no result'}): not upgrading blind; the node was not touched\n`);
        return EXIT.problem;
      }
    }

    const triggers = config.remediation.triggers.filter((t) => !NEVER_TRIGGERS.includes(t) && enabled(config, t));
    const startedAt = Date.now();
    const logPath = WorkLog.pathFor(config.stateDir, upgrade ? 'systemd-upgrade' : 'command', startedAt);
    const maintenance: MaintenanceRequest = {
      what,
      by,
      reboot: !!args.values.reboot,
      // Whatever the work is, it may disturb every check a restart could "cure": the ladder holds them all.
      checks: config.remediation.triggers.filter((t) => !NEVER_TRIGGERS.includes(t)),
      triggers,
      ...(dryRun ? {} : { log: logPath }),
      checkNow: () => runChecks(config, logger, triggers),
      work: async (signal) => {
        const l = WorkLog.open(logPath);
        l.write(`# nodemedic maintain on ${config.nodeName} by ${by} at ${new Date(startedAt).toISOString()}: ${what} (${reason})\n`);
        try {
          if (upgrade) return await systemdUpgrade(io, l, config, host, logger, workTimeoutMs, signal);
          const r = await streamed(io, l, config, command, workTimeoutMs, signal);
          return { ...r, detail: `${r.detail}; output kept in ${l.path}` };
        } finally {
          await l.close();
        }
      },
    };
    const controller = new DrainRebootController({ config, host, logger, clock: systemClock, recordAction: () => {}, kube, component: 'nodemedic-cli' });
    const episodeId = `maintain-${new Date(startedAt).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
    // During the drain a signal rolls it back (uncordon if ours, slot released, plan removed); during
    // the work it stops the command, and the node stays cordoned: what the work changed is unknown.
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const onSignal = (sig: NodeJS.Signals): void => {
      io.err(`nodemedic: ${sig}: stopping; a drain is rolled back, a running command is stopped (the node then stays cordoned)\n`);
      void controller.stop();
    };
    for (const sig of signals) process.once(sig, onSignal);
    let r;
    try {
      r = await controller.run({ episodeId, reason, dryRun, origin: 'maintain', maintenance, onProgress: progressPrinter(io, 5000) });
    } finally {
      for (const sig of signals) process.off(sig, onSignal);
      await controller.stop();
    }
    io.out(`summary: ${r.result}: ${r.detail}\n`);
    if (r.result === 'success' && maintenance.reboot) io.out('the agent uncordons the node and releases the lease once it is healthy after the boot\n');
    if (r.maintenanceFailed) {
      io.err(`nodemedic maintain: the node stays cordoned (${formatDuration(Date.now() - startedAt)} after the start); fix it, then run \`nodemedic uncordon\`\n`);
      return MAINTAIN_EXIT.failed;
    }
    return r.result === 'success' || r.result === 'dry_run' ? EXIT.ok : EXIT.problem;
  },
};
