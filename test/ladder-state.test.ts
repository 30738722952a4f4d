// The ladder's persistent state and the operator pause: atomic writes, corrupt files, kill -9 while writing.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import t from 'tap';
import { writeFileAtomic } from '../platform/atomic-file.js';
import { emptyState } from '../remediations/decide.js';
import { clearPause, pausePath, readPause, writePause } from '../remediations/pause.js';
import { CORRUPT_REBOOT_HOLD_MS, parseState, StateStore } from '../remediations/state.js';
import type { LadderState } from '../remediations/types.js';

const NOW = Date.parse('2026-11-27T10:00:00Z');

async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-ladder-state-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A pino logger whose lines the test can read. */
function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

function sampleState(): LadderState {
  const s = emptyState();
  s.seq = 3;
  s.problemSince = { pleg: NOW - 1000 };
  s.budgets.restarts.kubelet = [NOW - 5000];
  s.budgets.reboots = [NOW - 3_600_000];
  s.liveRestore = { enabled: true, observedAt: NOW };
  s.episode = {
    id: '20261127T100000Z-3',
    mode: 'enforce',
    trigger: 'pleg',
    reason: 'PLEGUnhealthy: x',
    triggers: ['pleg'],
    startedAt: NOW,
    ladder: ['restart-kubelet', 'restart-runtime', 'drain-reboot'],
    stepIndex: 1,
    phase: 'acting',
    stepStartedAt: NOW,
    judgeAt: null,
    deferred: null,
    state: 'active',
  };
  s.actions = [
    { id: '20261127T100000Z-3/1', episodeId: '20261127T100000Z-3', step: 'restart-kubelet', action: 'restart_kubelet', unit: 'kubelet', mode: 'enforce', intentAt: NOW - 130_000, reason: 'r', outcome: { result: 'success', detail: 'd', at: NOW - 129_000 } },
    { id: '20261127T100000Z-3/2', episodeId: '20261127T100000Z-3', step: 'restart-runtime', action: 'restart_docker', unit: 'docker', mode: 'enforce', intentAt: NOW, reason: 'r' },
  ];
  return s;
}

t.test('save then load returns the same state; no temporary file is left', async (t) => {
  const dir = await tempDir(t);
  const { logger } = capture();
  const store = new StateStore(join(dir, 'state'), logger);
  t.same((await store.load(NOW)).state, emptyState(), 'missing file: a fresh state');
  const s = sampleState();
  await store.save(s);
  const again = await new StateStore(join(dir, 'state'), logger).load(NOW);
  t.same(again.state, s);
  t.notOk(again.corrupt);
  t.same(await readdir(join(dir, 'state')), ['state.json']);
});

t.test('concurrent saves are serialized: the last one wins, the file is always whole', async (t) => {
  const dir = await tempDir(t);
  const store = new StateStore(dir, capture().logger);
  const saves = [];
  for (let i = 0; i < 50; i++) {
    const s = emptyState();
    s.seq = i;
    saves.push(store.save(s));
  }
  await Promise.all(saves);
  t.equal(parseState(await readFile(store.path, 'utf8')).seq, 49);
  t.same(await readdir(dir), ['state.json']);
});

