/**
 * The `network` check: its parsers on real tables (test/fixtures/network), its verdicts, the probe on
 * loopback against a fake API server's health endpoints, and the whole CLI inside network namespaces
 * the test makes (a veth pair between a "node" and an "API server" namespace, nothing else in either),
 * the API server named by a host name where the node namespace's resolver is silent, absent or says NXDOMAIN.
 */
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import {
  defaultRoute,
  interfaceState,
  judgeProbe,
  networkCheck,
  parseInterfaceNames,
  parseIpv4Routes,
  parseIpv6Routes,
  resolverAnswered,
  routeTo,
  windowNote,
  type NetworkOptions,
  type ProbeReport,
  type StepResult,
} from '../checks/network.js';
import type { CheckDeps, Finding } from '../checks/types.js';
import type { KubeAccess, KubeAccessSource } from '../platform/kube-client.js';
import { RealHost } from '../platform/host.js';
import { until } from './fake-apiserver/harness.js';
import { makeCertificate, startHealthServer } from './harness/fake-apiserver-health.js';
import { startNxdomainServer } from './harness/fake-dns.js';
import { requireBuilt } from './helpers/built.js';
import { CLI, untapped } from './helpers/cli.js';

const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`./fixtures/network/${name}`, import.meta.url)), 'utf8');
const run = promisify(execFile);
const logger = pino({ level: 'silent' });
const host = new RealHost();

async function tempDir(t: Tap.Test): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'nodemedic-network-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

function check(over: Partial<NetworkOptions>, deps: Partial<CheckDeps> = {}) {
  return networkCheck.create({ ...networkCheck.defaults, ...over }, { host, logger, nodeName: 'n', ...deps });
}

const runOnce = (c: ReturnType<typeof check>): Promise<Finding> => c.run(new AbortController().signal);
const steps = (f: Finding): StepResult[] => f.evidence?.steps as StepResult[];
const step = (f: Finding, name: string): StepResult | undefined => steps(f).find((s) => s.step === name);

t.test('routes, interfaces and the resolver, parsed from real tables', async (t) => {
  const vm = parseIpv4Routes(fixture('route-vm'));
  t.same(vm, [
    { family: 4, iface: 'eth0', destination: '0.0.0.0', prefixLength: 0, gateway: '192.0.2.1', metric: 0 },
    { family: 4, iface: 'eth0', destination: '192.0.2.0', prefixLength: 24, metric: 0 },
  ]);
  t.equal(routeTo(vm, '192.0.2.77')?.prefixLength, 24, 'the connected network wins over the default route');
  t.equal(routeTo(vm, '203.0.113.1')?.gateway, '192.0.2.1', 'anything else: the default route');
  t.equal(defaultRoute(vm, 4)?.iface, 'eth0');

  const v6 = parseIpv6Routes(fixture('ipv6_route-vm'));
  t.notOk(v6.some((r) => r.metric === 0xffffffff), "the kernel's reject route on lo is no route");
  t.match(defaultRoute(v6, 6), { iface: 'eth0', gateway: 'fd00::1', metric: 1024 });
  t.match(routeTo(v6, '::1'), { iface: 'lo', prefixLength: 128 });
  t.match(routeTo(v6, 'fd00::5'), { iface: 'eth0', prefixLength: 64 });
  t.match(routeTo(v6, '2001:db8::1'), { iface: 'eth0', prefixLength: 0 });
  t.equal(routeTo(v6, '203.0.113.1'), undefined, 'an IPv4 address is not looked up among IPv6 routes');

  t.match(routeTo(parseIpv4Routes(fixture('route-ns')), '203.0.113.1'), { iface: 'vnode', gateway: '198.51.100.1' });
  const noDefault = parseIpv4Routes(fixture('route-ns-no-default'));
  t.equal(routeTo(noDefault, '203.0.113.1'), undefined, 'without the default route, no route to the API');
  t.equal(routeTo(noDefault, '198.51.100.1')?.iface, 'vnode', 'the connected network is still there');
  t.same(parseIpv4Routes(fixture('route-ns-vnode-down')), [], 'an interface set down takes its routes with it');
  t.equal(routeTo(parseIpv4Routes(fixture('route-ns-peer-down')), '203.0.113.1')?.iface, 'vnode', 'a lost carrier leaves the routes');

  t.same(parseInterfaceNames(fixture('dev-vm')), ['lo', 'ifb0', 'ifb1', 'eth0']);
  t.same(parseInterfaceNames(fixture('dev-ns')), ['lo', 'vnode']);

  t.same(interfaceState('up\n', '0x1003\n'), { operstate: 'up', adminUp: true, up: true });
  t.same(interfaceState('unknown\n', '0x9\n'), { operstate: 'unknown', adminUp: true, up: true }, 'loopback reports unknown, and is up');
  t.same(interfaceState('down\n', '0x1002\n'), { operstate: 'down', adminUp: false, up: false });
  t.same(interfaceState('down\n', '0x1003\n'), { operstate: 'down', adminUp: true, up: false }, 'no carrier');

  for (const code of ['ENOTFOUND', 'ESERVFAIL', 'EREFUSED', 'ENODATA']) t.ok(resolverAnswered(code), `${code}: the resolver answered`);
  for (const code of ['ETIMEOUT', 'ECONNREFUSED', 'EAI_AGAIN', undefined]) t.notOk(resolverAnswered(code), `${code}: no answer`);
});

