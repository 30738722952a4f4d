import { copyFile, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

/** Where Debian's busybox-static puts its (statically linked) binary. */
export const BUSYBOX = '/bin/busybox';

/** The applets linked into the image; containers run `sleep`, `sh`, `true`. */
const APPLETS = ['sh', 'sleep', 'true', 'false', 'cat', 'echo', 'ls', 'ps', 'kill'];

/**
 * Writes a tarball of a minimal root filesystem (busybox-static and a few applets), suitable for
 * `docker import` / `POST /images/create?fromSrc=-`, so tests run containers without a registry.
 * Returns the tarball's path inside `dir`.
 */
export async function buildBusyboxTar(dir: string): Promise<string> {
  try {
    await stat(BUSYBOX);
  } catch {
    throw new Error(`${BUSYBOX} is missing: install Debian's busybox-static (npm run test:setup)`);
  }
  const stage = await mkdtemp(join(tmpdir(), 'nm-rootfs-'));
  try {
    for (const d of ['bin', 'dev', 'etc', 'proc', 'sys', 'tmp']) await mkdir(join(stage, d));
    await copyFile(BUSYBOX, join(stage, 'bin', 'busybox'));
    for (const a of APPLETS) await symlink('busybox', join(stage, 'bin', a));
    const tar = join(dir, 'busybox-rootfs.tar');
    await execa('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', stage, '-cf', tar, '.'], { timeout: 30_000, stdin: 'ignore' });
    return tar;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
