/**
 * Time, injected so that decision code and tests agree on "now".
 *
 * Two readings with different jobs: `now()` is wall-clock time (the epoch), for what is persisted or
 * shown (budgets, plans, ISO times in `/status`); `elapsed()` is a monotonic reading (ms from an
 * arbitrary origin, never stepped by NTP, `date -s` or a VM resume), for every in-process interval:
 * liveness, the watchdog, the PLEG window, timeouts, backoffs. A clock step changes `now()` only.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /**
   * Monotonic milliseconds from an arbitrary origin. Optional so that simple test clocks stay
   * simple; read it through `monotonicNow(clock)`, which falls back to `performance.now()`.
   */
  elapsed?(): number;
}

export const systemClock: Clock = { now: () => Date.now(), elapsed: () => performance.now() };

/** The clock's monotonic reading (`performance.now()` when it has none). */
export function monotonicNow(clock: Clock): number {
  return clock.elapsed ? clock.elapsed() : performance.now();
}

/**
 * A clock a test moves by hand. `advance()` is time passing (both readings move); `set()` and
 * `step()` are a wall-clock step (only `now()` moves), as NTP or an operator would do it.
 */
export class ManualClock implements Clock {
  private mono = 0;
  constructor(private t = Date.parse('2026-11-27T10:00:00Z')) {}
  now(): number {
    return this.t;
  }
  elapsed(): number {
    return this.mono;
  }
  advance(ms: number): void {
    this.t += ms;
    this.mono += ms;
  }
  set(ms: number): void {
    this.t = ms;
  }
  /** Steps the wall clock by `ms` (negative: back) without time passing. */
  step(ms: number): void {
    this.t += ms;
  }
}

/**
 * Real time passing (`elapsed()` is `performance.now()`) with a wall clock that can be stepped:
 * for tests of a whole agent across a clock step.
 */
export class SteppableClock implements Clock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  elapsed(): number {
    return performance.now();
  }
  step(ms: number): void {
    this.offset += ms;
  }
}

/**
 * Notices wall-clock steps: between two looks, the wall clock should have moved as much as the
 * monotonic one. Returns the step (ms, negative: backwards) when they disagree by more than
 * `toleranceMs`, else undefined.
 */
export class ClockStepDetector {
  private last: { wall: number; mono: number };
  constructor(
    private readonly clock: Clock,
    private readonly toleranceMs = 2000,
  ) {
    this.last = { wall: clock.now(), mono: monotonicNow(clock) };
  }
  look(): number | undefined {
    const now = { wall: this.clock.now(), mono: monotonicNow(this.clock) };
    const step = now.wall - this.last.wall - (now.mono - this.last.mono);
    this.last = now;
    return Math.abs(step) > this.toleranceMs ? step : undefined;
  }
}
