/**
 * `network`: this node's path to the control plane, seen from the node. It tells "this node cannot
 * reach the API server" (its own side is broken: no route, the route's interface down, no resolver
 * answering) apart from "the API server does not answer" (which one node cannot tell from a partition
 * elsewhere, so it is `unknown`, never `problem`). A restart cures neither: it reports, never triggers.
 *
 * The probe resolves the API server's name, looks up the route to its address and the state of the
 * route's interface, opens a TCP connection, does a TLS handshake and asks the unauthenticated health
 * endpoint (`/livez` is readable by `system:public-info-viewer`, which binds `system:unauthenticated`).
 * Reference: https://kubernetes.io/docs/reference/using-api/health-checks/
 */
import { promises as dns, type LookupAddress } from 'node:dns';
import { request, type IncomingMessage } from 'node:http';
import { BlockList, connect as tcpConnect, isIP, SocketAddress, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { monotonicNow } from '../platform/clock.js';
import type { Host } from '../platform/host.js';
import { noKubernetesAccess, preconnect } from './kube-check.js';
import { publishNetwork, withdrawNetwork } from './network-view.js';
import { unknown, type BaseCheckOptions, type Check, type CheckDefinition, type Finding } from './types.js';

export interface NetworkOptions extends BaseCheckOptions {
  /**
   * The API server's URL (`https://host:port`, a path prefix allowed). Empty: the cluster `server` of
   * the agent's Kubernetes access (`kubernetes.kubeconfig`, else in-cluster); without either the check
   * is `unknown` (`NoKubernetesAccess`).
   */
  apiServer: string;
  /** The health endpoint asked: `/livez` (is the process alive) or `/readyz` (is it serving). */
  healthPath: '/livez' | '/readyz';
  /** Bound of the whole probe, every step included: a step gets what its predecessors left. */
  timeout: string;
  /** How many recent probes the evidence and the message summarise ("reachable in 3 of the last 10"). */
  probeHistory: number;
  /**
   * The node's procfs, for `net/route`, `net/ipv6_route` and `net/dev`. These follow the *reader's*
   * network namespace, which is also the one the probe's sockets use: the node's when the agent runs
   * natively or in a pod with hostNetwork (the DaemonSet).
   */
  procRoot: string;
  /** The node's sysfs, for `class/net/<interface>/{operstate,flags}`. */
  sysRoot: string;
}

/** The steps of one probe, in order. */
export type StepName = 'resolve' | 'route' | 'interface' | 'tcp' | 'tls' | 'http';

/** What one step of a probe saw. */
export interface StepResult {
  step: StepName;
  /** `skipped`: not needed (an IP literal needs no resolving, plain HTTP no TLS) or not possible (no address). */
  result: 'ok' | 'failed' | 'timeout' | 'skipped';
  /** Time the step took, in milliseconds (rounded to 0.1). */
  ms: number;
  /** What was seen, for a human. */
  detail: string;
  /** The error code (`ECONNREFUSED`, `ENOTFOUND`, ...) of a failed step. */
  code?: string;
}

/** A route from the kernel's main table, as read from /proc/net/route or /proc/net/ipv6_route. */
export interface Route {
  family: 4 | 6;
  iface: string;
  destination: string;
  prefixLength: number;
  /** The next hop; undefined for a directly connected network. */
  gateway?: string;
  metric: number;
}

// <linux/route.h> and <linux/ipv6_route.h>: a usable route is up; a reject ("unreachable") route is none.
const RTF_UP = 0x1;
const RTF_REJECT = 0x200;

function hexToIpv4(le: string): string {
  // /proc/net/route prints the address as the host-order (little-endian on x86/arm64) 32-bit word.
  const n = Number.parseInt(le, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join('.');
}

function maskToPrefix(le: string): number {
  let n = Number.parseInt(le, 16) >>> 0;
  let bits = 0;
  while (n) {
    bits += n & 1;
    n >>>= 1;
  }
  return bits;
}

/** Parses /proc/net/route (IPv4, main table): the usable routes. Pure. */
export function parseIpv4Routes(text: string): Route[] {
  const out: Route[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, dest, gw, flagsHex, , , metric, mask] = f as [string, string, string, string, string, string, string, string];
    const flags = Number.parseInt(flagsHex, 16);
    if (!(flags & RTF_UP) || flags & RTF_REJECT) continue;
    const gateway = hexToIpv4(gw);
    out.push({ family: 4, iface, destination: hexToIpv4(dest), prefixLength: maskToPrefix(mask), ...(gateway !== '0.0.0.0' ? { gateway } : {}), metric: Number(metric) });
  }
  return out;
}

function hexToIpv6(hex: string): string {
  // SocketAddress prints the compressed form (fd00::1), as `ip -6 route` does.
  return new SocketAddress({ address: hex.match(/.{4}/g)!.join(':'), family: 'ipv6' }).address;
}

/** Parses /proc/net/ipv6_route (every table, local routes included): the usable routes. Pure. */
export function parseIpv6Routes(text: string): Route[] {
  const out: Route[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[0]!.length !== 32) continue;
    const [dest, plen, , , gw, metric, , , flagsHex, iface] = f as [string, string, string, string, string, string, string, string, string, string];
    const flags = Number.parseInt(flagsHex, 16);
    if (!(flags & RTF_UP) || flags & RTF_REJECT) continue;
    out.push({
      family: 6,
      iface,
      destination: hexToIpv6(dest),
      prefixLength: Number.parseInt(plen, 16),
      ...(/^0+$/.test(gw) ? {} : { gateway: hexToIpv6(gw) }),
      metric: Number.parseInt(metric, 16),
    });
  }
  return out;
}

