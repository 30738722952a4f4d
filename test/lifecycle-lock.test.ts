/**
 * The one-agent-per-stateDir lock (agent/state-lock.ts), in process: a live holder refuses a second
 * taker with its PID, a release frees it, a socket left by a dead holder is taken over, and a state
 * directory too deep for a socket path falls back to an abstract socket named after it.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LOCK_NAME, StateDirLockedError, lockStateDir } from '../agent/state-lock.js';

t.test('held, refused with the holder named, released, taken again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = join(dir, 'state');
  const first = await lockStateDir(state, 4242);
  t.ok(existsSync(join(state, LOCK_NAME)), 'the lock socket is in the state directory');
  const err = await lockStateDir(state).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof StateDirLockedError);
  t.match((err as Error).message, `another nodemedic agent (pid 4242) is running with stateDir ${state}`);
  await first.release();
  t.notOk(existsSync(join(state, LOCK_NAME)), 'released: the socket file is gone');
  const again = await lockStateDir(state);
  await again.release();
});

t.test('a socket file nobody listens on (its agent was killed) is taken over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A Unix socket file whose listener is gone: what kill -9 leaves behind.
  const path = join(dir, LOCK_NAME);
  const holder = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, '-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => holder.stdout!.once('data', r));
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  t.ok(existsSync(path), 'a stale socket file');
  const lock = await lockStateDir(dir);
  t.pass('taken over');
  await lock.release();
});

t.test('a state directory too deep for a socket path uses an abstract socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const deep = join(dir, 'x'.repeat(60), 'y'.repeat(60));
  mkdirSync(deep, { recursive: true });
  const first = await lockStateDir(deep);
  t.match(first.address, /^\0nodemedic-state-[0-9a-f]{32}$/);
  await t.rejects(lockStateDir(deep), StateDirLockedError);
  await first.release();
  const again = await lockStateDir(deep);
  await again.release();
});
