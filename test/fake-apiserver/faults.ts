/**
 * Fault injection for the fake API server, built on its small hooks (`fault`, `inject`, `delay`):
 * outage windows (503 like an overloaded or restarting kube-apiserver, or no answer at all), and a
 * write applied after the client gave up (the client's timeout fires, the server applies the PATCH
 * later: the real server does not undo a request whose client went away).
 */
import type { FakeApiServer, FaultMode } from './server.js';

/** An outage of `mode` from now for `ms`; resolves when it is over. */
export function outage(fake: FakeApiServer, mode: Exclude<FaultMode, 'none'>, ms: number): Promise<{ from: number; to: number }> {
  const from = Date.now();
  fake.fault = mode;
  return new Promise((resolve) =>
    setTimeout(() => {
      fake.fault = 'none';
      resolve({ from, to: Date.now() });
    }, ms),
  );
}

/**
 * The next request matching `method` and `path` is applied `ms` later (after the client's timeout,
 * if `ms` exceeds it). Resolves with the time it was applied.
 */
export function delayNext(fake: FakeApiServer, method: string, path: RegExp, ms: number): Promise<number> {
  let armed = true;
  let done!: (at: number) => void;
  const applied = new Promise<number>((r) => (done = r));
  const prev = fake.delay;
  fake.delay = (m, p) => {
    if (armed && m === method && path.test(p)) {
      armed = false;
      fake.delay = prev;
      setTimeout(() => done(Date.now()), ms + 5);
      return ms;
    }
    return prev?.(m, p);
  };
  return applied;
}
