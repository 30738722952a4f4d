import { rm } from 'node:fs/promises';
import t from 'tap';
import { pino } from 'pino';
import { RealHost } from '../platform/host.js';
import { containerdCheck } from '../checks/containerd.js';
import { dockerCheck } from '../checks/docker.js';
import type { Finding } from '../checks/types.js';
import { prepareContainerd } from './harness/containerd.js';
import { killLeftovers, removeDir } from './harness/daemon-process.js';
import { dockerClient, prepareDockerd, sweepDockerd } from './harness/dockerd.js';
import { requireSystemdNs, startSystemdNs, waitFor, type SystemdNs } from './harness/systemd-ns.js';
import { requireComponent } from './helpers/require.js';

/**
 * The docker check against a real dockerd run as `docker.service` by a real systemd (PID 1 of a
 * throwaway namespace), reached through the host command prefix like the agent on a node: the unit's
 * state tells a daemon that is down from one that is stopped on purpose or not installed. Also
 * proves that the harness's `docker.service` text runs under systemd (the ladder's tests use it).
 */

const TIMEOUT_MS = 2000;

t.test('docker.service in a systemd namespace', async (t) => {
  if (!(await requireComponent(t, 'dockerd', ['dockerd']))) return;
  if (!(await requireSystemdNs(t))) return;
  const { paths, unitText } = await prepareDockerd({ liveRestore: true });
  let ns: SystemdNs | undefined;
  t.teardown(async () => {
    await ns?.stop();
    await sweepDockerd(paths);
  });
  ns = await startSystemdNs({ name: 'docker', units: { 'docker.service': unitText } });
  const n = ns;
  const activeState = async () => (await n.systemctl('show', '--property=ActiveState', '--value', 'docker')).stdout.trim();
  await waitFor(async () => (await activeState()) === 'active', { timeoutMs: 60_000, what: 'docker.service active' });

  const host = new RealHost({ commandPrefix: n.prefix });
  const check = (unit = 'docker') =>
    dockerCheck.create(
      { ...dockerCheck.defaults, socket: paths.socket, unit, timeout: `${TIMEOUT_MS}ms` },
      { host, logger: pino({ level: 'silent' }), nodeName: 'ns-node' },
    );
  const docker = check();
  const run = (c = docker): Promise<Finding> => c.run(new AbortController().signal);

  const ok = await run();
  t.equal(ok.status, 'ok', ok.message);
  t.equal(ok.evidence?.liveRestoreEnabled, true, 'the unit runs dockerd with --live-restore');

  t.equal((await n.systemctl('kill', '--kill-who=main', '--signal=SIGSTOP', 'docker')).exitCode, 0);
  const t0 = performance.now();
  const hung = await run();
  const ms = performance.now() - t0;
  t.equal(hung.reason, 'DockerHung', hung.message);
  t.ok(ms <= TIMEOUT_MS + 1000, `DockerHung within timeout + 1 s (${Math.round(ms)} ms)`);
  t.equal((await n.systemctl('kill', '--kill-who=main', '--signal=SIGCONT', 'docker')).exitCode, 0);
  t.equal((await run()).status, 'ok', 'ok again after SIGCONT');

  // The unit is active but its socket is gone (deleted under a running daemon).
  await rm(paths.socket);
  const noSocket = await run();
  t.equal(noSocket.reason, 'DockerDown', noSocket.message);
  t.match(noSocket.evidence, { socketError: 'ENOENT', unitActiveState: 'active', unitSubState: 'running' });
  t.equal((await n.systemctl('restart', 'docker')).exitCode, 0, 'systemctl restart docker (inside the namespace)');
  t.equal((await run()).status, 'ok', 'ok after the restart recreated the socket');

  // dockerd crashes and systemd gives up: the unit is failed and its socket is left behind.
  await n.addUnit('docker.service.d/no-restart.conf', '[Service]\nRestart=no\n');
  t.equal((await n.systemctl('kill', '--kill-who=main', '--signal=SIGKILL', 'docker')).exitCode, 0);
  await waitFor(async () => (await activeState()) === 'failed', { timeoutMs: 10_000, what: 'docker.service failed' });
  const crashed = await run();
  t.equal(crashed.status, 'problem', crashed.message);
  t.equal(crashed.reason, 'DockerDown');
  t.match(crashed.evidence, { socketError: 'ECONNREFUSED', unitActiveState: 'failed' });

  // An operator stopped it on purpose (and it is not enabled): not a problem to remediate.
  t.equal((await n.systemctl('reset-failed', 'docker')).exitCode, 0);
  t.equal(await activeState(), 'inactive');
  const stopped = await run();
  t.equal(`${stopped.status} ${stopped.reason}`, 'unknown NotRunning', stopped.message);
  t.match(stopped.evidence, { unitActiveState: 'inactive', unitFileState: 'static' });

  // No such unit and no socket: not installed.
  await rm(paths.socket, { force: true });
  const absent = await run(check('nodemedic-no-docker'));
  t.equal(`${absent.status} ${absent.reason}`, 'unknown NotInstalled', absent.message);
  t.match(absent.evidence, { unitLoadState: 'not-found' });
});

