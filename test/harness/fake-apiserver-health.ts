/**
 * Drives test/fixtures/fake-apiserver-health.mjs: a kube-apiserver's unauthenticated health
 * endpoints over TLS, with a certificate made for the test by openssl. It runs as its own process so
 * a test can start it inside a network namespace (`prefix: ['ip', 'netns', 'exec', NAME]`) and stop
 * it as an outage would: the process gone, the address still there.
 */
import { execFile } from 'node:child_process';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startLineServer } from './line-server.js';

const here = dirname(fileURLToPath(import.meta.url));
export const FAKE_HEALTH_SCRIPT = resolve(here, '../fixtures/fake-apiserver-health.mjs');

type Tap = { teardown(f: () => unknown): void };

/** A self-signed certificate and key (P-256, one day) for the given subjectAltNames (`IP:203.0.113.1`, `DNS:localhost`). */
export async function makeCertificate(dir: string, altNames: readonly string[]): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'apiserver.crt');
  const key = join(dir, 'apiserver.key');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=kube-apiserver', '-addext', `subjectAltName=${altNames.join(',')}`, '-keyout', key, '-out', cert,
  ], { timeout: 30_000 });
  return { cert, key };
}

export interface HealthServer {
  /** The port it listens on (the one asked for, or the one the kernel gave for 0). */
  port: number;
  /** `METHOD /path` of every request, in order, as far as its output has been read. */
  readonly requests: string[];
  /** The `n`th request (1-based), once the server has printed it. */
  request(n: number): Promise<string>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** SIGTERM, then waits for the exit: afterwards nothing listens on the address. */
  stop(): Promise<void>;
}

export async function startHealthServer(
  t: Tap,
  opts: { host: string; port?: number; cert: string; key: string; prefix?: readonly string[] },
): Promise<HealthServer> {
  const args = ['--host', opts.host, '--port', String(opts.port ?? 0), '--cert', opts.cert, '--key', opts.key];
  const srv = await startLineServer(t, 'the fake API server', FAKE_HEALTH_SCRIPT, args, opts.prefix);
  const port = Number(/:(\d+)$/.exec(srv.listening)?.[1]);
  return { port, requests: srv.lines, request: srv.line, exited: srv.exited, stop: srv.stop };
}
