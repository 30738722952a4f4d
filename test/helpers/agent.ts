import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { CLI } from './cli.js';

/** A real `nodemedic run` process on a loopback port, with its own config and state dir. */
export interface RunningAgent {
  url: string;
  child: ChildProcess;
  configPath: string;
  stateDir: string;
  logs(): string;
  /** SIGTERM, wait for exit (SIGKILL after 10 s); resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Asks the kernel for a free loopback port. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts the built agent with `config` (merged over test-friendly defaults) and waits for /healthz. */
export async function startAgent(config: Record<string, unknown> = {}, opts: { env?: NodeJS.ProcessEnv; readyTimeoutMs?: number } = {}): Promise<RunningAgent> {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-agent-'));
  const port = await freePort();
  const stateDir = join(dir, 'state');
  const full = { http: { listen: `127.0.0.1:${port}` }, stateDir, schedule: '*/1 * * * * *', log: { level: 'debug' }, ...config };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(full));
  const child = spawn(process.execPath, [CLI, 'run', '--config', configPath], {
    env: { ...process.env, NODEMEDIC_CONFIG: '', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`agent exited with ${child.exitCode}:\n${out}`);
    try {
      // The listener opens first (before the checks and the first sweep): ready is /healthz 200 and a first sweep on /status.
      const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200 && ((await (await fetch(`${url}/status`, { signal: AbortSignal.timeout(2000) })).json()) as { lastSweep?: unknown }).lastSweep) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`agent did not become healthy:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    configPath,
    stateDir,
    logs: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
      return child.exitCode;
    },
  };
}
