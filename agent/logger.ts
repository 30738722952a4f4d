import { pino, type Logger } from 'pino';

/**
 * JSON lines. The daemon logs to stdout (journald keeps them under the unit); one-shot commands log to
 * stderr so their stdout stays a clean table or JSON document.
 */
export function createLogger(level: string, stream: 'stdout' | 'stderr' = 'stdout'): Logger {
  return pino(
    { level, base: { app: 'nodemedic' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: stream === 'stdout' ? 1 : 2, sync: true }),
  );
}
