/**
 * `pleg.source: file` on a hung filesystem (a FUSE mount whose daemon never answers, standing in
 * for a dead NFS server; made and removed by the test): the agent still listens, the disk and load
 * checks report, SIGHUP reloads and SIGTERM ends it promptly. Before, PlegMonitor.start() awaited
 * its first look at the file without a bound, and checks started before the listener: the agent
 * never listened, never swept and ignored SIGTERM and SIGHUP until the mount answered.
 */
import { renameSync, symlinkSync, unlinkSync } from 'node:fs';
import t from 'tap';
import { hungMountFor } from './harness/fuse-hang.js';
import { agentDir, getJson } from './helpers/lifecycle.js';

t.test('a PLEG log file on a hung mount: listener, disk and load, SIGHUP and SIGTERM all work', async (t) => {
  const mount = await hungMountFor(t);
  if (!mount) return;
  // In a subdirectory: even finding the directory blocks (a lookup the daemon never answers).
  const file = `${mount.dir}/log/kubelet.log`;
  const a = await agentDir(t, {
    checks: {
      disk: { enabled: true, paths: ['/'] },
      load: { enabled: true },
      pleg: { enabled: true, source: 'file', file, unit: 'nodemedic-test-no-such.service' },
    },
  });
  const p = a.spawn();
  const spawned = performance.now();
  // The listener: up before anything that may wait on the node.
  let healthz = 0;
  while (healthz !== 200) {
    if (!p.alive) throw new Error(`agent exited:\n${p.dump()}`);
    if (performance.now() - spawned > 60_000) throw new Error(`not listening after 60 s:\n${p.dump()}`);
    healthz = await fetch(`${a.url}/healthz`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status,
      () => 0,
    );
    if (healthz !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  t.pass(`listening ${Math.round(performance.now() - spawned)} ms after spawn`);
  // Disk and load report while pleg's run hangs on the mount.
  for (;;) {
    const st = await getJson(`${a.url}/status`);
    const ids = (st.results as { check: string; status: string }[]).map((r) => r.check);
    if (ids.includes('disk') && ids.includes('load')) {
      t.match(
        (st.results as { check: string; status: string }[]).filter((r) => r.check !== 'pleg').map((r) => r.status),
        [/^(ok|problem)$/, /^(ok|problem)$/],
        'disk and load have verdicts',
      );
      break;
    }
    if (performance.now() - spawned > 90_000) throw new Error(`disk and load never reported:\n${p.dump()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // The first sweep ends when pleg's run times out; then a SIGHUP reloads.
  await p.waitLog(/^nodemedic ready$/, 90_000);
  const pleg = ((await getJson(`${a.url}/status`)).results as { check: string; status: string; reason: string }[]).find((r) => r.check === 'pleg');
  t.match(pleg, { status: 'unknown' }, 'pleg: unknown, never ok');
  p.signal('SIGHUP');
  await p.waitLog(/^configuration reloaded$/, 30_000);
  t.equal((await fetch(`${a.url}/healthz`)).status, 200, 'still serving after the reload');

  const sent = performance.now();
  p.signal('SIGTERM');
  const { code, signal, at } = await p.exited;
  t.ok(at - sent < 10_000, `exited ${Math.round(at - sent)} ms after SIGTERM`);
  // A thread stuck in the kernel on the mount cannot be joined: the agent then dies of the SIGTERM itself.
  t.ok(code === 0 || signal === 'SIGTERM', `exit ${code ?? signal}`);
  t.ok(p.logs(/abandoned|did not stop in time/).length > 0, 'the stuck check is named in the log');
  t.same(p.nonJsonLines, [], 'every stdout line is JSON');
});

t.test('SIGHUP with the config on a hung mount: the reload is rejected within its bound, the agent serves on', async (t) => {
  const mount = await hungMountFor(t);
  if (!mount) return;
  const a = await agentDir(t, { checks: { load: { enabled: true } } });
  // The agent reads its config through a symlink the test can point at the hung mount.
  const real = `${a.dir}/real-config.yaml`;
  renameSync(a.configPath, real);
  symlinkSync(real, a.configPath);
  const p = a.spawn();
  await p.waitLog(/^nodemedic ready$/, 60_000);

  unlinkSync(a.configPath);
  symlinkSync(`${mount.dir}/config.yaml`, a.configPath);
  const sent = performance.now();
  p.signal('SIGHUP');
  const rejected = await p.waitLog(/^reload rejected/, 30_000);
  const took = performance.now() - sent;
  t.match(JSON.stringify(rejected), /no answer within 5000 ms/, 'the rejection names the read that did not answer');
  t.ok(took < 15_000, `rejected ${Math.round(took)} ms after SIGHUP (bound: 5 s)`);
  t.equal((await fetch(`${a.url}/healthz`)).status, 200, 'still serving, with the old config');

  // Back on a readable file, the next SIGHUP applies.
  unlinkSync(a.configPath);
  symlinkSync(real, a.configPath);
  p.signal('SIGHUP');
  await p.waitLog(/^configuration reloaded$/, 30_000);
  const stopAt = performance.now();
  p.signal('SIGTERM');
  const { at } = await p.exited;
  t.ok(at - stopAt < 10_000, `exited ${Math.round(at - stopAt)} ms after SIGTERM`);
  t.same(p.nonJsonLines, [], 'every stdout line is JSON');
});
