import Fastify, { type FastifyInstance } from 'fastify';

/** What the HTTP server reads; it never triggers work, so a scrape never waits on a check. */
export interface StatusSource {
  /** True while the sweep loop is alive. */
  healthy(): { ok: boolean; detail: string };
  metrics(): Promise<{ contentType: string; body: string }>;
  status(): Record<string, unknown>;
}

const READ_PATHS = ['/healthz', '/metrics', '/status'] as const;

/** The read-only endpoints of docs/CONTRACT.md. No route mutates anything, so none needs authentication. */
export function buildServer(source: StatusSource): FastifyInstance {
  // Idle keep-alive connections are closed as soon as close() starts; the rest get `closeServer`'s deadline.
  const app = Fastify({ logger: false, return503OnClosing: true, connectionTimeout: 10_000, requestTimeout: 10_000, forceCloseConnections: 'idle' });

  app.get('/healthz', async (_req, reply) => {
    const h = source.healthy();
    if (!h.ok) reply.code(503).header('retry-after', '5');
    reply.type('text/plain; charset=utf-8');
    return h.ok ? 'ok\n' : `unhealthy: ${h.detail}\n`;
  });
  app.get('/metrics', async (_req, reply) => {
    const m = await source.metrics();
    reply.type(m.contentType);
    return m.body;
  });
  app.get('/status', async () => source.status());

  for (const url of READ_PATHS) {
    app.route({
      method: ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
      url,
      handler: async (req, reply) => {
        reply.code(405).header('allow', 'GET, HEAD');
        return { error: 'MethodNotAllowed', message: `${req.method} is not allowed on ${url}; nodemedic's HTTP API is read-only` };
      },
    });
  }
  app.setNotFoundHandler(async (req, reply) => {
    reply.code(404);
    return { error: 'NotFound', message: `no such endpoint: ${req.method} ${req.url.split('?')[0]}; try /healthz, /metrics or /status` };
  });
  app.setErrorHandler(async (err: { statusCode?: number; message: string }, _req, reply) => {
    const code = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    reply.code(code);
    return { error: code === 500 ? 'InternalError' : 'BadRequest', message: err.message };
  });
  return app;
}

/** Splits `host:port` / `[v6]:port` as validated by the config schema. */
export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(i + 1)) };
}

/** The listener could not be opened (address in use, not an address of this host, no permission). */
export class ListenError extends Error {
  override name = 'ListenError';
  constructor(
    readonly listen: string,
    readonly code: string | undefined,
    detail: string,
  ) {
    super(`cannot listen on ${listen} (http.listen): ${code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EADDRNOTAVAIL' ? 'not an address of this host' : code === 'EACCES' ? 'permission denied' : detail}`);
  }
}

/** Builds the server and listens on `listen`; resolves with its URL, or rejects with a ListenError. */
export async function openServer(source: StatusSource, listen: string): Promise<{ app: FastifyInstance; url: string }> {
  const app = buildServer(source);
  const { host, port } = parseListen(listen);
  try {
    await app.listen({ host, port });
  } catch (e) {
    await app.close().catch(() => undefined);
    throw new ListenError(listen, (e as NodeJS.ErrnoException).code, (e as Error).message);
  }
  const addr = app.server.address();
  let url = `http://${listen}`;
  if (addr && typeof addr === 'object') {
    const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    url = `http://${h === '0.0.0.0' ? '127.0.0.1' : h === '[::]' ? '[::1]' : h}:${addr.port}`;
  }
  return { app, url };
}

/**
 * Stops listening, lets requests in flight finish for up to `graceMs`, then drops every connection
 * still open: an idle keep-alive one at once, and a client that dribbles its request (slowloris)
 * or never reads its answer at the deadline, so that no client can hold a stopping agent.
 */
export async function closeServer(app: FastifyInstance, graceMs = 1500): Promise<void> {
  const timer = setTimeout(() => app.server.closeAllConnections(), graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(timer);
  }
}