t.test('a corrupt state file is kept aside and replaced by a conservative state, with an error logged', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['truncated JSON', JSON.stringify(sampleState()).slice(0, 100), /not JSON/],
    ['empty file (power loss before the data)', '', /not JSON/],
    ['another version', JSON.stringify({ ...sampleState(), version: 2 }), /not a version 1 ladder state: \/version must be equal to constant/],
    ['wrong type deep inside', JSON.stringify({ ...sampleState(), budgets: { restarts: { kubelet: ['x'] }, reboots: [], noRebootBefore: null } }), /\/budgets\/restarts\/kubelet\/0 must be number/],
    ['an unknown step', JSON.stringify({ ...sampleState(), actions: [{ ...sampleState().actions[0], step: 'format-disk' }] }), /\/actions\/0\/step/],
    ['not an object', '[]', /not a version 1 ladder state/],
  ];
  for (const [name, text, why] of cases) {
    await t.test(name, async (t) => {
      const dir = await tempDir(t);
      await writeFile(join(dir, 'state.json'), text);
      const { logger, lines } = capture();
      const store = new StateStore(dir, logger);
      const loaded = await store.load(NOW);
      t.match(loaded.corrupt, { keptAt: join(dir, 'state.json.corrupt-2026-11-27T10-00-00-000Z'), error: why });
      t.equal(await readFile(loaded.corrupt!.keptAt, 'utf8'), text, 'the corrupt file is kept byte for byte');
      const expected = emptyState();
      expected.budgets.noRebootBefore = NOW + CORRUPT_REBOOT_HOLD_MS;
      t.same(loaded.state, expected, 'conservative: no reboot request for 24h');
      t.same(parseState(await readFile(store.path, 'utf8')), expected, 'and that is on disk');
      const err = lines.find((l) => l.level === 50);
      t.match(err, { msg: /corrupt: kept aside, replaced by a conservative state/, keptAt: loaded.corrupt!.keptAt, noRebootBefore: '2026-11-28T10:00:00.000Z' });
    });
  }
});

t.test('an unreadable state file is an error, not a silent fresh start', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'state.json'));
  await t.rejects(new StateStore(dir, capture().logger).load(NOW), /state\.json is a directory, not a regular file/);
});

t.test('kill -9 while saving in a loop never leaves a partial state file', async (t) => {
  const dir = await tempDir(t);
  const stateTs = fileURLToPath(new URL('../platform/atomic-file.ts', import.meta.url));
  // A child process rewrites the file as fast as it can with ~200 KB states; we SIGKILL it mid-stream.
  const script = `
    const { writeFileAtomic } = await import(${JSON.stringify(stateTs)});
    const pad = 'x'.repeat(200000);
    process.stdout.write('ready\\n');
    for (let i = 0; ; i++) await writeFileAtomic(${JSON.stringify(join(dir, 'state.json'))}, JSON.stringify({ i, pad }));
  `;
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 100 + round * 37));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const parsed = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { i: number; pad: string };
    t.equal(parsed.pad.length, 200000, `round ${round}: complete file (write ${parsed.i})`);
  }
  // Temporary files of killed writers may remain (they are never read); the state file is whole.
  t.ok((await readdir(dir)).includes('state.json'));
});

t.test('writeFileAtomic creates the directory and replaces the file', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'a', 'b', 'f.json');
  await writeFileAtomic(path, 'one');
  await writeFileAtomic(path, 'two');
  t.equal(await readFile(path, 'utf8'), 'two');
  t.same(await readdir(join(dir, 'a', 'b')), ['f.json']);
});

t.test('pause file', async (t) => {
  const dir = await tempDir(t);
  t.equal(await readPause(dir), null, 'no file: not paused');
  await writePause(dir, { since: NOW, until: NOW + 600_000, reason: 'kernel upgrade' });
  t.same(await readPause(dir), { since: NOW, until: NOW + 600_000, reason: 'kernel upgrade' });
  t.match(JSON.parse(await readFile(pausePath(dir), 'utf8')), { version: 1, since: '2026-11-27T10:00:00.000Z', until: '2026-11-27T10:10:00.000Z' });
  await writePause(dir, { since: NOW, until: null, reason: '' });
  t.same(await readPause(dir), { since: NOW, until: null, reason: '' }, 'replaced; no end');
  t.equal(await clearPause(dir), true);
  t.equal(await clearPause(dir), false, 'resume without a pause');
  t.equal(await readPause(dir), null);

  for (const [name, text, why] of [
    ['garbage', 'paused!', /is invalid .*remove it with `nodemedic resume`/],
    ['bad time', JSON.stringify({ version: 1, since: 'yesterday', until: null, reason: '' }), /since: not a time: "yesterday"/],
    ['bad until', JSON.stringify({ version: 1, since: '2026-11-27T10:00:00Z', until: 5, reason: '' }), /until: not a time: 5/],
  ] as const) {
    await writeFile(pausePath(dir), text);
    const p = await readPause(dir);
    t.match(p, { until: null, error: why }, `${name}: fails closed (paused, with the error)`);
  }
});
