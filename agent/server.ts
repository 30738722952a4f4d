import Fastify, { type FastifyInstance } from 'fastify';

/** What the HTTP server reads; it never triggers work, so a scrape never waits on a check. */
export interface StatusSource {
  /** True while the sweep loop is alive. */
  healthy(): { ok: boolean; detail: string };
  metrics(): Promise<{ contentType: string; body: string }>;
  status(): Record<string, unknown>;
}

const READ_PATHS = ['/healthz', '/metrics', '/status'] as const;

/** The read-only endpoints of SPEC.md. No route mutates anything, so none needs authentication. */
export function buildServer(source: StatusSource): FastifyInstance {
  const app = Fastify({ logger: false, return503OnClosing: true, connectionTimeout: 10_000, requestTimeout: 10_000 });

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
