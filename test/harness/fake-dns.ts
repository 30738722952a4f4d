/**
 * Drives test/fixtures/fake-dns-nxdomain.mjs: a DNS server that answers every query with NXDOMAIN,
 * as its own process so a test can start it inside a network namespace (`prefix: ['ip', 'netns',
 * 'exec', NAME]`).
 */
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { untapped } from '../helpers/cli.js';

const here = dirname(fileURLToPath(import.meta.url));
export const FAKE_DNS_SCRIPT = resolve(here, '../fixtures/fake-dns-nxdomain.mjs');

type Tap = { teardown(f: () => unknown): void };

export interface NxdomainServer {
  /** `QUERY name type` of every query answered, as far as its output has been read. */
  readonly queries: string[];
  /** The `n`th query (1-based), once the server has printed it. */
  query(n: number): Promise<string>;
  stop(): Promise<void>;
}

export async function startNxdomainServer(t: Tap, opts: { host: string; port?: number; prefix?: readonly string[] }): Promise<NxdomainServer> {
  const argv = [...(opts.prefix ?? []), ...untapped([process.execPath, FAKE_DNS_SCRIPT, '--host', opts.host, '--port', String(opts.port ?? 53)])];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const queries: string[] = [];
  const waiting: { n: number; resolve(line: string): void }[] = [];
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  t.teardown(stop);
  await new Promise<void>((listening, reject) => {
    let buf = '';
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('listening ')) listening();
        else {
          queries.push(line);
          for (const w of waiting.filter((x) => x.n <= queries.length)) {
            waiting.splice(waiting.indexOf(w), 1);
            w.resolve(queries[w.n - 1]!);
          }
        }
      }
    });
    void exited.then(() => reject(new Error(`the fake DNS server exited before listening: ${stderr.trim()}`)));
  });
  const query = (n: number): Promise<string> => (n <= queries.length ? Promise.resolve(queries[n - 1]!) : new Promise((r) => waiting.push({ n, resolve: r })));
  return { queries, query, stop };
}