t.test('containerd.service + docker.service (live-restore): both checks ok, a container survives a docker restart', async (t) => {
  if (!(await requireComponent(t, 'dockerd and containerd', ['dockerd', 'containerd', 'ctr', 'tar']))) return;
  if (!(await requireSystemdNs(t))) return;
  const ctrd = await prepareContainerd();
  const { paths, unitText } = await prepareDockerd({ liveRestore: true, containerd: ctrd.paths.socket });
  let ns: SystemdNs | undefined;
  t.teardown(async () => {
    await ns?.stop();
    await sweepDockerd(paths);
    await killLeftovers(ctrd.paths.dir);
    await removeDir(ctrd.paths.dir);
  });
  ns = await startSystemdNs({ name: 'runtime', units: { 'containerd.service': ctrd.unitText, 'docker.service': unitText } });
  const n = ns;
  const isActive = async (u: string) => (await n.systemctl('show', '--property=ActiveState', '--value', u)).stdout.trim() === 'active';
  await waitFor(async () => (await isActive('containerd')) && (await isActive('docker')), { timeoutMs: 60_000, what: 'containerd and docker active' });

  const deps = { host: new RealHost({ commandPrefix: n.prefix }), logger: pino({ level: 'silent' }), nodeName: 'ns-node' };
  const docker = dockerCheck.create({ ...dockerCheck.defaults, socket: paths.socket, timeout: `${TIMEOUT_MS}ms` }, deps);
  const containerd = containerdCheck.create({ ...containerdCheck.defaults, socket: ctrd.paths.socket, timeout: `${TIMEOUT_MS}ms` }, deps);
  const signal = new AbortController().signal;
  t.match(await docker.run(signal), { status: 'ok', evidence: { liveRestoreEnabled: true } });
  t.match(await containerd.run(signal), { status: 'ok', reason: 'ContainerdHealthy' });

  const client = dockerClient(paths);
  const id = await client.runContainer();
  const pid = await client.containerPid(id);
  t.ok(pid > 0 && (await client.containerRunning(id)), `a container runs under docker.service (pid ${pid})`);
  t.equal((await n.systemctl('restart', 'docker')).exitCode, 0, 'systemctl restart docker');
  await waitFor(async () => (await docker.run(signal)).status === 'ok', { timeoutMs: 30_000, what: 'docker ok after the restart' });
  t.ok(await client.containerRunning(id), 'with live-restore the container is still running after the restart');
  t.equal(await client.containerPid(id), pid, 'the same process, not a new one');

  t.equal((await n.systemctl('kill', '--kill-who=main', '--signal=SIGSTOP', 'containerd')).exitCode, 0);
  t.match(await containerd.run(signal), { status: 'problem', reason: 'ContainerdHung' });
  t.equal((await n.systemctl('kill', '--kill-who=main', '--signal=SIGCONT', 'containerd')).exitCode, 0);
  t.match(await containerd.run(signal), { status: 'ok' });
  await client.api('DELETE', `/containers/${id}?force=1`, undefined, 10_000);
});