t.test('the verdict: the node side, the API alone, and the window', async (t) => {
  const s = (step: StepResult['step'], result: StepResult['result'], detail = ''): StepResult => ({ step, result, ms: 1, detail });
  const base = { url: 'https://203.0.113.1:6443', source: 'checks.network.apiServer' };
  const up: ProbeReport = { ...base, steps: [s('route', 'ok'), s('interface', 'ok'), s('tcp', 'ok'), s('tls', 'ok'), s('http', 'ok', 'GET /livez: 200')], nodeFaults: [], httpStatus: 200 };
  const refused: ProbeReport = { ...base, steps: [s('route', 'ok'), s('interface', 'ok'), s('tcp', 'failed', 'ECONNREFUSED')], nodeFaults: [] };
  const noRoute: ProbeReport = { ...base, steps: [s('route', 'failed', 'no route'), s('tcp', 'failed')], nodeFaults: [{ step: 'route', detail: 'no route to 203.0.113.1 and no default route' }] };

  t.match(judgeProbe(up, [{ reachable: true }], 5000), { status: 'ok', reason: 'NetworkReachable' });
  t.match(judgeProbe(refused, [{ reachable: false, failedStep: 'tcp' }], 5000), { status: 'unknown', reason: 'ApiUnreachable', evidence: { failedStep: 'tcp' } });
  const p = judgeProbe(noRoute, [{ reachable: false, failedStep: 'route' }], 5000);
  t.match(p, { status: 'problem', reason: 'NetworkUnavailable', evidence: { failedStep: 'route' } });
  t.match(p.message, /route: no route to 203\.0\.113\.1 and no default route/);
  const overruled = judgeProbe({ ...up, nodeFaults: noRoute.nodeFaults }, [{ reachable: true }], 5000);
  t.equal(overruled.status, 'ok', 'an answer overrules what the route table says (a route in another table)');
  t.equal(judgeProbe({ ...up, httpStatus: 500 }, [{ reachable: true }], 5000).status, 'ok', "a 500 from /livez is the control plane's health, not the path's");

  t.equal(windowNote([{ reachable: true }]), '');
  t.equal(windowNote([{ reachable: true }, { reachable: true }]), '');
  t.equal(windowNote([{ reachable: false }, { reachable: true }, { reachable: false }]), '; API reachable in 1 of the last 3 probes');
  t.equal(windowNote([{ reachable: false }, { reachable: false }]), '; not reachable in any of the last 2 probes');
});

t.test('without an API server address: unknown, never a problem', async (t) => {
  t.match(await runOnce(check({})), { status: 'unknown', reason: 'NoKubernetesAccess' });
  const none: KubeAccessSource = { get: async () => undefined };
  t.match(await runOnce(check({}, { kube: none })), { status: 'unknown', reason: 'NoKubernetesAccess' });
  const broken: KubeAccessSource = { get: async () => Promise.reject(new Error('kubernetes.kubeconfig: cannot read /nonexistent')) };
  t.match(await runOnce(check({}, { kube: broken })), { status: 'unknown', reason: 'KubernetesConfigError', message: /nonexistent/ });
  t.equal(networkCheck.restartCures, undefined, 'never a remediation trigger');
});

