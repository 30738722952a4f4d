#!/usr/bin/env node
// First: catches `run`'s signals while the rest of the program loads (see the module).
import { releaseEarlySignals, takeEarlySignals } from './early-signals.js';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CHECK_DEFINITIONS, findCheck } from '../checks/index.js';
import type { CheckResult } from '../checks/types.js';
import { Agent, type StopReport } from './agent.js';
import { ListenError } from './server.js';
import { StateDirLockedError } from './state-lock.js';
import { configOption, type CommandIO, type CommandSpec, type ParsedArgs } from './cli-types.js';
import { REMEDIATION_COMMANDS } from './cli-remediation.js';
import { KUBERNETES_COMMANDS } from './cli-kubernetes.js';
import { collectCommand } from './cli-collect.js';
import { maintainCommand } from './cli-maintain.js';
import { loadConfig, loadConfigBounded, type Config } from './config.js';
import { ConfigError, EXIT, NotConfiguredError, UsageError } from '../platform/errors.js';
import { abandonedReads } from '../platform/host.js';
import { createLogger } from './logger.js';
import { SystemdNotifier, superviseWithSystemd } from './notify.js';
import { exitCodeFor, formatNpd, formatRemediation, formatTable, readStatusAnswer } from './report.js';
import { VERSION } from './version.js';

function loadFrom(args: ParsedArgs, positional = false): { config: Config; source: string } {
  const explicit = (positional ? args.positionals[0] : undefined) ?? (args.values.config as string | undefined);
  const { config, source } = loadConfig(explicit);
  return { config, source };
}

