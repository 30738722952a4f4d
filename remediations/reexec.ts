/**
 * The `reexec-systemd` ladder step (issue 15): re-execute systemd (PID 1) so that it rebuilds its bus
 * connections, the runbook's `systemctl daemon-reexec`. When the bus itself does not answer, systemctl
 * cannot deliver that request, so the step falls back to SIGTERM to PID 1, which systemd as the system
 * manager treats as a reexec request (systemd(1): "This is mostly equivalent to systemctl
 * daemon-reexec") and which needs no D-Bus.
 *
 * Every command goes through the host command boundary (`hostCommandPrefix`): the signal is sent by
 * `kill -s TERM 1` on the node's side, never by `process.kill(1)` from the agent, whose own PID 1
 * may be anything (in tests, this machine's PID 1, which is not systemd and must never be signalled).
 * Before signalling, the step checks that PID 1 is systemd, and refuses otherwise.
 */
import { scanStuckRunc } from '../checks/systemd-pid1.js';
import { formatDuration } from '../platform/duration.js';
import { within } from '../platform/deadline.js';
import type { CommandResult, Host } from '../platform/host.js';

export interface ReexecOptions {
  /** How long PID 1 has to answer one call (`checks.systemd.timeout`). */
  busTimeoutMs: number;
  /** The whole step, verification included (`remediation.commandTimeout`). */
  timeoutMs: number;
  /** Where the node's processes are listed (`checks.systemd.procPath`), for the optional runc kill. */
  procPath: string;
  /** Kill runc processes older than this after a verified reexec; undefined: never. */
  killStuckRuncAfterMs?: number;
  /** Between verification attempts. Default 250 ms. */
  pollMs?: number;
}

export interface ReexecOutcome {
  result: 'success' | 'failure';
  /** One sentence for logs, `/status` and events. */
  detail: string;
  /** How the reexec was requested. */
  method?: 'daemon-reexec' | 'SIGTERM';
}

const TIMEOUT_EXIT = new Set([124, 137]);

/** A host command with timeout(1) on the node's side of the prefix and a local backstop; never rejects. */
async function bounded(host: Host, argv: string[], ms: number, maxOutputBytes = 64 * 1024): Promise<CommandResult> {
  const run = host.run(['timeout', '-k', '1s', `${Math.max(1, ms) / 1000}s`, ...argv], { timeoutMs: ms + 2500, killAfterMs: 500, maxOutputBytes });
  return within(run, ms + 4000, () => ({ argv, exitCode: undefined, stdout: '', stderr: '', timedOut: true, notFound: false, outputCapped: false, error: 'no answer' }));
}

function timedOut(r: CommandResult): boolean {
  return r.timedOut || (r.exitCode !== undefined && TIMEOUT_EXIT.has(r.exitCode));
}

function why(r: CommandResult): string {
  if (timedOut(r)) return 'no answer';
  return (r.stderr.trim().split('\n')[0] || r.error || `exit code ${String(r.exitCode)}`).slice(0, 200);
}

/** `YYYY-MM-DD HH:MM:SS` in UTC, for `journalctl --since` run with TZ=UTC (works with systemd 219). */
function journalTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Re-executes PID 1 and verifies it: PID 1 answers `systemctl show` again and its journal says
 * "Reexecuting." since the step began. Never rejects.
 */
export async function reexecSystemd(host: Host, opts: ReexecOptions): Promise<ReexecOutcome> {
  const started = host.clock.now();
  const deadline = started + opts.timeoutMs;
  // One second of slack: the journal's --since is second-precise.
  const since = journalTime(started - 1000);

  let method: ReexecOutcome['method'] = 'daemon-reexec';
  const dr = await bounded(host, ['systemctl', 'daemon-reexec'], opts.busTimeoutMs);
  let how = 'systemctl daemon-reexec';
  if (dr.exitCode !== 0) {
    // The bus did not take the request: ask PID 1 by signal, but only if PID 1 is systemd.
    const comm = await bounded(host, ['cat', '/proc/1/comm'], 5000, 4096);
    const name = comm.stdout.trim();
    if (comm.exitCode !== 0 || name !== 'systemd') {
      return {
        result: 'failure',
        detail: `systemctl daemon-reexec failed (${why(dr)}), and PID 1 is ${comm.exitCode === 0 ? JSON.stringify(name) : `unknown (${why(comm)})`}, not systemd: not signalling it`,
      };
    }
    method = 'SIGTERM';
    const k = await bounded(host, ['kill', '-s', 'TERM', '1'], 5000);
    if (k.exitCode !== 0) return { result: 'failure', method, detail: `systemctl daemon-reexec failed (${why(dr)}) and kill -s TERM 1 failed too (${why(k)})` };
    how = `kill -s TERM 1 (systemctl daemon-reexec: ${why(dr)})`;
  }

  // Verify: PID 1 answers again.
  let answered: string | undefined;
  let last = '';
  while (host.clock.now() < deadline) {
    const left = deadline - host.clock.now();
    const q = await bounded(host, ['systemctl', 'show', '--property=Version'], Math.max(1000, Math.min(opts.busTimeoutMs, left)), 4096);
    const m = /^Version=(.*)$/m.exec(q.stdout);
    if (q.exitCode === 0 && m) {
      answered = (m[1] ?? '').trim();
      break;
    }
    last = why(q);
    await sleep(opts.pollMs ?? 250);
  }
  const took = formatDuration(host.clock.now() - started);
  if (answered === undefined) return { result: 'failure', method, detail: `${how} was sent but PID 1 still does not answer after ${took} (${last})` };

  // ...and its journal shows the reexec (journald may take a moment to write it).
  let journal: 'seen' | 'absent' | string = 'absent';
  for (let i = 0; i < 8; i++) {
    const j = await bounded(host, ['env', 'TZ=UTC', 'journalctl', '-q', '--no-pager', '-o', 'cat', '_PID=1', `--since=${since}`], 5000, 512 * 1024);
    if (j.exitCode !== 0) {
      journal = `unreadable (${why(j)})`;
      break;
    }
    if (/^Reexecuting\.$/m.test(j.stdout)) {
      journal = 'seen';
      break;
    }
    await sleep(250);
  }
  if (journal === 'absent') return { result: 'failure', method, detail: `${how}: PID 1 answers (systemd ${answered}) but its journal shows no "Reexecuting." since ${since} UTC` };

  let killed = '';
  if (opts.killStuckRuncAfterMs !== undefined) {
    try {
      const stuck = await scanStuckRunc(host, opts.procPath, Math.round(opts.killStuckRuncAfterMs / 1000));
      if (stuck.count) {
        const k = await bounded(host, ['kill', '-s', 'KILL', '--', ...stuck.pids.map(String)], 5000);
        killed = `; killed ${stuck.count} runc process(es) older than ${formatDuration(opts.killStuckRuncAfterMs)}${k.exitCode === 0 ? '' : ` (kill: ${why(k)})`}`;
      } else killed = `; no runc process older than ${formatDuration(opts.killStuckRuncAfterMs)}`;
    } catch (e) {
      killed = `; stuck runc not killed: ${(e as Error).message}`;
    }
  }
  const seen = journal === 'seen' ? 'the journal says "Reexecuting."' : `the journal is ${journal}`;
  return { result: 'success', method, detail: `systemd re-executed by ${how}: PID 1 answers again (systemd ${answered}) after ${took}, ${seen}${killed}` };
}
