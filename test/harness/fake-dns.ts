/**
 * Drives test/fixtures/fake-dns-nxdomain.mjs: a DNS server that answers every query with NXDOMAIN,
 * as its own process so a test can start it inside a network namespace (`prefix: ['ip', 'netns',
 * 'exec', NAME]`).
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLineServer } from './line-server.js';

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
  const srv = await startLineServer(t, 'the fake DNS server', FAKE_DNS_SCRIPT, ['--host', opts.host, '--port', String(opts.port ?? 53)], opts.prefix);
  return { queries: srv.lines, query: srv.line, stop: srv.stop };
}
