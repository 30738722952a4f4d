/**
 * Imported first by the CLI (agent/cli.ts), before anything heavy loads: for `nodemedic run`, catch
 * SIGHUP, SIGTERM and SIGINT from the first moment, so that a `systemctl reload` or a stop that
 * arrives while the modules are still loading (~0.3 s) neither kills the daemon (SIGHUP's default
 * action) nor is lost. They are queued; the `run` command takes them over and replays them. Every
 * other command gets the default dispositions back, and a signal queued meanwhile is raised again.
 *
 * No imports: this module must evaluate before the rest of the program is loaded.
 */
type Sig = 'SIGHUP' | 'SIGTERM' | 'SIGINT';
const SIGNALS: readonly Sig[] = ['SIGHUP', 'SIGTERM', 'SIGINT'];
const queued: Sig[] = [];
const handlers = new Map<Sig, () => void>();

if (process.argv[2] === 'run') {
  for (const s of SIGNALS) {
    const h = (): void => {
      queued.push(s);
    };
    handlers.set(s, h);
    process.on(s, h);
  }
}

/** Stops queueing and returns what arrived so far, in order (the caller installs its own handlers first). */
export function takeEarlySignals(): Sig[] {
  for (const [s, h] of handlers) process.off(s, h);
  handlers.clear();
  return queued.splice(0);
}

/** For commands other than `run`: default dispositions back, and a queued signal raised again. */
export function releaseEarlySignals(): void {
  const pending = takeEarlySignals();
  const first = pending[0];
  if (first && process.listenerCount(first) === 0) process.kill(process.pid, first);
}
