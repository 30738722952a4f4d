/**
 * Issue 14 item 9: a containerd that promptly sends a 1 GB gRPC answer. The "containerd" is a real
 * HTTP/2 (h2c) server on a unix socket made here, speaking gRPC framing; the check is the real one.
 * Before the fix the check read and dropped the whole answer, ran into its timeout and called the
 * daemon hung (`problem` ContainerdHung).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { RealHost } from '../platform/host.js';
import { containerdCheck } from '../checks/containerd.js';

const dir = mkdtempSync(join(tmpdir(), 'nm-hostile-daemons-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** A gRPC server whose every answer is `declared` bytes long by its frame header, streamed 1 MiB at a time up to `actual`. */
async function hugeGrpc(t: Test, name: string, declared: number, actual: number): Promise<{ socket: string; sentMiB: () => number }> {
  const socket = join(dir, `${name}.sock`);
  let sent = 0;
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    const header = Buffer.alloc(5);
    header.writeUInt32BE(Math.min(declared, 0xffffffff), 1);
    stream.write(header);
    const chunk = Buffer.alloc(1024 * 1024, 0x0a);
    const pump = (): void => {
      while (sent * chunk.length < actual && !stream.destroyed) {
        sent++;
        if (!stream.write(chunk)) return void stream.once('drain', pump);
      }
      if (!stream.destroyed) stream.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { socket, sentMiB: () => sent };
}

function check(socket: string) {
  return containerdCheck.create(
    { enabled: true, socket, unit: 'containerd', timeout: '10s' },
    { host: new RealHost(), logger: pino({ level: 'silent' }), nodeName: 'n' },
  );
}

t.test('a 1 GB answer, honestly declared: unknown AnswerTooLarge at once, not ContainerdHung', async (t) => {
  const g = await hugeGrpc(t, 'declared', 2 ** 30, 2 ** 30);
  const t0 = Date.now();
  const f = await check(g.socket).run(new AbortController().signal);
  const took = Date.now() - t0;
  t.equal(f.status, 'unknown', f.message);
  t.equal(f.reason, 'AnswerTooLarge');
  t.match(f.message, /answer too large: its first message declares 1073741824 bytes/);
  t.match(f.message, /it answered, so it is not hung/);
  t.ok(took < 5000, `well within the 10 s timeout (${took} ms)`);
  t.ok(g.sentMiB() < 100, `stopped reading early (${g.sentMiB()} MiB sent of 1024)`);
});

t.test('a 1 GB answer whose header lies (declares 10 bytes): cut off after 64 KiB, AnswerTooLarge', async (t) => {
  const g = await hugeGrpc(t, 'lying', 10, 2 ** 30);
  const f = await check(g.socket).run(new AbortController().signal);
  t.equal(f.status, 'unknown', f.message);
  t.equal(f.reason, 'AnswerTooLarge');
  t.match(f.message, /the response body is longer/);
  t.ok(g.sentMiB() < 100, `stopped reading early (${g.sentMiB()} MiB sent of 1024)`);
});