/** The route the kernel's main table gives `address`: the longest prefix, then the lowest metric. Pure. */
export function routeTo(routes: readonly Route[], address: string): Route | undefined {
  const family = isIP(address);
  let best: Route | undefined;
  for (const r of routes) {
    if (r.family !== family) continue;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    const net = new BlockList();
    net.addSubnet(r.destination, r.prefixLength, type);
    if (!net.check(address, type)) continue;
    if (!best || r.prefixLength > best.prefixLength || (r.prefixLength === best.prefixLength && r.metric < best.metric)) best = r;
  }
  return best;
}

/** The default route of a family, if any. Pure. */
export function defaultRoute(routes: readonly Route[], family: 4 | 6): Route | undefined {
  return routes.filter((r) => r.family === family && r.prefixLength === 0).sort((a, b) => a.metric - b.metric)[0];
}

/** Interface names from /proc/net/dev (`  eth0: 1234 ...`). Pure. */
export function parseInterfaceNames(text: string): string[] {
  return text
    .split('\n')
    .slice(2)
    .map((l) => /^\s*([^:\s]+):/.exec(l)?.[1])
    .filter((n): n is string => !!n);
}

/** An interface's state from sysfs: `operstate` (RFC 2863) and the `IFF_UP` bit of `flags`. */
export interface InterfaceState {
  operstate: string;
  /** Administratively up (`ip link set X up`). */
  adminUp: boolean;
  /** Can pass packets: administratively up, and operstate neither down nor waiting (`unknown` counts as up: loopback, tun and dummy devices report it). */
  up: boolean;
}

const NOT_PASSING = new Set(['down', 'lowerlayerdown', 'notpresent', 'dormant', 'testing']);

/** Judges an interface from its `operstate` and `flags` files' contents. Pure. */
export function interfaceState(operstate: string, flags: string): InterfaceState {
  const op = operstate.trim();
  const adminUp = (Number.parseInt(flags.trim(), 16) & 0x1) === 1;
  return { operstate: op, adminUp, up: adminUp && !NOT_PASSING.has(op) };
}

/** A `dns.lookup` (getaddrinfo, on a libuv thread) is running; see the resolve step. Process-wide. */
let lookupInFlight = false;

