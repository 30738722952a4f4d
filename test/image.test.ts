// The DaemonSet image (issue 17), built for real by deploy/build-image.sh from Debian's archive and the
// npm registry, then run under a real dockerd the way deploy/daemonset.yaml runs it: privileged, the
// host's PID namespace and network, the state directory and the config mounted, host commands through
// nsenter. Here "the host" is a throwaway systemd namespace (PID 1 of its own PID namespace) whose
// kubelet.service is the fake kubelet with a failing /healthz: the container must answer /healthz,
// show the namespace's kubelet unit on /status, and restart that kubelet once.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { stringify } from 'yaml';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import { startDockerd } from './harness/dockerd.js';
import { FakeKubelet, freePort } from './harness/fake-kubelet.js';
import { requireSystemdNs, startSystemdNs, waitFor } from './harness/systemd-ns.js';
import { untapped } from './helpers/cli.js';
import { requireComponent } from './helpers/require.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const TAG = 'nodemedic:image-test';

t.test('the DaemonSet image: built from Debian and npm, run under dockerd, restarts the namespace kubelet once', async (t) => {
  if (!(await requireComponent(t, 'the image build', ['debootstrap', 'docker', 'dockerd', 'npm', 'tar', 'chroot']))) return;
  if (!(await requireSystemdNs(t))) return;

  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-image-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const dockerd = await startDockerd({ dir });
  t.teardown(() => dockerd.stop());
  const env = { ...process.env, DOCKER_HOST: `unix://${dockerd.socket}` };

  const [cmd, ...args] = untapped(['bash', join(ROOT, 'deploy/build-image.sh'), TAG]) as [string, ...string[]];
  const built = await run(cmd, args, { cwd: ROOT, env, maxBuffer: 16 * 1024 * 1024, timeout: 15 * 60_000 });
  const size = Number(built.stdout.trim().split('\n').at(-1));
  t.ok(size > 0, `image built: ${(size / 1024 / 1024).toFixed(0)} MiB`);
  const inspected = JSON.parse((await run('docker', ['image', 'inspect', TAG], { env })).stdout) as { Config: { Entrypoint: string[]; Cmd: string[]; Env: string[] } }[];
  t.same(inspected[0]?.Config.Entrypoint, ['nodemedic'], 'entrypoint as in deploy/Containerfile');
  t.same(inspected[0]?.Config.Cmd, ['run', '--config', '/etc/nodemedic/config.yaml']);
  // The agent below runs in this image, so this test also shows it working with them.
  const unitOptions = /^Environment="(NODE_OPTIONS=[^"]*)"$/m.exec(readFileSync(join(ROOT, 'systemd-units/nodemedic.service'), 'utf8'))?.[1];
  t.ok(unitOptions && inspected[0]?.Config.Env.includes(unitOptions), `the image runs node with the unit's V8 flags (${unitOptions})`);

  // The "node": a systemd whose kubelet is the fake, with /healthz failing from the start.
  const kubelet = await FakeKubelet.create(t);
  await kubelet.configure({ healthz: 'fail' });
  const ns = await startSystemdNs({ t, name: 'image', units: { 'kubelet.service': kubelet.unit() } });
  await waitFor(async () => ((await kubelet.starts()).length === 1 ? true : undefined), { timeoutMs: 30_000, what: 'the fake kubelet started by systemd' });

  // The DaemonSet's config, with the namespace's PID 1 in place of the node's.
  const port = await freePort();
  const checks: Record<string, unknown> = {};
  for (const def of CHECK_DEFINITIONS) checks[def.id] = { enabled: false };
  checks.kubelet = { enabled: true, unit: 'kubelet', healthzUrl: kubelet.healthzUrl, timeout: '5s' };
  const config = {
    nodeName: 'image-node',
    http: { listen: `127.0.0.1:${port}` },
    schedule: '*/1 * * * * *',
    hostCommandPrefix: ['nsenter', '-t', String(ns.pid), '-m', '-p', '--'],
    stateDir: '/var/lib/nodemedic',
    remediation: { mode: 'enforce', grace: '2s', settle: '2s', steps: ['restart-kubelet'] },
    checks,
  };
  const etc = join(dir, 'etc');
  const state = join(dir, 'state');
  await run('mkdir', ['-p', etc, state]);
  await writeFile(join(etc, 'config.yaml'), stringify(config));

  const created = (await dockerd.api('POST', '/containers/create?name=nodemedic-image-test', {
    Image: TAG,
    HostConfig: {
      // The DaemonSet runs it privileged. This machine's own bounding set lacks CAP_SYS_RESOURCE, so
      // runc cannot grant "all": the capabilities nsenter and systemctl need instead, unconfined.
      CapAdd: ['SYS_ADMIN', 'SYS_PTRACE', 'SYS_CHROOT', 'DAC_READ_SEARCH'],
      SecurityOpt: ['seccomp=unconfined', 'apparmor=unconfined'],
      PidMode: 'host',
      NetworkMode: 'host',
      Binds: [`${etc}:/etc/nodemedic:ro`, `${state}:/var/lib/nodemedic`],
    },
  })) as { Id: string };
  await dockerd.api('POST', `/containers/${created.Id}/start`);
  t.teardown(() => dockerd.api('DELETE', `/containers/${created.Id}?force=1`).catch(() => undefined));
  const logs = async (): Promise<string> => (await run('docker', ['logs', created.Id], { env, maxBuffer: 16 * 1024 * 1024 })).stdout;

  const base = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      const res = await fetch(`${base}/healthz`).catch(() => undefined);
      return res?.status === 200 ? true : undefined;
    },
    { timeoutMs: 60_000, what: 'the container answering /healthz' },
  ).catch(async (e: unknown) => {
    t.comment(await logs());
    throw e;
  });
  t.pass('the container answers /healthz with 200');

  type Status = { results: { check: string; status: string; reason: string; evidence?: Record<string, unknown> }[]; recentActions?: unknown };
  const status = async (): Promise<Status> => (await (await fetch(`${base}/status`)).json()) as Status;
  const kubeletResult = await waitFor(
    async () => (await status()).results.find((r) => r.check === 'kubelet' && r.status === 'problem'),
    { timeoutMs: 60_000, what: "/status: the namespace's kubelet seen failing" },
  );
  const mainPid = Number((await ns.systemctl('show', '-p', 'MainPID', '--value', 'kubelet')).stdout.trim());
  t.match(kubeletResult, { reason: /Kubelet/, evidence: { unit: 'kubelet.service', activeState: 'active', mainPid } }, "the namespace's kubelet.service (its main PID as the namespace's systemd says), read through nsenter");

  await waitFor(async () => ((await kubelet.starts()).length >= 2 ? true : undefined), { timeoutMs: 90_000, what: 'the kubelet restarted by the container' }).catch(async (e: unknown) => {
    t.comment(await logs());
    throw e;
  });
  const restarts = (await ns.unitEvents('kubelet.service')).filter((e) => e.fromSystemd && e.jobType === 'restart' && e.result === 'done');
  t.equal(restarts.length, 1, "the namespace's journal: one restart of kubelet, ordered by systemctl restart from the container");
  t.equal((await kubelet.starts()).length, 2, 'two starts: the boot and the restart');
});
