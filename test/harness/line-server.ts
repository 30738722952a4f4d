/**
 * A helper server run as its own process (so a test can start it inside a network namespace, behind
 * `prefix`): it prints `listening ...` once ready, then one line per request it served. Shared by the
 * fake API health server and the fake DNS server.
 */
import { spawn } from 'node:child_process';
import { untapped } from '../helpers/cli.js';

type Tap = { teardown(f: () => unknown): void };

export interface LineServer {
  /** The `listening ...` line. */
  listening: string;
  /** Every line after it, in order, as far as the output has been read. */
  readonly lines: string[];
  /** The `n`th line (1-based), once the server has printed it. */
  line(n: number): Promise<string>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** SIGTERM, then waits for the exit: afterwards nothing listens on the address. */
  stop(): Promise<void>;
}

/** Starts `node SCRIPT ARGS` (without tap's hooks) behind `prefix`; resolves once it listens. Stopped in teardown. */
export async function startLineServer(t: Tap, what: string, script: string, args: readonly string[], prefix: readonly string[] = []): Promise<LineServer> {
  const argv = [...prefix, ...untapped([process.execPath, script, ...args])];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiting: { n: number; resolve(line: string): void }[] = [];
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  t.teardown(stop);
  const listening = await new Promise<string>((ready, reject) => {
    let buf = '';
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('listening ')) {
          ready(line);
          continue;
        }
        lines.push(line);
        for (const w of waiting.filter((x) => x.n <= lines.length)) {
          waiting.splice(waiting.indexOf(w), 1);
          w.resolve(lines[w.n - 1]!);
        }
      }
    });
    void exited.then(() => reject(new Error(`${what} exited before listening: ${stderr.trim()}`)));
  });
  const line = (n: number): Promise<string> => (n <= lines.length ? Promise.resolve(lines[n - 1]!) : new Promise((r) => waiting.push({ n, resolve: r })));
  return { listening, lines, line, exited, stop };
}