/**
 * Whether a failed lookup means the resolver answered ("no such name", "server failure": it was
 * reached, so the node's path to it works) or answered nothing at all (timeout, refused, no resolver).
 * Codes of c-ares (`dns.Resolver`) and getaddrinfo (`dns.lookup`). Pure.
 */
export function resolverAnswered(code: string | undefined): boolean {
  return ['ENOTFOUND', 'ENODATA', 'ESERVFAIL', 'EREFUSED', 'EFORMERR', 'ENOTIMP', 'EBADRESP', 'EBADNAME'].includes(code ?? '');
}

/** One probe as the rolling window keeps it. */
export interface ProbeOutcome {
  /** The API server answered HTTP (any status). */
  reachable: boolean;
  /** The step that failed first, when not reachable. */
  failedStep?: StepName;
}

/** "API reachable in 3 of the last 10 probes", or '' when there is nothing to say (one probe, or all alike). Pure. */
export function windowNote(history: readonly ProbeOutcome[]): string {
  const n = history.length;
  const up = history.filter((h) => h.reachable).length;
  if (n < 2 || up === n) return '';
  if (up === 0) return `; not reachable in any of the last ${n} probes`;
  return `; API reachable in ${up} of the last ${n} probes`;
}

/** What one probe saw, before the verdict. */
export interface ProbeReport {
  url: string;
  /** Where the URL came from: `checks.network.apiServer` or the Kubernetes access. */
  source: string;
  steps: StepResult[];
  /** The node's own side found broken (no route, interface down, no resolver answering). */
  nodeFaults: { step: StepName; detail: string }[];
  /** HTTP status of the health endpoint; undefined when no answer came. */
  httpStatus?: number;
}

/** The verdict on a probe and the window it ends (pure). */
export function judgeProbe(report: ProbeReport, history: readonly ProbeOutcome[], timeoutMs: number): Finding {
  const failed = report.steps.find((s) => s.result === 'failed' || s.result === 'timeout');
  const evidence: Record<string, unknown> = {
    apiServer: report.url,
    source: report.source,
    steps: report.steps,
    ...(report.nodeFaults.length ? { nodeFaults: report.nodeFaults } : {}),
    recent: { probes: history.length, reachable: history.filter((h) => h.reachable).length, results: history.map((h) => (h.reachable ? 'ok' : (h.failedStep ?? 'failed'))) },
  };
  const note = windowNote(history);
  const ms = Math.round(report.steps.reduce((a, s) => a + s.ms, 0));
  if (report.httpStatus !== undefined) {
    const http = report.steps.find((s) => s.step === 'http')!;
    // Any HTTP answer proves the path works; a 500 from /livez is the control plane's own health, not the network's.
    return { status: 'ok', reason: 'NetworkReachable', message: `API server ${report.url} reachable in ${ms} ms (${http.detail})${note}`, evidence };
  }
  if (report.nodeFaults.length) {
    evidence.failedStep = report.nodeFaults[0]!.step;
    return {
      status: 'problem',
      reason: 'NetworkUnavailable',
      message: `this node cannot reach the API server ${report.url}: ${report.nodeFaults.map((f) => `${f.step}: ${f.detail}`).join('; ')}${note}`,
      evidence,
    };
  }
  evidence.failedStep = failed?.step;
  const what = failed ? `${failed.step}: ${failed.detail}` : 'no answer';
  return unknown(
    'ApiUnreachable',
    `API server ${report.url} not reachable (${what}) within ${formatDuration(timeoutMs)}, while this node's route, interface and resolver look fine: one node cannot tell a partition from a control-plane outage${note}`,
    evidence,
  );
}

// ---------------------------------------------------------------------------------------------
// The probe's I/O