t.test('on loopback: reachable, stopped, back, through the Kubernetes access and by name', async (t) => {
  const dir = await tempDir(t);
  const { cert, key } = await makeCertificate(dir, ['IP:127.0.0.1', 'IP:::1', 'DNS:localhost']);
  // '::' takes IPv4 too, so `localhost` reaches it whichever address the resolver lists first.
  let server = await startHealthServer(t, { host: '::', cert, key });
  const url = `https://127.0.0.1:${server.port}`;
  const c = check({ apiServer: url, timeout: '2s', probeHistory: 3 });

  const ok = await runOnce(c);
  t.match(ok, { status: 'ok', reason: 'NetworkReachable', evidence: { apiServer: url, source: 'checks.network.apiServer' } });
  t.same(steps(ok).map((s) => `${s.step}=${s.result}`), ['resolve=skipped', 'route=skipped', 'interface=ok', 'tcp=ok', 'tls=ok', 'http=ok']);
  t.match(step(ok, 'tls')?.detail, /TLSv1\.3, certificate CN=kube-apiserver/);
  t.equal(step(ok, 'http')?.detail, 'GET /livez: 200 "ok"');
  t.equal(await server.request(1), 'GET /livez', 'the fake API server was asked');

  await server.stop();
  const down = await runOnce(c);
  t.match(down, { status: 'unknown', reason: 'ApiUnreachable', evidence: { failedStep: 'tcp', recent: { probes: 2, reachable: 1, results: ['ok', 'tcp'] } } });
  t.equal(step(down, 'tcp')?.code, 'ECONNREFUSED');
  t.match(down.message, /API reachable in 1 of the last 2 probes/);

  server = await startHealthServer(t, { host: '::', port: server.port, cert, key });
  const back = await runOnce(c);
  t.match(back, { status: 'ok', message: /API reachable in 2 of the last 3 probes/ });
  const again = await runOnce(c);
  t.match(again, { evidence: { recent: { probes: 3, reachable: 2, results: ['tcp', 'ok', 'ok'] } } }, 'the window keeps probeHistory probes');

  const fromKube: KubeAccessSource = { get: async () => ({ source: 'kubeconfig /etc/nodemedic/kubeconfig', api: { server: `https://localhost:${server.port}/prefix/` } }) as unknown as KubeAccess };
  const byName = await runOnce(check({ timeout: '2s', healthPath: '/readyz' }, { kube: fromKube }));
  t.match(byName, { status: 'ok', evidence: { source: 'kubeconfig /etc/nodemedic/kubeconfig' } });
  t.match(step(byName, 'resolve'), { result: 'ok', detail: /^localhost is / });
  t.equal(await server.request(3), 'GET /prefix/readyz', "the server URL's path is kept, healthPath appended");
});

t.test('plain HTTP: no TLS step', async (t) => {
  const srv = createHttpServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const port = (srv.address() as { port: number }).port;
  const f = await runOnce(check({ apiServer: `http://127.0.0.1:${port}`, timeout: '2s' }));
  t.match(f, { status: 'ok' });
  t.match(step(f, 'tls'), { result: 'skipped', detail: 'plain HTTP' });
});

t.test('an API server that accepts and never answers: unknown within the timeout, its socket closed', async (t) => {
  const accepted: Socket[] = [];
  const srv = createTcpServer((s) => {
    accepted.push(s);
    // Read (and drop) the ClientHello: a socket nobody reads never sees the peer's FIN.
    s.resume();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of accepted) s.destroy();
    srv.close();
  });
  const port = (srv.address() as { port: number }).port;
  const started = performance.now();
  const f = await runOnce(check({ apiServer: `https://127.0.0.1:${port}`, timeout: '500ms' }));
  const took = performance.now() - started;
  t.match(f, { status: 'unknown', reason: 'ApiUnreachable', evidence: { failedStep: 'tls' } });
  t.match(step(f, 'tls'), { result: 'timeout' });
  t.ok(took >= 450 && took < 1500, `bounded by the timeout (took ${Math.round(took)} ms)`);
  t.equal(accepted.length, 1);
  // The probe destroyed its socket when it gave up: the server's end sees the close.
  await new Promise<void>((r) => (accepted[0]!.destroyed ? r() : accepted[0]!.once('close', () => r())));
  t.pass('the connection was closed by the probe');
});

// ------------------------------------------------------------------------------------------------
// Network namespaces: "node" <-veth-> "api". The API server listens on 203.0.113.1 (TEST-NET-3) on
// the api namespace's loopback, so the node reaches it only through its default route via the veth.

const NODE_ADDR = '198.51.100.2';
const GATEWAY = '198.51.100.1';
const API_ADDR = '203.0.113.1';
const TIMEOUT_S = 3;