function parseOnly(value: string | boolean | undefined): string[] | undefined {
  if (typeof value !== 'string') return undefined;
  const ids = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (!ids.length) throw new UsageError('--only: give one or more check ids separated by commas');
  const bad = ids.filter((id) => !findCheck(id));
  if (bad.length) throw new UsageError(`--only: unknown check ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
  return ids;
}

const check: CommandSpec = {
  name: 'check',
  summary: 'run the checks once and print the results',
  usage: 'nodemedic check [--config F] [--json | --format table|json|npd] [--only a,b]',
  options: { ...configOption, json: { type: 'boolean' }, only: { type: 'string' }, format: { type: 'string' } },
  async run(args, io) {
    const only = parseOnly(args.values.only);
    const format = parseFormat(args.values.format, args.values.json === true);
    const { config, source } = loadFrom(args);
    const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level, 'stderr');
    const agent = new Agent({ config, configSource: source, logger, serve: false });
    await agent.start(only);
    let results: CheckResult[];
    try {
      results = await agent.sweep();
    } finally {
      await agent.stop();
    }
    // Cluster-view checks (node-ready, stuck-pods) on a node without Kubernetes access are shown only when named in --only.
    results = results.filter((r) => r.reason !== 'NoKubernetesAccess' || only?.includes(r.check));
    const disabled = only?.filter((id) => !results.some((r) => r.check === id)) ?? [];
    if (disabled.length) io.err(`note: disabled in the config, not run: ${disabled.join(', ')}\n`);
    if (format === 'json') io.out(JSON.stringify({ node: config.nodeName, time: new Date().toISOString(), results }, null, 2) + '\n');
    else if (format === 'npd') io.out(formatNpd(results) + '\n');
    else io.out(formatTable(results));
    return exitCodeFor(results);
  },
};

/** `run`'s exit codes beyond EXIT (sysexits.h; README "Command line"). */
export const RUN_EXIT = {
  /** EX_UNAVAILABLE: cannot listen on `http.listen` (in use, not an address of this host). */
  cannotListen: 69,
  /** EX_TEMPFAIL: another agent holds `stateDir`. */
  stateDirLocked: 75,
} as const;

/**
 * The whole stop is bounded well inside the unit's TimeoutStopSec=30s: what is left undone then (a
 * rollback the API server does not answer) stays in the plan on disk for the next start.
 */
export const STOP_DEADLINE_MS = 25_000;

const FORMATS = ['table', 'json', 'npd'] as const;
function parseFormat(value: string | boolean | undefined, json: boolean): (typeof FORMATS)[number] {
  if (value === undefined) return json ? 'json' : 'table';
  if (!(FORMATS as readonly unknown[]).includes(value)) throw new UsageError(`--format: must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(String(value).slice(0, 40))}`);
  if (json && value !== 'json') throw new UsageError(`--json and --format ${String(value)} contradict each other`);
  return value as (typeof FORMATS)[number];
}

const run: CommandSpec = {
  name: 'run',
  summary: 'run the agent (checks on a schedule, /healthz /metrics /status, remediation)',
  usage: 'nodemedic run [--config F] [--dry-run]',
  options: { ...configOption, 'dry-run': { type: 'boolean' } },
  async run(args, io) {
    const explicit = args.values.config as string | undefined;
    // Bounded in time too: a config on a hung mount fails the start or the reload, never wedges it.
    const load = async (): Promise<{ config: Config; source: string }> => {
      const r = await loadConfigBounded(explicit);
      if (args.values['dry-run'] && r.config.remediation.mode === 'enforce') r.config.remediation.mode = 'dry-run';
      return r;
    };
    const { config, source } = await load();
    const logger = createLogger(config.log.level);
    const agent = new Agent({ config, configSource: source, logger });
    // READY=1 / WATCHDOG=1 / STOPPING=1 for a Type=notify unit; a no-op without NOTIFY_SOCKET.
    const systemd = superviseWithSystemd(agent, new SystemdNotifier({ logger }), logger);

    // Signals: a stop is asked for once; reloads go to the agent, which serialises and coalesces them.
    let askStop!: (signal: string) => void;
    const stopAsked = new Promise<string>((resolve) => (askStop = resolve));
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signal === 'SIGHUP') {
        logger.info({ signal }, 'reload requested');
        void agent.requestReload(load);
      } else askStop(signal);
    };
    for (const sig of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) process.on(sig, onSignal);
    // Those that arrived while the program loaded, in order.
    for (const sig of takeEarlySignals()) onSignal(sig);

    const started = agent.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    const first = await Promise.race([started.then((error) => ({ error })), stopAsked.then((signal) => ({ signal }))]);
    if ('error' in first && first.error !== undefined) {
      await agent.stop();
      systemd.close();
      const e = first.error;
      if (e instanceof ListenError || e instanceof StateDirLockedError) {
        // One clear line for the operator (stderr: systemd's journal keeps it) and one JSON record.
        logger.fatal({ err: { name: e.name, message: e.message } }, e.message);
        io.err(`nodemedic: ${e.message}\n`);
        return e instanceof ListenError ? RUN_EXIT.cannotListen : RUN_EXIT.stateDirLocked;
      }
      throw e;
    }
    const signal = 'signal' in first ? first.signal : await stopAsked;
    logger.info({ signal }, 'stopping');
    let timer: NodeJS.Timeout | undefined;
    const report = await Promise.race([
      Promise.all([systemd.stopping(), agent.stop()]).then(([, r]) => r),
      new Promise<StopReport | undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), STOP_DEADLINE_MS))),
    ]);
    clearTimeout(timer);
    systemd.close();
    if (!report) logger.error({ deadlineMs: STOP_DEADLINE_MS }, 'stop did not finish in time; exiting anyway (what was in flight is recorded on disk for the next start)');
    else if (report.stuck.length) logger.warn({ stuck: report.stuck }, 'checks stuck in a system call (a hung mount?) were abandoned');
    logger.info('stopped');
    if (!report || report.stuck.length || abandonedReads() > 0) {
      // A thread stuck in the kernel (a stat on a hung mount, a config read given up on) would hold
      // process.exit() forever (Node joins its thread pool on exit); dying of the signal we were sent
      // does not wait for it, and systemd counts SIGTERM as a clean stop.
      for (const sig of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) process.removeAllListeners(sig);
      process.kill(process.pid, 'SIGTERM');
    }
    return EXIT.ok;
  },
};

const status: CommandSpec = {
  name: 'status',
  summary: "show a running agent's /status",
  usage: 'nodemedic status [--url U] [--json] [--config F]',
  options: { ...configOption, url: { type: 'string' }, json: { type: 'boolean' } },
  async run(args, io) {
    let base = args.values.url as string | undefined;
    if (!base) {
      const { config } = loadFrom(args);
      const [host, port] = [config.http.listen.slice(0, config.http.listen.lastIndexOf(':')), config.http.listen.slice(config.http.listen.lastIndexOf(':') + 1)];
      base = `http://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${port}`;
    }
    let url: URL;
    try {
      url = new URL('/status', base);
    } catch {
      throw new UsageError(`--url: not a URL: ${JSON.stringify(base.slice(0, 200))}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url: must be http:// or https://, got ${JSON.stringify(url.protocol)}`);
    const answer = await readStatusAnswer(url, { timeoutMs: 5000 });
    if (!answer.ok) {
      io.err(`nodemedic status: ${answer.error}\n`);
      return EXIT.unknown;
    }
    const body = answer.status;
    const results = body.results;
    if (args.values.json) io.out(JSON.stringify(body, null, 2) + '\n');
    else {
      io.out(`node ${body.node ?? '?'}, last sweep ${body.lastSweep ?? 'never'}\n`);
      io.out(formatTable(results));
      if (body.remediation) io.out(formatRemediation(body.remediation));
    }
    return exitCodeFor(results);
  },
};

