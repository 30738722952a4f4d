import { closeSync, constants as fsConstants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open, statfs, type FileHandle } from 'node:fs/promises';
import { execa, type ResultPromise } from 'execa';
import { systemClock, type Clock } from './clock.js';

/** How a command ended. Never thrown: callers turn failures into `unknown` findings. */
export interface CommandResult {
  /** The argv actually executed (with the host prefix applied). */
  argv: readonly string[];
  /** Undefined when the process did not exit by itself (killed, or never started). */
  exitCode: number | undefined;
  /** Capped to `maxOutputBytes`; never trust stdout of a timed-out command. */
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** The command could not be started (`ENOENT`, `EACCES`): the tool is not installed here. */
  notFound: boolean;
  /** True when the output hit `maxOutputBytes` and the process was stopped. */
  outputCapped: boolean;
  /** A one-line explanation for logs and findings when `exitCode !== 0`. */
  error?: string;
}

export interface RunOptions {
  /** Hard limit; the process gets SIGTERM, then SIGKILL `killAfterMs` later. */
  timeoutMs: number;
  /** Default 2000. */
  killAfterMs?: number;
  /** Default 1 MiB for each of stdout and stderr. */
  maxOutputBytes?: number;
  /**
   * Whether the command acts on the node itself (systemctl, journalctl, rpm) and so goes through
   * `hostCommandPrefix`. Default true.
   */
  onHost?: boolean;
}

/** A long-running command whose stdout is consumed line by line (`journalctl -f`). */
export interface LineStream {
  readonly pid: number | undefined;
  /** Resolves when the process exits, however it exits; never rejects. */
  readonly exited: Promise<{ exitCode: number | undefined; signal: string | undefined; stderr: string }>;
  /** SIGTERM, then SIGKILL after a grace period. */
  kill(): void;
}

export interface SpawnLinesOptions {
  onHost?: boolean;
  /** Lines longer than this are cut (the rest of the line is dropped), bounding memory. Default 64 KiB. */
  maxLineBytes?: number;
  /** Called for every line, without the newline. Lines arrive as raw bytes decoded as UTF-8. */
  onLine(line: string): void;
}

export interface StatFs {
  /** Bytes per block. */
  bsize: number;
  blocks: number;
  bfree: number;
  /** Blocks available to unprivileged users. */
  bavail: number;
  files: number;
  ffree: number;
}

/**
 * Everything a check may do to or read from the node. One narrow, injectable boundary: tests swap it
 * where a real component is impossible, but the default is the real machine.
 */
export interface Host {
  readonly clock: Clock;
  run(argv: readonly string[], opts: RunOptions): Promise<CommandResult>;
  spawnLines(argv: readonly string[], opts: SpawnLinesOptions): LineStream;
  /** Reads at most `maxBytes` (default 1 MiB) of a file. Rejects like `fs.readFile`. */
  readFile(path: string, maxBytes?: number): Promise<string>;
  /** `statfs(2)`. May hang on a dead network mount: callers bound it (see checks/disk.ts). */
  statfs(path: string): Promise<StatFs>;
}

export interface HostOptions {
  /** argv prefix for commands that act on the node, e.g. `[nsenter, -t, 1, -m, -u, -i, -n, -p, --]`. */
  commandPrefix?: readonly string[];
  clock?: Clock;
}

const MiB = 1024 * 1024;
const COMMAND_ENV = { LC_ALL: 'C', SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0' };

/** Sends a signal to a whole process group; a group that is already gone is not an error. */
function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: nothing left in the group.
  }
}

// Detached children do not die with us; end their groups when the agent exits, however it exits.
const liveGroups = new Set<number>();
let exitHook = false;
function trackGroup(pid: number | undefined): { release(): void } {
  if (!pid) return { release() {} };
  liveGroups.add(pid);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const g of liveGroups) signalGroup(g, 'SIGKILL');
    });
  }
  return { release: () => liveGroups.delete(pid) };
}

/** The real node. */
export class RealHost implements Host {
  readonly clock: Clock;
  private readonly prefix: readonly string[];

  constructor(opts: HostOptions = {}) {
    this.prefix = opts.commandPrefix ?? [];
    this.clock = opts.clock ?? systemClock;
  }

  private argv(argv: readonly string[], onHost = true): readonly string[] {
    if (argv.length === 0) throw new TypeError('empty argv');
    return onHost ? [...this.prefix, ...argv] : argv;
  }