async function ip(...args: string[]): Promise<string> {
  return (await run('ip', args, { timeout: 10_000 })).stdout;
}

async function operstate(ns: string, dev: string): Promise<string> {
  return (await run('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/operstate`], { timeout: 10_000 })).stdout.trim();
}

/** `nodemedic check --json --only network` as a process inside `ns`. */
function checkIn(ns: string, config: string): Promise<{ code: number | null; result: Finding & { durationSeconds: number }; stderr: string }> {
  const argv = ['ip', 'netns', 'exec', ns, ...untapped([process.execPath, CLI, 'check', '--json', '--only', 'network', '--config', config])];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      try {
        resolve({ code, result: (JSON.parse(out) as { results: (Finding & { durationSeconds: number })[] }).results[0]!, stderr: err });
      } catch (e) {
        reject(new Error(`no JSON from the check (exit ${code}): ${out} ${err} ${(e as Error).message}`));
      }
    });
  });
}

/** Two namespaces joined by a veth pair, made from scratch for one case and deleted after it. */
async function namespaces(t: Tap.Test): Promise<{ node: string; api: string }> {
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const node = `nm-net-${tag}-node`;
  const api = `nm-net-${tag}-api`;
  await ip('netns', 'add', node);
  t.teardown(() => ip('netns', 'del', node).catch(() => undefined));
  await ip('netns', 'add', api);
  t.teardown(() => ip('netns', 'del', api).catch(() => undefined));
  // Created inside the node namespace, its peer moved straight into the api one: the host's own
  // namespace never holds either end.
  await ip('-n', node, 'link', 'add', 'vnode', 'type', 'veth', 'peer', 'name', 'vapi', 'netns', api);
  await ip('-n', node, 'addr', 'add', `${NODE_ADDR}/24`, 'dev', 'vnode');
  await ip('-n', api, 'addr', 'add', `${GATEWAY}/24`, 'dev', 'vapi');
  await ip('-n', api, 'addr', 'add', `${API_ADDR}/32`, 'dev', 'lo');
  for (const [ns, dev] of [[node, 'lo'], [node, 'vnode'], [api, 'lo'], [api, 'vapi']] as const) await ip('-n', ns, 'link', 'set', dev, 'up');
  await ip('-n', node, 'route', 'add', 'default', 'via', GATEWAY);
  // The kernel publishes a new carrier state a moment later (linkwatch); wait for it, not for a guess.
  await until(async () => (await operstate(node, 'vnode')) === 'up' && (await operstate(api, 'vapi')) === 'up', 10_000);
  return { node, api };
}

async function nsSetup(t: Tap.Test) {
  const dir = await tempDir(t);
  const { node, api } = await namespaces(t);
  const { cert, key } = await makeCertificate(dir, [`IP:${API_ADDR}`]);
  const server = await startHealthServer(t, { host: API_ADDR, port: 6443, cert, key, prefix: ['ip', 'netns', 'exec', api] });
  const config = join(dir, 'config.yaml');
  await writeFile(config, `checks:\n  network: { apiServer: "https://${API_ADDR}:6443", timeout: ${TIMEOUT_S}s }\n`);
  return { node, api, server, config };
}

/** Within the check's own timeout (the scheduler's measure, so a slow process start does not count). */
function inTime(t: Tap.Test, r: { durationSeconds: number }): void {
  t.ok(r.durationSeconds <= TIMEOUT_S + 0.5, `within the check's timeout (${r.durationSeconds}s)`);
}

/** `ip netns exec NS` bind-mounts each file of /etc/netns/NS over its namesake in /etc (ip-netns(8)). */
const NETNS_ETC = '/etc/netns';
const API_NAME = 'api.cluster.test';

/** Namespaces (and their /etc/netns files) an earlier run of this test left when it was killed (its teardown never ran). */
async function removeStaleNamespaces(): Promise<void> {
  for (const line of (await ip('netns', 'list')).split('\n')) {
    const m = /^(nm-net-(\d+)-\S+)/.exec(line);
    if (!m || existsSync(`/proc/${m[2]}`)) continue;
    await ip('netns', 'del', m[1]!).catch(() => undefined);
  }
  for (const name of await readdir(NETNS_ETC).catch(() => [])) {
    const m = /^nm-net-(\d+)-/.exec(name);
    if (m && !existsSync(`/proc/${m[1]}`)) await rm(join(NETNS_ETC, name), { recursive: true, force: true });
  }
  await rmdir(NETNS_ETC).catch(() => undefined);
}

