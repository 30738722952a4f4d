/**
 * Drives test/fixtures/fake-apiserver-health.mjs: a kube-apiserver's unauthenticated health
 * endpoints over TLS, with a certificate made for the test by openssl. It runs as its own process so
 * a test can start it inside a network namespace (`prefix: ['ip', 'netns', 'exec', NAME]`) and stop
 * it as an outage would: the process gone, the address still there.
 */
import { spawn } from 'node:child_process';
import { execFile } from 'node:child_process';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { untapped } from '../helpers/cli.js';

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
  const argv = [...(opts.prefix ?? []), ...untapped([process.execPath, FAKE_HEALTH_SCRIPT, '--host', opts.host, '--port', String(opts.port ?? 0), '--cert', opts.cert, '--key', opts.key])];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const requests: string[] = [];
  const waiting: { n: number; resolve(line: string): void }[] = [];
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolvePort, reject) => {
    let buf = '';
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^listening .*:(\d+)$/.exec(line);
        if (m) resolvePort(Number(m[1]));
        else {
          requests.push(line);
          for (const w of waiting.filter((x) => x.n <= requests.length)) {
            waiting.splice(waiting.indexOf(w), 1);
            w.resolve(requests[w.n - 1]!);
          }
        }
      }
    });
    void exited.then(() => reject(new Error(`the fake API server exited before listening: ${stderr.trim()}`)));
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  t.teardown(stop);
  const request = (n: number): Promise<string> =>
    n <= requests.length ? Promise.resolve(requests[n - 1]!) : new Promise((r) => waiting.push({ n, resolve: r }));
  return { port, requests, request, exited, stop };
}
