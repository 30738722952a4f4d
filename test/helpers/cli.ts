import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built CLI (`npm test` builds first). */
export const CLI = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `nodemedic ...args` as a real process. */
export function runCli(args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, NODEMEDIC_CONFIG: '', ...opts.env }, timeout: opts.timeoutMs ?? 60_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err && typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : err ? null : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/**
 * `argv` run through `env` without tap's hooks. tap runs every Node.js process it starts with
 * `NODE_OPTIONS=--import=@tapjs/processinfo` (loader hooks on a worker thread, source maps, a record
 * written per process) and puts that back into the environment of every process a test spawns; `env
 * -u` takes it out in the child, just before the program starts (env execs it: same PID). That hook
 * made each agent start cost about 10 s of CPU instead of 3 to 5, and every sweep more, which tests
 * with several agents on 2 cores cannot afford. Other NODE_OPTIONS are kept.
 */
export function untapped(argv: readonly string[]): string[] {
  const unset = Object.keys(process.env).filter((k) => k.startsWith('_TAPJS_PROCESSINFO_'));
  const options = (process.env.NODE_OPTIONS ?? '')
    .split(/\s+/)
    .filter((o) => o && !/@tapjs[\\/]/.test(o))
    .join(' ');
  return ['env', '-u', 'NODE_OPTIONS', ...unset.flatMap((k) => ['-u', k]), ...(options ? [`NODE_OPTIONS=${options}`] : []), ...argv];
}

/** `nodemedic run --config F` as it runs on a node: the built CLI, without tap's hooks. */
export function agentCommand(configPath: string): [string, ...string[]] {
  return untapped([process.execPath, CLI, 'run', '--config', configPath]) as [string, ...string[]];
}
