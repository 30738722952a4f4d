/**
 * A minimal tar (POSIX ustar) writer for evidence bundles, gzipped with node:zlib.
 *
 * Why not the system `tar`: it would need a temporary directory of files to archive, runs in the
 * node's namespaces when called through the host prefix (where the agent's stateDir is not the same
 * path), and is one more process that can hang; why not a dependency: regular files with short names
 * are all a bundle holds, which is 60 lines of header arithmetic (the format is in POSIX.1-2008,
 * pax "ustar Interchange Format"). Tests read the archives back with the system `tar`.
 */
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

export interface TarEntry {
  /** A relative path, at most 100 bytes (bundle entries are `<bundle>/<file>`). */
  name: string;
  data: Buffer;
  mtimeMs: number;
}

const BLOCK = 512;

function octal(n: number, width: number): string {
  // width-1 octal digits, then NUL.
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

export function tarHeader(name: string, size: number, mtimeMs: number): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.length > 100) throw new Error(`tar entry name longer than 100 bytes: ${name}`);
  if (size > 0o77777777777) throw new Error(`tar entry too large: ${name}`);
  const h = Buffer.alloc(BLOCK, 0);
  nameBytes.copy(h, 0);
  h.write(octal(0o644, 8), 100, 'ascii'); // mode
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(Math.floor(mtimeMs / 1000), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum field counts as spaces while summing
  h.write('0', 156, 'ascii'); // regular file
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

/** The uncompressed archive. */
export function tar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(tarHeader(e.name, e.data.length, e.mtimeMs), e.data);
    const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(BLOCK * 2, 0));
  return Buffer.concat(parts);
}

/** tar, then gzip on the thread pool (a 50 MiB bundle must not stall the event loop). */
export function tarGz(entries: readonly TarEntry[]): Promise<Buffer> {
  return promisify(gzip)(tar(entries));
}
