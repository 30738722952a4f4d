/**
 * An operator's command run on the node with its output passed on as it comes (`nodemedic maintain`):
 * unlike Host.run, nothing is buffered for parsing, so a 20-minute `yum update` shows its progress and
 * its output is never cut. Argument array only, never a shell string; the argv goes behind the same
 * `hostCommandPrefix` as every host command, so in a container it runs on the node.
 */
import { execa } from 'execa';

export interface StreamedCommandOptions {
  /** `hostCommandPrefix`. */
  prefix: readonly string[];
  /** The command's bound; then SIGTERM to its process group, and SIGKILL `killAfterMs` later. */
  timeoutMs: number;
  /** Default 10 s: a package manager given SIGTERM may take a moment to release its lock. */
  killAfterMs?: number;
  /** Stops the command like the timeout does (Ctrl-C, SIGTERM, SIGHUP of `nodemedic maintain`). */
  signal?: AbortSignal;
  /** Each piece of output as it arrives, raw bytes, tagged with its stream. */
  onOutput(chunk: Buffer, stream: 'stdout' | 'stderr'): void;
}

export interface StreamedCommandResult {
  /** The argv actually executed (prefix included). */
  argv: readonly string[];
  /** Undefined when it did not exit by itself (timed out, aborted, or could not start). */
  exitCode: number | undefined;
  /** The signal that ended it, if one did. */
  signal: string | undefined;
  timedOut: boolean;
  aborted: boolean;
  /** Could not be started at all (`ENOENT`, `EACCES` of the first argv element). */
  notFound: boolean;
  /** One line when it did not exit 0. */
  error?: string;
}

function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // ESRCH: the group is gone.
  }
}

/** Runs `[...prefix, ...argv]`; resolves however it ends, never rejects. stdin is not connected: the command must not ask. */
export async function runStreamed(argv: readonly string[], opts: StreamedCommandOptions): Promise<StreamedCommandResult> {
  if (!argv.length) throw new TypeError('empty argv');
  const full = [...opts.prefix, ...argv];
  const [file, ...args] = full as [string, ...string[]];
  const child = execa(file, args, {
    reject: false,
    stdin: 'ignore',
    buffer: false,
    stdout: 'pipe',
    stderr: 'pipe',
    // Its own process group, so a timeout reaches what it started (nsenter forks; yum runs rpm).
    detached: true,
  });
  child.stdout?.on('data', (b: Buffer) => opts.onOutput(b, 'stdout'));
  child.stderr?.on('data', (b: Buffer) => opts.onOutput(b, 'stderr'));
  let timedOut = false;
  let aborted = false;
  let killTimer: NodeJS.Timeout | undefined;
  const stop = (): void => {
    signalGroup(child.pid, 'SIGTERM');
    killTimer ??= setTimeout(() => signalGroup(child.pid, 'SIGKILL'), opts.killAfterMs ?? 10_000);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, opts.timeoutMs);
  const onAbort = (): void => {
    aborted = true;
    stop();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  // A process exiting while this one does must not leave the group running (the SSH session died).
  const onExit = (): void => signalGroup(child.pid, 'SIGKILL');
  process.once('exit', onExit);
  const r = await child;
  clearTimeout(timer);
  clearTimeout(killTimer);
  opts.signal?.removeEventListener('abort', onAbort);
  process.off('exit', onExit);
  const code = (r as { code?: string }).code;
  const out: StreamedCommandResult = {
    argv: full,
    exitCode: timedOut || aborted ? undefined : r.exitCode,
    signal: r.signal ?? undefined,
    timedOut,
    aborted,
    notFound: code === 'ENOENT' || code === 'EACCES',
  };
  if (timedOut) out.error = `timed out after ${Math.round(opts.timeoutMs / 1000)}s`;
  else if (aborted) out.error = 'stopped (interrupted)';
  else if (out.notFound) out.error = `cannot run ${file}: ${code}`;
  else if (r.exitCode !== 0) out.error = r.signal ? `killed by ${r.signal}` : `exit code ${r.exitCode}`;
  return out;
}