const config: CommandSpec = {
  name: 'config',
  summary: 'validate a config file, or print the effective config (defaults merged)',
  usage: 'nodemedic config validate [FILE] | nodemedic config show [FILE]',
  options: { ...configOption },
  positionals: { min: 1, max: 2 },
  async run(args, io) {
    const [sub, ...rest] = args.positionals;
    if (sub !== 'validate' && sub !== 'show') throw new UsageError(`config: unknown subcommand ${JSON.stringify(sub)} (use validate or show)`);
    const { config: cfg, source } = loadFrom({ ...args, positionals: rest }, true);
    if (sub === 'validate') io.out(`${source}: valid\n`);
    else io.out(JSON.stringify(cfg, null, 2) + '\n');
    return EXIT.ok;
  },
};

const version: CommandSpec = {
  name: 'version',
  summary: 'print the version',
  usage: 'nodemedic version',
  options: {},
  async run(_args, io) {
    io.out(`nodemedic ${VERSION}\n`);
    return EXIT.ok;
  },
};

/** Every command; other areas add theirs here. */
export const COMMANDS: readonly CommandSpec[] = [check, run, status, config, version, ...REMEDIATION_COMMANDS, ...KUBERNETES_COMMANDS, maintainCommand, collectCommand];

/** What each flag means, for `nodemedic <command> --help`. */
const FLAG_HELP: Record<string, string> = {
  config: 'the config file (else $NODEMEDIC_CONFIG, else /etc/nodemedic/config.yaml, else the embedded defaults)',
  json: 'print JSON instead of a table',
  format: 'table (default), json, or npd: one line of at most 80 characters for node-problem-detector, exit 0 ok / 1 problem / 2 unknown',
  only: 'run only these checks (comma-separated ids)',
  url: "the agent's address (default: from the config's http.listen)",
  'dry-run': 'take no action, only say what would be done',
  for: 'how long, a duration with a unit (10m, 2h, 1d); default: until `nodemedic resume`',
  reason: 'a note shown in /status and the log (at most 500 characters)',
  'create-state-dir': 'create the state directory if it does not exist (normally the agent creates it)',
  node: 'the node to act on (default: this node, the config\'s nodeName)',
  timeout: 'a bound, a duration with a unit',
  output: 'where to write',
  reboot: 'reboot after the work; the agent then uncordons the node once it is healthy after the boot',
  'systemd-upgrade': "the runbook's systemd cure as the work: the package upgrade (yum or apt-get), systemctl daemon-reexec, stuck runc killed, systemd-version checked",
};