/** A step's deadline: resolves `undefined` when time ran out or the check was aborted. */
function within<T>(ms: number, signal: AbortSignal, work: Promise<T>, onGiveUp: () => void): Promise<T | undefined> {
  if (ms <= 0 || signal.aborted) {
    onGiveUp();
    work.catch(() => undefined);
    return Promise.resolve(undefined);
  }
  return new Promise<T | undefined>((resolve, reject) => {
    const give = (): void => {
      cleanup();
      onGiveUp();
      resolve(undefined);
    };
    const timer = setTimeout(give, ms);
    signal.addEventListener('abort', give, { once: true });
    const cleanup = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', give);
    };
    work.then(
      (v) => {
        cleanup();
        resolve(v);
      },
      (e: unknown) => {
        cleanup();
        reject(e);
      },
    );
  });
}

/** Resolves on the socket's `event`, rejects on its error. */
function settles(s: Socket, event: 'connect' | 'secureConnect'): Promise<true> {
  return new Promise((resolve, reject) => {
    s.once(event, () => resolve(true));
    s.once('error', reject);
  });
}

function errCode(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ?? err.name ?? 'Error';
}

async function readState(host: Host, sysRoot: string, iface: string): Promise<InterfaceState | string> {
  // Names come from the kernel's own tables, but a path is built from them: refuse anything odd.
  if (!/^[^/\0]+$/.test(iface) || iface === '.' || iface === '..') return `unusable interface name ${JSON.stringify(iface)}`;
  try {
    const [op, flags] = await Promise.all([host.readFile(`${sysRoot}/class/net/${iface}/operstate`, 64), host.readFile(`${sysRoot}/class/net/${iface}/flags`, 64)]);
    return interfaceState(op, flags);
  } catch (e) {
    return (e as Error).message;
  }
}

/** The API server's target: host name (brackets off an IPv6 literal), port, path of the health endpoint. */
interface Target {
  url: string;
  https: boolean;
  hostname: string;
  port: number;
  path: string;
}

function target(url: string, healthPath: string): Target {
  const u = new URL(url);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(`${url}: not an http(s) URL`);
  const https = u.protocol === 'https:';
  return {
    url,
    https,
    hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : https ? 443 : 80,
    path: `${u.pathname.replace(/\/+$/, '')}${healthPath}`,
  };
}

/** Addresses reached without a route of the main table (the kernel's local table has them). */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

interface ProbeOptions {
  timeoutMs: number;
  procRoot: string;
  sysRoot: string;
}

/**
 * One probe: every step bounded by what is left of `timeoutMs` (and by `signal`); sockets are
 * destroyed when a step gives up, so nothing outlives the run.
 */