  async run(cmd: readonly string[], opts: RunOptions): Promise<CommandResult> {
    const argv = this.argv(cmd, opts.onHost);
    const [file, ...args] = argv as [string, ...string[]];
    const maxBuffer = opts.maxOutputBytes ?? MiB;
    const child = execa(file, args, {
      reject: false,
      stdin: 'ignore',
      maxBuffer,
      encoding: 'utf8',
      stripFinalNewline: false,
      // Commands are parsed, so keep their output stable whatever the operator's locale is.
      env: COMMAND_ENV,
      // Its own process group, so a timeout reaches grandchildren too: `nsenter -p` forks, and
      // killing only nsenter would leave a `systemctl` stuck on a hung PID 1 holding our pipes.
      detached: true,
    });
    const group = trackGroup(child.pid);
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), opts.killAfterMs ?? 2000);
    }, opts.timeoutMs);
    const r = await child;
    clearTimeout(timer);
    clearTimeout(killTimer);
    group.release();
    const code = (r as { code?: string }).code;
    const notFound = code === 'ENOENT' || code === 'EACCES';
    const result: CommandResult = {
      argv,
      exitCode: timedOut || r.isMaxBuffer ? undefined : r.exitCode,
      stdout: typeof r.stdout === 'string' ? r.stdout : '',
      stderr: typeof r.stderr === 'string' ? r.stderr : '',
      timedOut,
      notFound,
      outputCapped: r.isMaxBuffer,
    };
    if (timedOut) result.error = `timed out after ${opts.timeoutMs} ms: ${argv.join(' ')}`;
    else if (r.failed) result.error = (r.shortMessage ?? '').split('\n')[0] || 'command failed';
    return result;
  }

  spawnLines(cmd: readonly string[], opts: SpawnLinesOptions): LineStream {
    const argv = this.argv(cmd, opts.onHost);
    const [file, ...args] = argv as [string, ...string[]];
    const maxLine = opts.maxLineBytes ?? 64 * 1024;
    const child: ResultPromise = execa(file, args, {
      reject: false,
      stdin: 'ignore',
      buffer: false,
      stdout: 'pipe',
      stderr: 'pipe',
      env: COMMAND_ENV,
      detached: true,
    });
    const group = trackGroup(child.pid);
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => {
      if (stderr.length < 4096) stderr += b.toString('utf8').slice(0, 4096 - stderr.length);
    });
    // Split on '\n' by hand so one huge line costs at most maxLine bytes of memory.
    let parts: Buffer[] = [];
    let size = 0;
    let overflow = false;
    child.stdout?.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
        take(chunk.subarray(start, nl));
        const line = Buffer.concat(parts, size).toString('utf8');
        parts = [];
        size = 0;
        overflow = false;
        opts.onLine(line);
        start = nl + 1;
      }
      if (start < chunk.length) take(chunk.subarray(start));
    });
    function take(piece: Buffer): void {
      if (overflow) return;
      const room = maxLine - size;
      if (piece.length > room) {
        overflow = true;
        piece = piece.subarray(0, room);
      }
      parts.push(Buffer.from(piece));
      size += piece.length;
    }
    const exited = child
      .then(
        (r) => ({ exitCode: r.exitCode, signal: r.signal, stderr }),
        (e: { exitCode?: number; signal?: string }) => ({ exitCode: e.exitCode, signal: e.signal, stderr }),
      )
      .finally(() => group.release());
    return {
      pid: child.pid,
      exited,
      kill: () => {
        signalGroup(child.pid, 'SIGTERM');
        setTimeout(() => signalGroup(child.pid, 'SIGKILL'), 2000).unref();
      },
    };
  }

  async readFile(path: string, maxBytes = MiB): Promise<string> {
    // /proc files report size 0 and are cut, not refused; a FIFO or a device is still refused.
    return readBoundedFile(path, { maxBytes, timeoutMs: HOST_READ_TIMEOUT_MS, overLimit: 'cut' });
  }

  async statfs(path: string): Promise<StatFs> {
    const s = await statfs(path);
    return { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
  }
}

// ---------------------------------------------------------------------------------------------
// Bounded reads of outside files

/** Bound on one `Host.readFile` (a /proc file answers in microseconds; a dead mount never). */
const HOST_READ_TIMEOUT_MS = 5000;

