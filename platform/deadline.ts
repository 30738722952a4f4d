/**
 * Bounded waits. The work itself goes on after its deadline (a host command's `nsenter` can be killed,
 * but not the command it forked inside the namespace, which keeps the output pipes open; a stat on a
 * hung mount cannot be cancelled at all), so a caller's bound must not depend on the work ending.
 */

/** `p`'s value, or `fallback()`'s if `p` has not settled `ms` after the call. The timer never outlives the race. */
export function within<T>(p: Promise<T>, ms: number, fallback: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback()), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Waits for `p` at most `ms`; true if it settled (either way) in time. A rejection of `p` is swallowed. */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return within(
    p.then(
      () => true,
      () => true,
    ),
    ms,
    () => false,
  );
}