async function probe(host: Host, t: Target, source: string, opts: ProbeOptions, signal: AbortSignal): Promise<ProbeReport> {
  const clock = host.clock;
  const deadline = monotonicNow(clock) + opts.timeoutMs;
  const left = (): number => deadline - monotonicNow(clock);
  const steps: StepResult[] = [];
  const nodeFaults: ProbeReport['nodeFaults'] = [];
  const timed = async (step: StepName, f: () => Promise<Omit<StepResult, 'step' | 'ms'>>): Promise<StepResult> => {
    const t0 = monotonicNow(clock);
    const r = { step, ...(await f()), ms: 0 };
    r.ms = Math.round((monotonicNow(clock) - t0) * 10) / 10;
    steps.push(r);
    return r;
  };
  const outOfTime = (what: string): Omit<StepResult, 'step' | 'ms'> => ({ result: 'timeout', detail: `${what}: no answer within ${formatDuration(opts.timeoutMs)} (the probe's budget)` });

  // 1. Resolve.
  let address: string | undefined = isIP(t.hostname) ? t.hostname : undefined;
  let addresses: string[] = [];
  await timed('resolve', async () => {
    if (address) return { result: 'skipped', detail: `${t.hostname} is an address` };
    // A getaddrinfo left behind by an earlier probe (a silent resolver: 5 s per try and server) still
    // holds a libuv thread, which statfs and file reads share: never start a second one beside it.
    if (lookupInFlight) return await resolverSilence(t.hostname, 'an earlier lookup has not returned');
    try {
      lookupInFlight = true;
      const lookup = dns.lookup(t.hostname, { all: true }).finally(() => {
        lookupInFlight = false;
      });
      const all = await within(left(), signal, lookup, () => undefined);
      if (all === undefined) return await resolverSilence(t.hostname, 'lookup timed out');
      addresses = all.map((a: LookupAddress) => a.address);
      address = addresses[0];
      return { result: 'ok', detail: `${t.hostname} is ${addresses.join(', ')}` };
    } catch (e) {
      const code = errCode(e);
      if (resolverAnswered(code)) return { result: 'failed', code, detail: `the resolver answered that ${t.hostname} cannot be resolved (${code})` };
      return await resolverSilence(t.hostname, code);
    }
  });

  /**
   * getaddrinfo's EAI_AGAIN covers both a server failure (an answer) and no answer at all; ask
   * c-ares, which tells them apart, before calling the node's resolver path broken.
   */
  async function resolverSilence(name: string, lookupCode: string): Promise<Omit<StepResult, 'step' | 'ms'>> {
    const resolver = new dns.Resolver({ timeout: Math.max(1, Math.floor(left())), tries: 1 });
    try {
      const r = await within(left(), signal, resolver.resolve(name), () => resolver.cancel());
      if (r === undefined) {
        nodeFaults.push({ step: 'resolve', detail: `no resolver answered for ${name} (${lookupCode})` });
        return outOfTime(`resolving ${name}`);
      }
      return { result: 'failed', code: lookupCode, detail: `lookup of ${name} failed (${lookupCode}) though the resolver answers (${r.length} records)` };
    } catch (e) {
      const code = errCode(e);
      if (resolverAnswered(code)) return { result: 'failed', code, detail: `the resolver answered that ${name} cannot be resolved (${code})` };
      nodeFaults.push({ step: 'resolve', detail: `no resolver answered for ${name} (${code})` });
      return { result: 'failed', code, detail: `no resolver answered for ${name} (${code})` };
    }
  }

  // 2. The route to the address (the default route when there is no address), and 3. its interface.
  const family: 4 | 6 = address ? (isIP(address) as 4 | 6) : 4;
  const loopback = !!address && LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
  let routeIface: string | undefined;
  await timed('route', async () => {
    if (loopback) {
      routeIface = 'lo';
      return { result: 'skipped', detail: `${address} is a loopback address` };
    }
    const file = `${opts.procRoot}/net/${family === 4 ? 'route' : 'ipv6_route'}`;
    let routes: Route[];
    try {
      const text = await host.readFile(file, 1024 * 1024);
      routes = family === 4 ? parseIpv4Routes(text) : parseIpv6Routes(text);
    } catch (e) {
      return { result: 'failed', code: errCode(e), detail: `cannot read ${file}: ${(e as Error).message}` };
    }
    const def = defaultRoute(routes, family);
    const r = address ? routeTo(routes, address) : def;
    if (!r) {
      const detail = address ? `no route to ${address}${def ? '' : ' and no default route'}` : 'no default route';
      nodeFaults.push({ step: 'route', detail });
      return { result: 'failed', detail };
    }
    routeIface = r.iface;
    const how = `${r.prefixLength === 0 ? 'default route' : `route ${r.destination}/${r.prefixLength}`}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.iface}`;
    return { result: 'ok', detail: address ? `${address}: ${how}` : how };
  });

  await timed('interface', async () => {
    if (routeIface) {
      const s = await readState(host, opts.sysRoot, routeIface);
      if (typeof s === 'string') return { result: 'failed', detail: s };
      if (s.up) return { result: 'ok', detail: `${routeIface} is ${s.operstate}` };
      const detail = `${routeIface} is ${s.adminUp ? s.operstate : 'administratively down'}`;
      nodeFaults.push({ step: 'interface', detail });
      return { result: 'failed', detail };
    }
    // No route: the kernel drops an interface's IPv4 routes when it is set down, so name the interfaces that are down.
    let names: string[];
    try {
      names = parseInterfaceNames(await host.readFile(`${opts.procRoot}/net/dev`, 256 * 1024));
    } catch (e) {
      return { result: 'skipped', detail: `no route, and cannot list interfaces: ${(e as Error).message}` };
    }
    const down: string[] = [];
    for (const n of names) {
      const s = await readState(host, opts.sysRoot, n);
      if (typeof s !== 'string' && !s.up && n !== 'lo') down.push(`${n} (${s.adminUp ? s.operstate : 'administratively down'})`);
    }
    if (!down.length) return { result: 'skipped', detail: 'no route to judge an interface by; no interface is down' };
    const detail = `down: ${down.join(', ')}`;
    nodeFaults.push({ step: 'interface', detail });
    return { result: 'failed', detail };
  });

  // 4. TCP, 5. TLS, 6. HTTP: tried even when the node's side looks broken, since an answer overrules
  // what the tables say (policy routing, a route in another table). Every socket made is destroyed at
  // the end, whichever step gave up (destroying the TLS socket closes the TCP one under it too).
  const sockets: Socket[] = [];
  let httpStatus: number | undefined;
  try {
    const tcp = await timed('tcp', async () => {
      if (!address) return { result: 'skipped', detail: 'no address to connect to' };
      const s = tcpConnect({ host: address, port: t.port });
      sockets.push(s);
      // A late error (a reset while TLS or HTTP use the socket) is theirs to report; never an uncaught one.
      s.on('error', () => undefined);
      const ok = await within(
        left(),
        signal,
        settles(s, 'connect'),
        () => s.destroy(),
      ).catch((e: unknown) => e as Error);
      if (ok instanceof Error) return { result: 'failed', code: errCode(ok), detail: `connect to ${address}:${t.port}: ${errCode(ok)}` };
      if (ok === undefined) return outOfTime(`connect to ${address}:${t.port}`);
      return { result: 'ok', detail: `connected to ${address}:${t.port}` };
    });

    let stream: Socket | TLSSocket | undefined = tcp.result === 'ok' ? sockets[0] : undefined;
    await timed('tls', async () => {
      if (!stream) return { result: 'skipped', detail: 'no connection' };
      if (!t.https) return { result: 'skipped', detail: 'plain HTTP' };
      // The CA is not checked: the probe sends no credentials and acts only on whether an answer
      // comes, so what matters is that a handshake completes, not whom it is with.
      const tls = tlsConnect({ socket: stream, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...(isIP(t.hostname) ? {} : { servername: t.hostname }) });
      sockets.push(tls);
      stream = undefined;
      tls.on('error', () => undefined);
      const ok = await within(
        left(),
        signal,
        settles(tls, 'secureConnect'),
        () => tls.destroy(),
      ).catch((e: unknown) => e as Error);
      if (ok instanceof Error) return { result: 'failed', code: errCode(ok), detail: `TLS handshake: ${errCode(ok)}: ${ok.message}` };
      if (ok === undefined) return outOfTime('TLS handshake');
      stream = tls;
      const cert = tls.getPeerCertificate();
      return { result: 'ok', detail: `${tls.getProtocol() ?? 'TLS'}${cert?.subject?.CN ? `, certificate CN=${cert.subject.CN}` : ''}${cert?.valid_to ? ` valid until ${cert.valid_to}` : ''}` };
    });

    await timed('http', async () => {
      const s = stream;
      if (!s) return { result: 'skipped', detail: 'no connection' };
      const req = request({
        createConnection: () => s,
        method: 'GET',
        path: t.path,
        headers: { host: isIP(t.hostname) === 6 ? `[${t.hostname}]:${t.port}` : `${t.hostname}:${t.port}`, accept: 'text/plain', 'user-agent': 'nodemedic', connection: 'close' },
      });
      const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
        req.once('response', (res: IncomingMessage) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            if (body.length < 200) body += c.slice(0, 200 - body.length);
          });
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.once('error', reject);
        });
        req.once('error', reject);
      });
      req.end();
      const r = await within(left(), signal, answer, () => req.destroy()).catch((e: unknown) => e as Error);
      if (r instanceof Error) return { result: 'failed', code: errCode(r), detail: `GET ${t.path}: ${errCode(r)}` };
      if (r === undefined) return outOfTime(`GET ${t.path}`);
      httpStatus = r.status;
      return { result: 'ok', detail: `GET ${t.path}: ${r.status}${r.body.trim() ? ` ${JSON.stringify(r.body.trim().slice(0, 80))}` : ''}` };
    });
  } finally {
    for (const s of sockets) s.destroy();
  }
  return { url: t.url, source, steps, nodeFaults, ...(httpStatus !== undefined ? { httpStatus } : {}) };
}

