/**
 * A FUSE mount whose daemon never answers: the stand-in for a dead NFS mount (TESTING.md). The test
 * process opens `/dev/fuse`, hands that descriptor to `mount -t fuse -o fd=3,...` and never reads it,
 * so the kernel's INIT request is never answered and every access under the mount point blocks
 * (stat, open, readdir, statfs). `close()` closes the descriptor, which aborts the connection (every
 * blocked call fails with ENOTCONN), then detaches the mount (`umount -l`) and removes the directory.
 *
 * The descriptor is opened with O_CLOEXEC (libuv's default), so processes the test spawns later do
 * not inherit it; only `mount` gets it, explicitly, as its fd 3.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { integrationRequired, which } from '../helpers/require.js';

export interface HungMount {
  /** The mount point; anything under it blocks until `close()`. */
  readonly dir: string;
  /** Aborts the connection, detaches the mount, removes the directory. Idempotent. */
  close(): Promise<void>;
}

/** Why a hung FUSE mount cannot be made here, or undefined when it can. */
export function fuseUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'a FUSE mount needs root';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
  if (!which('mount') || !which('umount')) return 'mount/umount not installed';
  return undefined;
}

function run(cmd: string, args: readonly string[], stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'], timeoutMs = 10_000): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio });
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** Whether `dir` is a mount point now, from /proc/self/mountinfo (never touches `dir` itself). */
export function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === dir);
}

/** Mounts a FUSE filesystem at a new temp directory and never answers it. */
export async function hungFuseMount(): Promise<HungMount> {
  const why = fuseUnavailable();
  if (why) throw new Error(why);
  const dir = mkdtempSync(join(tmpdir(), 'nm-fuse-hang-'));
  let fd: number | undefined = openSync('/dev/fuse', 'r+');
  const m = await run('mount', ['-t', 'fuse', '-o', 'fd=3,rootmode=40000,user_id=0,group_id=0', 'nodemedic-hang', dir], ['ignore', 'ignore', 'pipe', fd]);
  if (m.code !== 0) {
    closeSync(fd);
    rmdirSync(dir);
    throw new Error(`mount -t fuse failed (${m.code}): ${m.stderr.trim()}`);
  }
  let closed = false;
  return {
    dir,
    async close() {
      if (closed) return;
      closed = true;
      // Closing the daemon's end aborts the connection: every blocked call returns ENOTCONN.
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      await run('umount', ['-l', dir]);
      if (!isMounted(dir)) {
        try {
          rmdirSync(dir);
        } catch {
          // a process still inside it; the directory is empty and in tmpdir
        }
      }
    },
  };
}

/**
 * A hung mount for one test, released at its teardown (registered first, so it runs after the test's
 * own teardowns: agents are gone before the mount is). Undefined where one cannot be made: then the
 * test is skipped, or failed where integration tests are required.
 */
export async function hungMountFor(t: { teardown(fn: () => unknown): void; skip(m: string): void; fail(m: string): void }): Promise<HungMount | undefined> {
  const why = fuseUnavailable();
  if (why) {
    if (integrationRequired) t.fail(why);
    else t.skip(why);
    return undefined;
  }
  const mount = await hungFuseMount();
  t.teardown(() => mount.close());
  return mount;
}
