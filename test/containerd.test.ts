import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { pino } from 'pino';
import { RealHost } from '../platform/host.js';
import { containerdCheck, decodeVersionResponse, type ContainerdOptions } from '../checks/containerd.js';
import type { Finding } from '../checks/types.js';
import { startContainerd, type ContainerdHandle } from './harness/containerd.js';
import { requireComponent } from './helpers/require.js';

const NO_UNIT = 'nodemedic-test-no-such-unit';
const TIMEOUT_MS = 2000;

function makeCheck(socket: string, over: Partial<ContainerdOptions> = {}) {
  return containerdCheck.create(
    { ...containerdCheck.defaults, socket, unit: NO_UNIT, timeout: `${TIMEOUT_MS}ms`, ...over },
    { host: new RealHost(), logger: pino({ level: 'silent' }), nodeName: 'test-node' },
  );
}

async function timed(run: () => Promise<Finding>): Promise<{ f: Finding; ms: number }> {
  const t0 = performance.now();
  const f = await run();
  return { f, ms: performance.now() - t0 };
}

async function withContainerd(t: Test): Promise<ContainerdHandle> {
  const c = await startContainerd();
  t.teardown(() => c.stop());
  return c;
}

/** What containerd's own client reports about the server, to compare the check's decoding with. */
async function ctrServerVersion(socket: string): Promise<{ version: string; revision: string }> {
  const r = await execa('ctr', ['--address', socket, 'version'], { timeout: 5000, stdin: 'ignore' });
  const server = r.stdout.split(/^Server:/m)[1] ?? '';
  return { version: /Version:\s*(\S+)/.exec(server)?.[1] ?? '?', revision: /Revision:\s*(\S+)/.exec(server)?.[1] ?? '?' };
}

t.test('decodeVersionResponse reads the protobuf and rejects malformed input', async (t) => {
  // Bytes as containerd 1.6.20 sent them (captured from a real daemon).
  const real = Buffer.from('0a0a312e362e32307e6473311214312e362e32307e6473312d312b64656231327533', 'hex');
  t.same(decodeVersionResponse(real), { version: '1.6.20~ds1', revision: '1.6.20~ds1-1+deb12u3' });
  // Unknown fields of every wire type are skipped.
  const withUnknown = Buffer.concat([Buffer.from([0x18, 0x96, 0x01, 0x25, 1, 2, 3, 4, 0x29, 1, 2, 3, 4, 5, 6, 7, 8]), real]);
  t.same(decodeVersionResponse(withUnknown), { version: '1.6.20~ds1', revision: '1.6.20~ds1-1+deb12u3' });
  t.match(decodeVersionResponse(real.subarray(0, 8)), { error: /runs past the end/ });
  t.match(decodeVersionResponse(Buffer.from([0x0a])), { error: /length runs past the end/ });
  t.match(decodeVersionResponse(Buffer.from([0x80])), { error: /truncated field key/ });
  t.match(decodeVersionResponse(Buffer.from([0x0b])), { error: /unsupported wire type 3/ });
  t.match(decodeVersionResponse(Buffer.alloc(0)), { error: /no version field/ });
});

t.test('no socket and no unit: unknown NotInstalled', async (t) => {
  const f = await makeCheck('/tmp/nodemedic-no-such-dir/containerd.sock').run(new AbortController().signal);
  t.equal(f.status, 'unknown');
  t.equal(f.reason, 'NotInstalled');
  t.match(f.evidence, { socketError: 'ENOENT' });
});

t.test('something that is not gRPC on the socket: unknown UnexpectedResponse, not a verdict on containerd', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nm-fake-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const sock = join(dir, 'http1.sock');
  const server = http.createServer((_req, res) => res.end('hello'));
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(() => new Promise((r) => server.close(r)));
  const { f, ms } = await timed(() => makeCheck(sock).run(new AbortController().signal));
  t.equal(f.status, 'unknown', f.message);
  t.equal(f.reason, 'UnexpectedResponse');
  t.ok(ms < TIMEOUT_MS + 1000, `answered in ${Math.round(ms)} ms`);
});

t.test('a real containerd: ok, hung under SIGSTOP, ok after SIGCONT', async (t) => {
  if (!(await requireComponent(t, 'containerd', ['containerd', 'ctr']))) return;
  const c = await withContainerd(t);
  const check = makeCheck(c.socket);
  const signal = new AbortController().signal;

  const ok = await check.run(signal);
  t.equal(ok.status, 'ok', ok.message);
  t.equal(ok.reason, 'ContainerdHealthy');
  const expected = await ctrServerVersion(c.socket);
  t.match(ok.evidence, { socket: c.socket, version: expected.version, revision: expected.revision }, 'same version and revision as `ctr version`');

  c.pause();
  const hung = await timed(() => check.run(signal));
  t.equal(hung.f.status, 'problem', hung.f.message);
  t.equal(hung.f.reason, 'ContainerdHung');
  t.equal(hung.f.evidence?.connected, true);
  t.ok(hung.ms >= TIMEOUT_MS - 50, `waited the whole timeout (${Math.round(hung.ms)} ms)`);
  t.ok(hung.ms <= TIMEOUT_MS + 1000, `ContainerdHung within timeout + 1 s (${Math.round(hung.ms)} ms)`);

  const first = check.run(signal);
  const second = await timed(() => check.run(signal));
  t.equal(second.f.reason, 'ContainerdHung');
  t.ok(second.ms < 100, `a run during a pending probe answers at once (${Math.round(second.ms)} ms)`);
  t.equal((await first).reason, 'ContainerdHung');

  c.resume();
  const back = await check.run(signal);
  t.equal(back.status, 'ok', `after SIGCONT: ${back.message}`);
});

t.test('a killed containerd leaves its socket: ContainerdDown', async (t) => {
  if (!(await requireComponent(t, 'containerd', ['containerd', 'ctr']))) return;
  const c = await withContainerd(t);
  const check = makeCheck(c.socket);
  t.equal((await check.run(new AbortController().signal)).status, 'ok');
  await c.crash();
  const f = await check.run(new AbortController().signal);
  t.equal(f.status, 'problem', f.message);
  t.equal(f.reason, 'ContainerdDown');
  t.match(f.evidence, { socketError: 'ECONNREFUSED' });
  await rm(c.socket);
  const gone = await check.run(new AbortController().signal);
  t.equal(gone.reason, 'NotInstalled');
});