export const networkCheck: CheckDefinition<NetworkOptions> = {
  id: 'network',
  reasons: ['NetworkReachable', 'NetworkUnavailable', 'ApiUnreachable', 'NoKubernetesAccess', 'KubernetesConfigError'],
  defaults: { enabled: true, apiServer: '', healthPath: '/livez', timeout: '5s', probeHistory: 10, procRoot: '/proc', sysRoot: '/sys' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      apiServer: { type: 'string', pattern: '^(https?://[^\\s/?#]+(/[^\\s?#]*)?)?$', description: 'an http(s) URL, or empty' },
      healthPath: { enum: ['/livez', '/readyz'] },
      timeout: { type: 'string', format: 'duration' },
      probeHistory: { type: 'integer', minimum: 1, maximum: 1000 },
      procRoot: { type: 'string', pattern: '^/', description: 'an absolute path' },
      sysRoot: { type: 'string', pattern: '^/', description: 'an absolute path' },
    },
  },
  hostPathOptions: ['procRoot', 'sysRoot'],
  // `start` connects ahead; should that have failed, the first run loads client-node itself (seconds on a busy node).
  runTimeoutMs: (o) => parseDuration(o.timeout) + 5000,
  create(options, { host, kube, nodeName }) {
    const timeoutMs = parseDuration(options.timeout);
    const strip = (p: string): string => p.replace(/\/+$/, '');
    const probeOpts: ProbeOptions = { timeoutMs, procRoot: strip(options.procRoot), sysRoot: strip(options.sysRoot) };
    const history: ProbeOutcome[] = [];
    /** One probe, its verdict. */
    async function assess(signal: AbortSignal): Promise<Finding> {
      let url = options.apiServer;
      let source = 'checks.network.apiServer';
      if (!url) {
        if (!kube) return noKubernetesAccess();
        try {
          const access = await kube.get();
          if (!access) return noKubernetesAccess();
          url = access.api.server;
          source = access.source;
        } catch (e) {
          return unknown('KubernetesConfigError', (e as Error).message);
        }
      }
      let t: Target;
      try {
        t = target(url, options.healthPath);
      } catch (e) {
        return unknown('KubernetesConfigError', `${source}: API server URL ${JSON.stringify(url)}: ${(e as Error).message}`);
      }
      const report = await probe(host, t, source, probeOpts, signal);
      const failed = report.steps.find((s) => s.result === 'failed' || s.result === 'timeout');
      history.push({ reachable: report.httpStatus !== undefined, ...(report.httpStatus === undefined && failed ? { failedStep: failed.step } : {}) });
      while (history.length > options.probeHistory) history.shift();
      return judgeProbe(report, history, timeoutMs);
    }
    const check: Check = {
      id: 'network',
      start: () => (options.apiServer ? undefined : preconnect(kube)),
      // A stopped (disabled, reconfigured) check leaves no stale finding in node-ready's evidence.
      stop: () => withdrawNetwork(nodeName, check),
      async run(signal): Promise<Finding> {
        const f = await assess(signal);
        // Shared with node-ready's problems (checks/network-view.ts): what this node's path looked like when it last probed.
        publishNetwork(nodeName, check, f, host.clock.now());
        return f;
      },
    };
    return check;
  },
};