/**
 * The node namespace's own /etc/resolv.conf, naming `nameserver` (an address inside the test's
 * namespaces): the CLI run there resolves through it, nothing else on the machine sees it. Removed
 * after the case, /etc/netns too when nothing else is in it.
 */
async function resolvConf(t: Tap.Test, ns: string, nameserver: string): Promise<string> {
  const dir = join(NETNS_ETC, ns);
  await mkdir(dir, { recursive: true });
  t.teardown(async () => {
    await rm(dir, { recursive: true, force: true });
    await rmdir(NETNS_ETC).catch(() => undefined);
  });
  await writeFile(join(dir, 'resolv.conf'), `nameserver ${nameserver}\n`);
  const config = join(await tempDir(t), 'config.yaml');
  await writeFile(config, `checks:\n  network: { apiServer: "https://${API_NAME}:6443", timeout: ${TIMEOUT_S}s }\n`);
  // The CLI in the namespace sees this file as /etc/resolv.conf.
  t.equal((await run('ip', ['netns', 'exec', ns, 'cat', '/etc/resolv.conf'], { timeout: 10_000 })).stdout, `nameserver ${nameserver}\n`, "the node namespace's resolv.conf");
  return config;
}

t.test('in network namespaces the test made', async (t) => {
  if (!requireBuilt(t, ['agent/cli.ts', 'checks/network.ts'])) return;
  await removeStaleNamespaces();

  t.test('the namespaces reach nothing but each other', async (t) => {
    const { node, api } = await namespaces(t);
    const links = async (ns: string): Promise<string[]> =>
      (await ip('-n', ns, '-o', 'link', 'show')).split('\n').filter(Boolean).map((l) => /^\d+: ([^:@]+)/.exec(l)![1]!);
    t.same(await links(node), ['lo', 'vnode']);
    t.same(await links(api), ['lo', 'vapi']);
    t.match(await ip('-n', node, '-o', 'link', 'show', 'vnode'), new RegExp(`link-netns ${api}`), "vnode's peer is in the api namespace");
  });

  t.test('the fake API server reachable: ok', async (t) => {
    const { node, server, config } = await nsSetup(t);
    const { code, result } = await checkIn(node, config);
    t.equal(code, 0);
    t.match(result, { status: 'ok', reason: 'NetworkReachable' });
    t.same(steps(result).map((s) => `${s.step}=${s.result}`), ['resolve=skipped', 'route=ok', 'interface=ok', 'tcp=ok', 'tls=ok', 'http=ok']);
    t.equal(step(result, 'route')?.detail, `${API_ADDR}: default route via ${GATEWAY} dev vnode`);
    t.equal(step(result, 'interface')?.detail, 'vnode is up');
    t.equal(await server.request(1), 'GET /livez');
    inTime(t, result);
  });

  t.test('the default route removed: problem, at the route step', async (t) => {
    const { node, server, config } = await nsSetup(t);
    await ip('-n', node, 'route', 'del', 'default');
    const { code, result } = await checkIn(node, config);
    t.equal(code, 1);
    t.match(result, { status: 'problem', reason: 'NetworkUnavailable', evidence: { failedStep: 'route' } });
    t.match(result.message, `route: no route to ${API_ADDR} and no default route`);
    t.match(step(result, 'tcp'), { result: 'failed', code: 'ENETUNREACH' });
    inTime(t, result);
  });

  t.test('the interface set down: problem, naming it', async (t) => {
    const { node, config } = await nsSetup(t);
    await ip('-n', node, 'link', 'set', 'vnode', 'down');
    const { code, result } = await checkIn(node, config);
    t.equal(code, 1);
    t.match(result, { status: 'problem', reason: 'NetworkUnavailable' });
    t.match(result.message, 'interface: down: vnode (administratively down)');
    inTime(t, result);
  });

  t.test("the interface's carrier lost (the other end down): problem at the interface step", async (t) => {
    const { node, api, config } = await nsSetup(t);
    await ip('-n', api, 'link', 'set', 'vapi', 'down');
    await until(async () => (await operstate(node, 'vnode')) === 'down', 10_000);
    const { code, result } = await checkIn(node, config);
    t.equal(code, 1);
    t.match(result, { status: 'problem', reason: 'NetworkUnavailable', evidence: { failedStep: 'interface' } });
    t.match(step(result, 'route'), { result: 'ok' });
    t.match(result.message, 'interface: vnode is down');
    inTime(t, result);
  });

  t.test('the API server stopped, route and interface fine: unknown ApiUnreachable', async (t) => {
    const { node, server, config } = await nsSetup(t);
    await server.stop();
    const { code, result } = await checkIn(node, config);
    t.equal(code, 2);
    t.match(result, { status: 'unknown', reason: 'ApiUnreachable', evidence: { failedStep: 'tcp' } });
    t.match(step(result, 'route'), { result: 'ok' });
    t.match(step(result, 'interface'), { result: 'ok' });
    t.match(step(result, 'tcp'), { result: 'failed', code: 'ECONNREFUSED' });
    t.notOk('nodeFaults' in (result.evidence ?? {}), 'nothing wrong on the node side');
    inTime(t, result);
  });

  // The API server by name. The resolver's address is inside the test's namespaces, which hold nothing
  // but their veth pair and loopback: no query can go anywhere else.
  t.test('by name, the resolver answering nothing at all (its queries dropped): problem at the resolve step, within the timeout', async (t) => {
    const { node, api } = await namespaces(t);
    // Routed to the api namespace by the node's default route, and swallowed there without an ICMP
    // error (a blackhole route), whether that namespace forwards or not: a resolver that never answers.
    const silent = '203.0.113.53';
    await ip('-n', api, 'route', 'add', 'blackhole', `${silent}/32`);
    const config = await resolvConf(t, node, silent);
    const { code, result } = await checkIn(node, config);
    t.equal(code, 1);
    t.match(result, { status: 'problem', reason: 'NetworkUnavailable', evidence: { failedStep: 'resolve', nodeFaults: [{ step: 'resolve' }] } });
    t.match(result.message, `this node cannot reach the API server https://${API_NAME}:6443: resolve: no resolver answered for ${API_NAME}`);
    t.match(step(result, 'resolve'), { result: 'timeout' });
    t.match(step(result, 'route'), { result: 'ok', detail: `default route via ${GATEWAY} dev vnode` });
    t.match(step(result, 'tcp'), { result: 'skipped', detail: 'no address to connect to' });
    inTime(t, result);
  });

  t.test("by name, nothing listening at the resolver's address (port unreachable): problem at the resolve step", async (t) => {
    const { node } = await namespaces(t);
    const config = await resolvConf(t, node, GATEWAY);
    const { code, result } = await checkIn(node, config);
    t.equal(code, 1);
    t.match(result, { status: 'problem', reason: 'NetworkUnavailable', evidence: { failedStep: 'resolve', nodeFaults: [{ step: 'resolve', detail: new RegExp(`^no resolver answered for ${API_NAME} \\(ECONNREFUSED\\)$`) }] } });
    t.match(step(result, 'resolve'), { result: 'failed', code: 'ECONNREFUSED' });
    inTime(t, result);
  });

  t.test('by name, the resolver answering NXDOMAIN: the node\'s network is not called broken for that alone', async (t) => {
    const { node, api } = await namespaces(t);
    const dns = await startNxdomainServer(t, { host: GATEWAY, prefix: ['ip', 'netns', 'exec', api] });
    const config = await resolvConf(t, node, GATEWAY);
    const { code, result } = await checkIn(node, config);
    t.match(await dns.query(1), new RegExp(`^QUERY ${API_NAME.replace(/\./g, '\\.')} (1|28)$`), 'the resolver was asked for the name');
    // The issue's rule: a problem only when the resolver answers nothing at all. It answered "no such
    // name": the node's path to it works; the name is the cluster's, so the verdict is the API's side.
    t.equal(code, 2);
    t.match(result, { status: 'unknown', reason: 'ApiUnreachable', evidence: { failedStep: 'resolve' } });
    t.notOk('nodeFaults' in (result.evidence ?? {}), 'nothing wrong on the node side');
    t.match(result.message, `API server https://${API_NAME}:6443 not reachable (resolve: the resolver answered that ${API_NAME} cannot be resolved (ENOTFOUND))`);
    t.match(step(result, 'resolve'), { result: 'failed', code: 'ENOTFOUND' });
    t.match(step(result, 'route'), { result: 'ok', detail: `default route via ${GATEWAY} dev vnode` });
    t.match(step(result, 'interface'), { result: 'ok', detail: 'vnode is up' });
    t.match(step(result, 'tcp'), { result: 'skipped' });
    inTime(t, result);
  });
});
