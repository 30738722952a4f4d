/**
 * Durations as operators write them in Kubernetes configs: Go-style, unit required, optionally
 * compound (`500ms`, `10s`, `5m`, `1h30m`). `ms`-style libraries accept unit-less and negative
 * values, which we must reject, and none parse compound forms.
 */
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** The JSON Schema pattern for a duration string; also used by `parseDuration`. */
export const DURATION_PATTERN = '^(?:\\d+(?:\\.\\d+)?(?:ms|s|m|h|d))+$';
const WHOLE = new RegExp(DURATION_PATTERN);
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** Milliseconds in a duration string; throws on anything `DURATION_PATTERN` rejects. */
export function parseDuration(text: string): number {
  if (!WHOLE.test(text)) {
    throw new RangeError(`not a duration: ${JSON.stringify(text)} (use a number with a unit: 500ms, 10s, 5m, 2h)`);
  }
  let total = 0;
  for (const [, n, unit] of text.matchAll(PART)) {
    total += Number(n) * UNIT_MS[unit as keyof typeof UNIT_MS];
  }
  return Math.round(total);
}

/** A short human form of a duration (`3m25s`, `1.5s`, `250ms`), for messages. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  const totalS = Math.round(ms / 1000);
  const h = Math.floor(totalS / 3600);
  const m = Math.floor((totalS % 3600) / 60);
  const s = totalS % 60;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s || (!h && !m) ? `${s}s` : ''}`;
}
