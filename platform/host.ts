import { open, statfs } from 'node:fs/promises';
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
    const fh = await open(path, 'r');
    try {
      // Chunked, because /proc files report size 0 and most reads are tiny.
      const chunks: Buffer[] = [];
      let n = 0;
      while (n < maxBytes) {
        const buf = Buffer.alloc(Math.min(64 * 1024, maxBytes - n));
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        chunks.push(buf.subarray(0, bytesRead));
        n += bytesRead;
      }
      return Buffer.concat(chunks, n).toString('utf8');
    } finally {
      await fh.close();
    }
  }

  async statfs(path: string): Promise<StatFs> {
    const s = await statfs(path);
    return { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
  }
}
