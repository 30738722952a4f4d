import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsync a directory, so that a rename or unlink in it survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces `path` with `data` so that after a crash or power loss the file holds either the old or
 * the new content, never a mix or nothing: a temporary file in the same directory is written and
 * fsynced, renamed over `path`, and the directory fsynced.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  mode = 0o644,
  opts: { dirMode?: number; syncDirBestEffort?: boolean } = {},
): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: opts.dirMode ?? 0o755 });
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'wx', mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  // The file is in place either way; a caller whose file is not state may accept an unsynced directory.
  if (opts.syncDirBestEffort) await syncDir(dir).catch(() => undefined);
  else await syncDir(dir);
}

/** Removes `path` durably; false if it did not exist. */
export async function removeFileDurably(path: string): Promise<boolean> {
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  await syncDir(dirname(path));
  return true;
}

/** Renames `path` aside durably (e.g. a corrupt state file kept for inspection). */
export async function moveAside(path: string, to: string): Promise<void> {
  await rename(path, to);
  await syncDir(dirname(path));
}
