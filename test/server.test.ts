import t from 'tap';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { buildServer, parseListen } from '../agent/server.js';
import { startAgent } from './helpers/agent.js';
import { requireComponent } from './helpers/require.js';

t.test('endpoints: 404 and 405 answer with JSON; /healthz is 503 when the loop is dead', async (t) => {
  let healthy = true;
  const app = buildServer({
    healthy: () => ({ ok: healthy, detail: healthy ? 'sweeping' : 'last sweep finished 99s ago (limit 45s)' }),
    metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'x 1\n' }),
    status: () => ({ node: 'n1' }),
  });
  t.teardown(() => app.close());
  t.equal((await app.inject('/healthz')).statusCode, 200);
  healthy = false;
  const down = await app.inject('/healthz');
  t.equal(down.statusCode, 503);
  t.equal(down.headers['retry-after'], '5');
  t.match(down.body, /last sweep finished 99s ago/);
  t.same((await app.inject('/status')).json(), { node: 'n1' });
  const nf = await app.inject('/nope?x=1');
  t.equal(nf.statusCode, 404);
  t.same(nf.json().error, 'NotFound');
  t.match(nf.json().message, /GET \/nope;/);
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH'] as const) {
    const r = await app.inject({ method, url: '/status', payload: '{}', headers: { 'content-type': 'application/json' } });
    t.equal(r.statusCode, 405, `${method} /status`);
    t.equal(r.json().error, 'MethodNotAllowed');
    t.equal(r.headers.allow, 'GET, HEAD');
  }
  t.equal((await app.inject({ method: 'HEAD', url: '/metrics' })).statusCode, 200, 'HEAD works for scrapers that probe');
});

t.test('listen addresses', async (t) => {
  t.same(parseListen('0.0.0.0:20258'), { host: '0.0.0.0', port: 20258 });
  t.same(parseListen('[::1]:9'), { host: '::1', port: 9 });
});

function promtool(args: string[], input: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = execFile('promtool', args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out: stdout + stderr }),
    );
    p.stdin!.end(input);
  });
}

t.test('a running agent: /metrics is clean for promtool, /status is per SPEC, SIGHUP reloads', async (t) => {
  if (!(await requireComponent(t, 'promtool (Debian package prometheus)', ['promtool'], false))) return;
  const agent = await startAgent({ checks: { disk: { paths: ['/'] } } });
  t.teardown(() => agent.stop());
  const res = await fetch(`${agent.url}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /text\/plain/);
  const text = await res.text();
  const lint = await promtool(['check', 'metrics'], text);
  t.equal(lint.code, 0, `promtool check metrics is clean: ${lint.out}`);
  t.equal(lint.out.trim(), '', 'promtool reports nothing');
  for (const re of [
    /^nodemedic_check_status\{check="disk",status="ok"\} [01]$/m,
    /^nodemedic_check_status\{check="disk",status="problem"\} [01]$/m,
    /^nodemedic_check_duration_seconds\{check="disk"\} [\d.e-]+$/m,
    /^nodemedic_remediation_actions_total\{action="restart_kubelet",result="success"\} 0$/m,
    /^nodemedic_build_info\{version="\d+\.\d+\.\d+[^"]*"\} 1$/m,
    /^process_resident_memory_bytes \d/m,
    /^nodejs_eventloop_lag_seconds /m,
  ]) {
    t.match(text, re, `exposes ${re}`);
  }
  const status = (await (await fetch(`${agent.url}/status`)).json()) as Record<string, unknown>;
  t.hasOwnProps(status, ['node', 'version', 'mode', 'lastSweep', 'results', 'remediation']);
  t.equal(status.mode, 'dry-run');
  t.ok(Array.isArray(status.results));

  // A reload with an invalid config is rejected and the old config kept; a valid one applies.
  writeFileSync(agent.configPath, 'checks: { disk: { maxUsedPercent: 500 } }\n');
  agent.child.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 1500));
  t.match(agent.logs(), /reload rejected: invalid config/);
  t.match(agent.logs(), /checks\.disk\.maxUsedPercent: must be <= 100/);
  t.equal((await fetch(`${agent.url}/healthz`)).status, 200, 'still running on the old config');
  writeFileSync(agent.configPath, `http: { listen: "${new URL(agent.url).host}" }\nstateDir: ${agent.stateDir}\nschedule: "*/1 * * * * *"\nremediation: { mode: "off" }\nchecks: { disk: { paths: ["/"] } }\n`);
  agent.child.kill('SIGHUP');
  let mode: unknown;
  for (let i = 0; i < 50 && mode !== 'off'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    mode = ((await (await fetch(`${agent.url}/status`)).json()) as { mode: string }).mode;
  }
  t.equal(mode, 'off', 'the new config is live');
  t.equal(await agent.stop(), 0, 'SIGTERM stops cleanly with exit 0');
});

t.test('closeServer: idle and dribbling connections are dropped by the deadline; a busy port is a ListenError naming it', async (t) => {
  const { openServer, closeServer, ListenError } = await import('../agent/server.js');
  const { connect, createServer } = await import('node:net');
  const source = {
    healthy: () => ({ ok: true, detail: 'sweeping' }),
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    status: () => ({}),
  };
  const { app, url } = await openServer(source, '127.0.0.1:0');
  const port = Number(new URL(url).port);
  const slow = connect(port, '127.0.0.1');
  slow.on('error', () => undefined);
  await new Promise((r) => slow.once('connect', r));
  slow.write('GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  const dribble = setInterval(() => slow.write('a'), 50);
  t.teardown(() => clearInterval(dribble));
  const slowClosed = new Promise((r) => slow.once('close', r));
  const started = performance.now();
  await closeServer(app, 300);
  await slowClosed;
  const took = performance.now() - started;
  t.ok(took < 3000, `closed in ${Math.round(took)} ms with a client dribbling headers`);

  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.teardown(() => blocker.close());
  const busy = `127.0.0.1:${(blocker.address() as { port: number }).port}`;
  const err = await openServer(source, busy).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof ListenError);
  t.equal((err as Error).message, `cannot listen on ${busy} (http.listen): the address is already in use`);
});