/** Why a bounded read refused or failed; `code` is an errno name or one of the three below. */
export class FileReadError extends Error {
  override name = 'FileReadError';
  constructor(
    readonly path: string,
    /** `NotRegularFile`, `TooLarge`, `Timeout`, or the errno code (`ENOENT`, `EACCES`, ...). */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface BoundedReadOptions {
  /** At most this many bytes are read. */
  maxBytes: number;
  /**
   * `refuse` (default): a file larger than `maxBytes` is an error (`TooLarge`), judged by its size
   * before anything is read and again by what is read (a file that grows, or /proc's size 0).
   * `cut`: return its first `maxBytes` bytes.
   */
  overLimit?: 'refuse' | 'cut';
}

/** What a non-regular file is, in words. */
export function fileKind(s: Stats): string {
  if (s.isFile()) return 'a regular file';
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSocket()) return 'a socket';
  return 'not a regular file';
}

function humanBytes(n: number): string {
  return n >= MiB ? `${Number((n / MiB).toFixed(1))} MiB` : n >= 1024 ? `${Number((n / 1024).toFixed(1))} KiB` : `${n} bytes`;
}

function tooLarge(path: string, size: number | undefined, maxBytes: number): FileReadError {
  const what = size === undefined ? `more than ${humanBytes(maxBytes)}` : `${humanBytes(size)}; the limit is ${humanBytes(maxBytes)}`;
  return new FileReadError(path, 'TooLarge', `${path} is too large (${what})`);
}

function notRegular(path: string, s: Stats): FileReadError {
  return new FileReadError(path, 'NotRegularFile', `${path} is ${fileKind(s)}, not a regular file`);
}

function errnoError(path: string, e: unknown): FileReadError {
  if (e instanceof FileReadError) return e;
  const err = e as NodeJS.ErrnoException;
  const plain: Record<string, string> = { ENOENT: 'does not exist', EACCES: 'is not readable (permission denied)', ENXIO: 'is a socket or a device without a reader' };
  const why = err.code && plain[err.code] ? `${path} ${plain[err.code]} (${err.code})` : `cannot read ${path}: ${err.message}`;
  return new FileReadError(path, err.code ?? 'EIO', why);
}

// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. O_NOCTTY: a
// terminal device never becomes our controlling terminal. Neither changes reading a regular file.
const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY;

/**
 * Reads an outside file (config, kubeconfig) synchronously, refusing what is not a regular file
 * (FIFO, device, directory) before reading a byte, and refusing (or cutting) more than `maxBytes`.
 * Not bounded in time: a file on a hung mount blocks; use `readBoundedFile` where that matters.
 * Throws FileReadError.
 */
export function readBoundedFileSync(path: string, opts: BoundedReadOptions): string {
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch (e) {
    throw errnoError(path, e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notRegular(path, st);
    if (opts.overLimit !== 'cut' && st.size > opts.maxBytes) throw tooLarge(path, st.size, opts.maxBytes);
    // One byte more than allowed tells a file that grew (or /proc's size 0) past the limit.
    const room = opts.overLimit === 'cut' ? opts.maxBytes : opts.maxBytes + 1;
    const buf = Buffer.allocUnsafe(Math.min(room, Math.max(st.size + 1, 64 * 1024)));
    const chunks: Buffer[] = [];
    let n = 0;
    for (;;) {
      const want = Math.min(buf.length, room - n);
      if (want <= 0) break;
      const got = readSync(fd, buf, 0, want, null);
      if (got === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, got)));
      n += got;
    }
    if (n > opts.maxBytes) throw tooLarge(path, undefined, opts.maxBytes);
    return Buffer.concat(chunks, n).toString('utf8');
  } catch (e) {
    throw errnoError(path, e);
  } finally {
    closeSync(fd);
  }
}

let abandoned = 0;

/**
 * Reads given up on (`readBoundedFile` timed out) whose system call has not returned: each holds a
 * thread of libuv's pool in the kernel, and process.exit() would wait for it forever (Node joins its
 * thread pool on exit). The agent's exit path asks, and dies of its signal instead when this is not 0.
 */
export function abandonedReads(): number {
  return abandoned;
}

/**
 * Reads an outside file (state, pause file, /proc, a log's tail) with every bound: refuses what is not
 * a regular file, refuses (or cuts) more than `maxBytes`, and gives up after `timeoutMs` (a file on a
 * dead NFS or FUSE mount never answers; the stuck thread-pool request is left to finish on its own and
 * its descriptor is closed then). Rejects with FileReadError.
 */
export async function readBoundedFile(path: string, opts: BoundedReadOptions & { timeoutMs: number }): Promise<string> {
  let timedOut = false;
  let fh: FileHandle | undefined;
  const work = (async () => {
    try {
      fh = await open(path, OPEN_FLAGS);
    } catch (e) {
      throw errnoError(path, e);
    }
    if (timedOut) {
      void fh.close().catch(() => undefined);
      throw new FileReadError(path, 'Timeout', `${path}: no answer within ${opts.timeoutMs} ms`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw notRegular(path, st);
      if (opts.overLimit !== 'cut' && st.size > opts.maxBytes) throw tooLarge(path, st.size, opts.maxBytes);
      const room = opts.overLimit === 'cut' ? opts.maxBytes : opts.maxBytes + 1;
      // Chunked, because /proc files report size 0 and most reads are tiny.
      const chunks: Buffer[] = [];
      let n = 0;
      while (n < room && !timedOut) {
        const buf = Buffer.alloc(Math.min(64 * 1024, room - n));
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        chunks.push(buf.subarray(0, bytesRead));
        n += bytesRead;
      }
      if (n > opts.maxBytes) throw tooLarge(path, undefined, opts.maxBytes);
      return Buffer.concat(chunks, n).toString('utf8');
    } catch (e) {
      throw errnoError(path, e);
    } finally {
      await fh.close().catch(() => undefined);
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      abandoned++;
      reject(new FileReadError(path, 'Timeout', `${path}: no answer within ${opts.timeoutMs} ms (a hung mount?)`));
    }, opts.timeoutMs);
  });
  // The loser of the race must not become an unhandled rejection; once it settles, its thread is free.
  work.then(
    () => undefined,
    () => undefined,
  ).finally(() => {
    if (timedOut) abandoned--;
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
