import { readdirSync, readlinkSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { RealHost } from '../platform/host.js';
import { dockerCheck, parseDockerInfo, type DockerOptions } from '../checks/docker.js';
import type { Finding } from '../checks/types.js';
import { startDockerd, type DockerdHandle } from './harness/dockerd.js';
import { requireComponent } from './helpers/require.js';

/** A unit name no machine has, so the verdicts below do not depend on the host's systemd. */
const NO_UNIT = 'nodemedic-test-no-such-unit';
const TIMEOUT_MS = 2000;

function makeCheck(socket: string, over: Partial<DockerOptions> = {}) {
  return dockerCheck.create(
    { ...dockerCheck.defaults, socket, unit: NO_UNIT, timeout: `${TIMEOUT_MS}ms`, ...over },
    { host: new RealHost(), logger: pino({ level: 'silent' }), nodeName: 'test-node' },
  );
}

async function timed(run: () => Promise<Finding>): Promise<{ f: Finding; ms: number }> {
  const t0 = performance.now();
  const f = await run();
  return { f, ms: performance.now() - t0 };
}

/** Open unix/TCP sockets of this process, to prove a timed-out probe leaves none behind. */
function openSockets(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

async function withDockerd(t: Test, opts: { liveRestore?: boolean }): Promise<DockerdHandle> {
  const d = await startDockerd(opts);
  t.teardown(() => d.stop());
  return d;
}

t.test('parseDockerInfo picks the ladder fields and says what is missing', async (t) => {
  t.same(parseDockerInfo('{"LiveRestoreEnabled":true,"ServerVersion":"20.10.24","Containers":3,"ContainersRunning":2}'), {
    info: { liveRestoreEnabled: true, serverVersion: '20.10.24', containers: 3, containersRunning: 2 },
  });
  t.same(parseDockerInfo('{"LiveRestoreEnabled":false}'), { info: { liveRestoreEnabled: false } });
  t.match(parseDockerInfo('{"LiveRestoreEnabled":"true","ServerVersion":"x"}'), {
    info: { serverVersion: 'x' },
    error: /no boolean LiveRestoreEnabled/,
  });
  t.notOk('liveRestoreEnabled' in parseDockerInfo('{"LiveRestoreEnabled":"true"}').info, 'a string is not taken for a boolean');
  t.match(parseDockerInfo('{not json'), { info: {}, error: /invalid JSON/ });
  t.match(parseDockerInfo('[1]'), { info: {}, error: /not an object/ });
});

t.test('no socket and no unit: unknown NotInstalled, quickly', async (t) => {
  const { f, ms } = await timed(() => makeCheck('/tmp/nodemedic-no-such-dir/docker.sock').run(new AbortController().signal));
  t.equal(f.status, 'unknown');
  t.equal(f.reason, 'NotInstalled');
  t.match(f.evidence, { socketError: 'ENOENT', unit: NO_UNIT });
  t.ok(ms < TIMEOUT_MS + 1000, `answered in ${Math.round(ms)} ms`);
});

t.test('a real dockerd with live-restore', async (t) => {
  if (!(await requireComponent(t, 'dockerd', ['dockerd', 'tar']))) return;
  const d = await withDockerd(t, { liveRestore: true });
  const check = makeCheck(d.socket);
  const signal = new AbortController().signal;

  const ok = await check.run(signal);
  t.equal(ok.status, 'ok', ok.message);
  t.equal(ok.reason, 'DockerHealthy');
  t.equal(ok.evidence?.liveRestoreEnabled, true, 'evidence.liveRestoreEnabled is the daemon\'s LiveRestoreEnabled');
  t.match(ok.evidence, { socket: d.socket, serverVersion: /^\d+\.\d+/, containers: 0, containersRunning: 0 });
  t.notOk(ok.evidence?.infoError);

  const id = await d.runContainer();
  t.ok(await d.containerRunning(id), 'a busybox container runs');
  const withContainer = await check.run(signal);
  t.match(withContainer.evidence, { containers: 1, containersRunning: 1 }, 'the counts come from the live daemon');

  const baseline = openSockets();
  d.pause();
  const hung = await timed(() => check.run(signal));
  t.equal(hung.f.status, 'problem', hung.f.message);
  t.equal(hung.f.reason, 'DockerHung');
  t.equal(hung.f.evidence?.connected, true, 'the kernel accepted the connection; the daemon never answered');
  t.ok(hung.ms >= TIMEOUT_MS - 50, `waited the whole timeout (${Math.round(hung.ms)} ms)`);
  t.ok(hung.ms <= TIMEOUT_MS + 1000, `DockerHung within timeout + 1 s (${Math.round(hung.ms)} ms)`);
  t.equal(openSockets(), baseline, 'the timed-out request and its socket were destroyed');

  // Two runs at once: the second must not open another connection to the hung daemon.
  const first = check.run(signal);
  const second = await timed(() => check.run(signal));
  t.equal(second.f.reason, 'DockerHung');
  t.ok(second.ms < 100, `a run during a pending probe answers at once (${Math.round(second.ms)} ms)`);
  t.type(second.f.evidence?.pendingMs, 'number');
  t.equal((await first).reason, 'DockerHung');

  // The caller's abort (the scheduler's own timeout) ends the probe early and frees its socket.
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  const aborted = await timed(() => check.run(ac.signal));
  t.equal(aborted.f.reason, 'CheckAborted');
  t.ok(aborted.ms < 700, `abort honoured in ${Math.round(aborted.ms)} ms`);
  t.equal(openSockets(), baseline, 'no socket left after an abort');

  d.resume();
  const back = await check.run(signal);
  t.equal(back.status, 'ok', `after SIGCONT: ${back.message}`);
  t.equal(back.evidence?.liveRestoreEnabled, true);
  t.ok(await d.containerRunning(id), 'the container survived the pause');
});

t.test('a real dockerd without live-restore', async (t) => {
  if (!(await requireComponent(t, 'dockerd', ['dockerd']))) return;
  const d = await withDockerd(t, { liveRestore: false });
  const f = await makeCheck(d.socket).run(new AbortController().signal);
  t.equal(f.status, 'ok', f.message);
  t.equal(f.evidence?.liveRestoreEnabled, false, 'a restart would kill every container: the ladder must see false');
  t.match(f.message, /live-restore disabled/);
});

t.test('a killed dockerd leaves its socket: DockerDown; the socket removed: NotInstalled', async (t) => {
  if (!(await requireComponent(t, 'dockerd', ['dockerd']))) return;
  const d = await withDockerd(t, {});
  const check = makeCheck(d.socket);
  t.equal((await check.run(new AbortController().signal)).status, 'ok');
  await d.crash();

  const { f, ms } = await timed(() => check.run(new AbortController().signal));
  t.equal(f.status, 'problem', f.message);
  t.equal(f.reason, 'DockerDown');
  t.match(f.evidence, { socketError: 'ECONNREFUSED' });
  t.match(f.message, /refuses connections/);
  t.ok(ms < TIMEOUT_MS + 1000, `answered in ${Math.round(ms)} ms`);

  await rm(d.socket);
  const gone = await check.run(new AbortController().signal);
  t.equal(gone.status, 'unknown');
  t.equal(gone.reason, 'NotInstalled');
});

t.test('a daemon that answers /_ping and then hangs on /info is DockerHung, not healthy', async (t) => {
  // The race the benchmark caught with a real SIGSTOP: the stop lands between the two requests.
  // A real HTTP server on a real unix socket that stops answering after /_ping makes it repeatable.
  const { createServer } = await import('node:http');
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-docker-info-'));
  const socketPath = join(dir, 'docker.sock');
  const server = createServer((req, res) => {
    if (req.url === '/_ping') res.end('OK');
    // /info: never answered.
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });
  const check = dockerCheck.create(
    { ...dockerCheck.defaults, socket: socketPath, unit: NO_UNIT, timeout: '500ms' },
    { host: new RealHost(), logger: pino({ level: 'silent' }), nodeName: 'n' },
  );
  const t0 = performance.now();
  const f = await check.run(new AbortController().signal);
  const took = performance.now() - t0;
  t.equal(f.status, 'problem');
  t.equal(f.reason, 'DockerHung');
  t.match(f.message, /answered GET \/_ping but not GET \/info within 500ms/);
  t.equal(f.evidence?.hungOn, '/info');
  t.ok(took < 1500, `decided within the timeout (${took.toFixed(0)} ms)`);
});
