#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { findCheck } from '../checks/index.js';
import type { CheckResult } from '../checks/types.js';
import { Agent } from './agent.js';
import { configOption, type CommandIO, type CommandSpec, type ParsedArgs } from './cli-types.js';
import { REMEDIATION_COMMANDS } from './cli-remediation.js';
import { KUBERNETES_COMMANDS } from './cli-kubernetes.js';
import { collectCommand } from './cli-collect.js';
import { loadConfig, type Config } from './config.js';
import { ConfigError, EXIT, UsageError } from '../platform/errors.js';
import { createLogger } from './logger.js';
import { SystemdNotifier, superviseWithSystemd } from './notify.js';
import { exitCodeFor, formatTable } from './report.js';
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
  usage: 'nodemedic check [--config F] [--json] [--only a,b]',
  options: { ...configOption, json: { type: 'boolean' }, only: { type: 'string' } },
  async run(args, io) {
    const only = parseOnly(args.values.only);
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
    if (args.values.json) io.out(JSON.stringify({ node: config.nodeName, time: new Date().toISOString(), results }, null, 2) + '\n');
    else io.out(formatTable(results));
    return exitCodeFor(results);
  },
};

const run: CommandSpec = {
  name: 'run',
  summary: 'run the agent (checks on a schedule, /healthz /metrics /status, remediation)',
  usage: 'nodemedic run [--config F] [--dry-run]',
  options: { ...configOption, 'dry-run': { type: 'boolean' } },
  async run(args) {
    const explicit = args.values.config as string | undefined;
    const load = (): { config: Config; source: string } => {
      const r = loadConfig(explicit);
      if (args.values['dry-run'] && r.config.remediation.mode === 'enforce') r.config.remediation.mode = 'dry-run';
      return r;
    };
    const { config, source } = load();
    const logger = createLogger(config.log.level);
    const agent = new Agent({ config, configSource: source, logger });
    // READY=1 / WATCHDOG=1 / STOPPING=1 for a Type=notify unit; a no-op without NOTIFY_SOCKET.
    const systemd = superviseWithSystemd(agent, new SystemdNotifier({ logger }), logger);
    let stopping: Promise<void> | undefined;
    const stop = (signal: string): void => {
      if (stopping) return;
      logger.info({ signal }, 'stopping');
      stopping = Promise.all([systemd.stopping(), agent.stop()]).then(() => undefined);
    };
    const done = new Promise<void>((resolve) => {
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      const wait = setInterval(() => {
        if (stopping) {
          clearInterval(wait);
          void stopping.then(resolve);
        }
      }, 50);
    });
    process.on('SIGHUP', () => {
      try {
        const next = load();
        void agent.reload(next.config, next.source).catch((e: unknown) => logger.error({ err: e }, 'reload failed'));
      } catch (e) {
        // An invalid new config is rejected and the running one kept (SPEC.md).
        logger.error({ err: e instanceof ConfigError ? e.problems : e }, 'reload rejected: invalid config, keeping the current one');
      }
    });
    await agent.start();
    await done;
    systemd.close();
    logger.info('stopped');
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
      throw new UsageError(`--url: not a URL: ${JSON.stringify(base)}`);
    }
    let body: { results?: CheckResult[]; remediation?: Record<string, unknown>; node?: string; lastSweep?: string };
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      body = (await res.json()) as typeof body;
    } catch (e) {
      io.err(`nodemedic status: cannot reach the agent at ${url.href}: ${(e as Error).message}\n`);
      return EXIT.unknown;
    }
    const results = body.results ?? [];
    if (args.values.json) io.out(JSON.stringify(body, null, 2) + '\n');
    else {
      io.out(`node ${body.node ?? '?'}, last sweep ${body.lastSweep ?? 'never'}\n`);
      io.out(formatTable(results));
      if (body.remediation) io.out(`remediation: ${JSON.stringify(body.remediation)}\n`);
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
export const COMMANDS: readonly CommandSpec[] = [check, run, status, config, version, ...REMEDIATION_COMMANDS, ...KUBERNETES_COMMANDS, collectCommand];

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
  try {
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}; commands: ${COMMANDS.map((c) => c.name).join(', ')}`);
    if (rest.includes('--help') || rest.includes('-h')) {
      io.out(`usage: ${cmd.usage}\n`);
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
    io.err(`nodemedic: ${(e as Error)?.stack ?? String(e)}\n`);
    return 70; // EX_SOFTWARE
  }
}

const invokedDirectly = (() => {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  const io: CommandIO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env };
  const code = await main(process.argv.slice(2), io);
  // Let stdout drain, then exit even if a library left a handle open (a hung daemon's socket).
  process.stdout.write('', () => process.exit(code));
}
