import { createHash } from 'node:crypto';
import { mkdirSync, realpathSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';

/** Another live agent holds the state directory. */
export class StateDirLockedError extends Error {
  override name = 'StateDirLockedError';
  constructor(
    readonly stateDir: string,
    readonly holderPid: number | undefined,
  ) {
    super(
      `another nodemedic agent${holderPid ? ` (pid ${holderPid})` : ''} is running with stateDir ${stateDir}; ` +
        'one agent per state directory (stop it, or give this one another stateDir)',
    );
  }
}

/** Held until `release()` (or the process's death, whatever kills it). */
export interface StateDirLock {
  /** Where the lock lives: a socket file in the state directory, or an abstract socket name. */
  readonly address: string;
  release(): Promise<void>;
}

/** File name of the lock socket inside `stateDir`. */
export const LOCK_NAME = 'agent.lock';
/** Unix socket paths are limited to 108 bytes (sun_path) including the NUL. */
const MAX_SOCKET_PATH = 100;
const PROBE_TIMEOUT_MS = 2000;

/**
 * One agent per `stateDir`, taken before anything in it is read.
 *
 * The lock is a Unix socket the agent listens on, `<stateDir>/agent.lock`: the kernel answers for
 * its holder's liveness. A live holder (even one stopped with SIGSTOP: the kernel queues the
 * connection) accepts a connection; the socket file of a holder that died (kill -9, a crash, a
 * reboot) refuses it, and is then removed and taken over. No PID file to go stale, no PID reuse to
 * be fooled by, and it works across PID and network namespaces (a DaemonSet's and a host's agent on
 * one hostPath). Where the path would be too long for a socket, an abstract socket named after the
 * directory's real path is used instead (then per network namespace only).
 *
 * One race is left: two agents that both find a stale socket at the same instant may both take
 * over. It needs two starts within microseconds of each other after an unclean death.
 */
export async function lockStateDir(stateDir: string, pid = process.pid): Promise<StateDirLock> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, LOCK_NAME);
  const address = Buffer.byteLength(file) <= MAX_SOCKET_PATH ? file : `\0nodemedic-state-${createHash('sha256').update(realpathSync(stateDir)).digest('hex').slice(0, 32)}`;
  for (let attempt = 0; ; attempt++) {
    const server = createServer((sock) => {
      sock.on('error', () => undefined);
      sock.end(`${JSON.stringify({ app: 'nodemedic', pid })}\n`);
    });
    server.unref();
    try {
      await listen(server, address);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 2) throw e;
      const holder = await probe(address);
      if (holder.alive) throw new StateDirLockedError(stateDir, holder.pid);
      // A socket file left by an agent that died: nobody listens on it.
      if (address === file) {
        try {
          unlinkSync(file);
        } catch {
          // gone already
        }
      }
      continue;
    }
    let released = false;
    return {
      address,
      async release() {
        if (released) return;
        released = true;
        // Closing a listening Unix socket removes its file (libuv unlinks it).
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }
}

function listen(server: Server, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Whether someone listens on `address` (and its PID, when it says). */
function probe(address: string): Promise<{ alive: boolean; pid?: number }> {
  return new Promise((resolve) => {
    const sock = connect(address);
    let data = '';
    let connected = false;
    const done = (r: { alive: boolean; pid?: number }): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const parsePid = (): number | undefined => {
      try {
        const pid = (JSON.parse(data.split('\n')[0] ?? '') as { pid?: unknown }).pid;
        return typeof pid === 'number' ? pid : undefined;
      } catch {
        return undefined;
      }
    };
    // Connected but silent (a holder stopped with SIGSTOP): alive all the same.
    const timer = setTimeout(() => done({ alive: connected }), PROBE_TIMEOUT_MS);
    sock.on('connect', () => (connected = true));
    sock.on('data', (b: Buffer) => {
      data += b.toString('utf8');
      if (data.length > 4096 || data.includes('\n')) done({ alive: true, pid: parsePid() });
    });
    sock.on('end', () => done({ alive: true, pid: parsePid() }));
    sock.on('error', () => done({ alive: connected }));
  });
}