/** `nodemedic <command> --help`: usage, every flag with what it does, and the check ids where they matter. */
export function commandHelp(cmd: CommandSpec): string {
  const lines = [`usage: ${cmd.usage}`, '', cmd.summary, ''];
  const flags = Object.entries(cmd.options);
  if (flags.length) {
    lines.push('flags:');
    const shown = flags.map(([name, o]) => {
      const short = (o as { short?: string }).short;
      return [`${short ? `-${short}, ` : ''}--${name}${o.type === 'string' ? ' VALUE' : ''}`, FLAG_HELP[name] ?? ''] as const;
    });
    const w = Math.max(...shown.map(([f]) => f.length));
    for (const [f, what] of shown) lines.push(`  ${f.padEnd(w)}  ${what}`.trimEnd());
    lines.push('');
  }
  if ('only' in cmd.options || cmd.name === 'check' || cmd.name === 'status') lines.push(`check ids: ${CHECK_DEFINITIONS.map((d) => d.id).join(', ')}`, '');
  if (cmd.help) lines.push(cmd.help, '');
  return lines.join('\n');
}

function help(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'nodemedic: node-local diagnostic and self-healing agent for Kubernetes nodes',
    '',
    'usage: nodemedic <command> [flags]',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Run `nodemedic <command> --help` for its flags.',
    '',
  ].join('\n');
}

/** Runs one command line and returns the exit code; never calls process.exit. */
export async function main(argv: readonly string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.out(help());
    return name ? EXIT.ok : EXIT.usage;
  }
  const cmd = COMMANDS.find((c) => c.name === (name === '--version' ? 'version' : name));
  // Only `run` keeps the signals caught while the program loaded; every other command gets the defaults back.
  if (cmd?.name !== 'run') releaseEarlySignals();
  try {
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}; commands: ${COMMANDS.map((c) => c.name).join(', ')}`);
    if (rest.includes('--help') || rest.includes('-h')) {
      io.out(commandHelp(cmd));
      return EXIT.ok;
    }
    let parsed: ParsedArgs;
    try {
      parsed = parseArgs({ args: [...rest], options: cmd.options, allowPositionals: true, strict: true }) as ParsedArgs;
    } catch (e) {
      throw new UsageError(`${cmd.name}: ${(e as Error).message}`);
    }
    const { min, max } = cmd.positionals ?? { min: 0, max: 0 };
    if (parsed.positionals.length < min || parsed.positionals.length > max) {
      throw new UsageError(
        parsed.positionals.length > max
          ? `${cmd.name}: unexpected argument ${JSON.stringify(parsed.positionals[max])}`
          : `${cmd.name}: missing argument`,
      );
    }
    for (const [k, v] of Object.entries(parsed.values)) {
      if (v === '') throw new UsageError(`${cmd.name}: --${k} needs a value`);
    }
    return await cmd.run(parsed, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`nodemedic: ${e.message}\nusage: ${cmd?.usage ?? 'nodemedic <command> [flags]'}\n`);
      return EXIT.usage;
    }
    if (e instanceof ConfigError) {
      io.err(`nodemedic: ${e.message}\n`);
      return EXIT.config;
    }
    if (e instanceof NotConfiguredError) {
      io.err(`nodemedic ${cmd?.name ?? ''}: ${e.message}\n`);
      return EXIT.unavailable;
    }
    // A bug: say what, not where (the stack is for NODEMEDIC_DEBUG=1).
    const detail = io.env.NODEMEDIC_DEBUG ? ((e as Error)?.stack ?? String(e)) : `${(e as Error)?.message ?? String(e)} (internal error; NODEMEDIC_DEBUG=1 shows where)`;
    io.err(`nodemedic: ${detail}\n`);
    return EXIT.software;
  }
}

const invokedDirectly = (() => {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();

/** Runs the process's command line and exits with its code (the executable: agent/main.ts, or this file run directly). */
export async function runProgram(): Promise<void> {
  const io: CommandIO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env };
  const code = await main(process.argv.slice(2), io);
  // Let stdout drain, then exit even if a library left a handle open (a hung daemon's socket).
  process.stdout.write('', () => process.exit(code));
}

if (invokedDirectly) await runProgram();
