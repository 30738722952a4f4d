/**
 * Issue 14 item 7: a broken remediation state file. The remediator is the real one over a real state
 * directory; sweeps are driven by hand (`afterSweep`), as the agent drives them.
 */
import { mkdir, mkdtemp, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { resolveConfig } from '../agent/config.js';
import { RealHost } from '../platform/host.js';
import { createRemediator } from '../remediations/index.js';

async function remediatorIn(t: { teardown(fn: () => unknown): void }, prepare: (stateDir: string) => Promise<void>) {
  const stateDir = await mkdtemp(join(tmpdir(), 'nm-hostile-state-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  await prepare(stateDir);
  const config = resolveConfig({ stateDir, nodeName: 'n1' });
  const r = createRemediator({ config, host: new RealHost(), logger: pino({ level: 'silent' }), recordAction: () => undefined });
  t.teardown(() => r.stop());
  return { r, stateDir };
}

t.test('a corrupt state.json: the error stays on /status after sweeps (before: gone after the first sweep)', async (t) => {
  const { r, stateDir } = await remediatorIn(t, (d) => writeFile(join(d, 'state.json'), '{"version": 1, "trunc'));
  await r.start();
  t.match(r.status(), { error: /state file was corrupt .*kept at .*state\.json\.corrupt-/, stateFileNotice: /budgets restarted conservatively/ });
  for (let i = 0; i < 3; i++) await r.afterSweep([]);
  t.match(r.status(), { error: /state file was corrupt/, stateFileNotice: /kept at/ }, 'still visible after three sweeps');
  t.ok((await readdir(stateDir)).some((f) => f.startsWith('state.json.corrupt-')), 'the corrupt file is kept');
});

t.test('a state.json that is a directory: reported, retried after every sweep, working once fixed (before: disabled until restart)', async (t) => {
  const { r, stateDir } = await remediatorIn(t, (d) => mkdir(join(d, 'state.json')));
  await r.start();
  t.match(r.status(), { error: /cannot load remediation state .*tried again after every sweep.*state\.json is a directory, not a regular file/ });
  await r.afterSweep([]);
  t.match(r.status(), { error: /state\.json is a directory/ }, 'still reported while it is one');
  // The operator removes it; the next sweep loads a fresh state and remediation works again.
  await rmdir(join(stateDir, 'state.json'));
  await r.afterSweep([]);
  t.notMatch(String(r.status().error ?? ''), /cannot load/, `recovered: ${JSON.stringify(r.status().error)}`);
  t.equal(r.status().error, undefined);
});
