import { formatDuration, parseDuration } from '../platform/duration.js';
import { absentDaemonFinding, needsUnitState, queryUnit, remaining, runtimeSocketSchema, SingleFlight, type RuntimeSocketOptions } from './daemon-liveness.js';
import { unknown, type CheckDefinition, type Finding } from './types.js';
import { unixHttpRequest } from './unix-http.js';

export type DockerOptions = RuntimeSocketOptions;

/**
 * Reasons (stable):
 * - `DockerHealthy` (ok): `GET /_ping` answered 200 within `timeout`. Evidence from `GET /info` when it
 *   answers too: `liveRestoreEnabled` (boolean; absent when /info did not answer, which the ladder must
 *   treat as "not known to be safe to restart"), `serverVersion`, `containers`, `containersRunning`.
 * - `DockerHung` (problem): the socket accepted the connection (or did not even complete it) but no
 *   answer came within `timeout` (to `/_ping`, or to `/info` after `/_ping`), or the previous probe is
 *   still pending.
 * - `DockerDown` (problem): see `absentDaemonFinding` (socket refused or missing while the unit runs,
 *   is enabled or failed; or a stale socket with no unit).
 * - `NotInstalled`, `NotRunning`, `SocketError`, `UnexpectedResponse` (unknown); `CheckAborted` (unknown)
 *   when the scheduler's own deadline aborted the probe.
 */
export const dockerCheck: CheckDefinition<DockerOptions> = {
  id: 'docker',
  reasons: ['DockerHealthy', 'DockerHung', 'DockerDown', 'NotInstalled', 'NotRunning', 'SocketError'],
  restartCures: true,
  nodeCondition: { type: 'ContainerRuntimeUnhealthy', healthyReason: 'ContainerRuntimeIsHealthy' },
  hostPathOptions: ['socket'],
  defaults: { enabled: true, socket: '/var/run/docker.sock', unit: 'docker', timeout: '10s' },
  schema: runtimeSocketSchema,
  create(options, { host }) {
    const timeoutMs = parseDuration(options.timeout);
    const { socket, unit } = options;
    const flight = new SingleFlight();

    async function probe(signal: AbortSignal): Promise<Finding> {
      const t0 = performance.now();
      const ping = await unixHttpRequest({ socketPath: socket, path: '/_ping', timeoutMs, signal, maxBodyBytes: 4096 });
      switch (ping.kind) {
        case 'aborted':
          return unknown('CheckAborted', `docker probe on ${socket} was aborted after ${formatDuration(ping.elapsedMs)}`, { socket });
        case 'timeout':
          return {
            status: 'problem',
            reason: 'DockerHung',
            message: ping.connected
              ? `dockerd accepted a connection on ${socket} but did not answer GET /_ping within ${formatDuration(timeoutMs)}: the daemon is hung`
              : `dockerd did not accept a connection on ${socket} within ${formatDuration(timeoutMs)}: the daemon is hung`,
            evidence: { socket, timeoutMs, connected: ping.connected },
          };
        case 'error': {
          if (!ping.code.startsWith('E') || ping.connected) {
            // The daemon (or something) answered, but not HTTP; or it dropped us mid-request.
            return unknown('UnexpectedResponse', `GET /_ping on ${socket} failed: ${ping.message}`, { socket, error: ping.code });
          }
          const unitQuery = needsUnitState(ping.code) ? await queryUnit(host, unit, remaining(t0, timeoutMs, 250)) : undefined;
          return absentDaemonFinding({ label: 'Docker', socket, unit, failure: ping, ...(unitQuery ? { unitQuery } : {}) });
        }
        case 'response':
          break;
      }
      if (ping.statusCode !== 200) {
        return unknown('UnexpectedResponse', `GET /_ping on ${socket} answered HTTP ${ping.statusCode}: ${ping.body.toString('utf8', 0, 200)}`, {
          socket,
          statusCode: ping.statusCode,
        });
      }
      const evidence: Record<string, unknown> = { socket, pingMs: ping.elapsedMs };
      const version = ping.headers['api-version'];
      if (typeof version === 'string') evidence.apiVersion = version;
      const info = await unixHttpRequest({ socketPath: socket, path: '/info', timeoutMs: remaining(t0, timeoutMs, 1), signal, maxBodyBytes: 4 * 1024 * 1024 });
      if (info.kind === 'timeout') {
        // The daemon hung between the two requests (seen in the benchmark: a SIGSTOP after /_ping
        // answered). It did not answer within `timeout`: that is a hang, whichever request it hit.
        return {
          status: 'problem',
          reason: 'DockerHung',
          message: `dockerd answered GET /_ping but not GET /info within ${formatDuration(timeoutMs)} on ${socket}: the daemon is hung`,
          evidence: { ...evidence, timeoutMs, hungOn: '/info' },
        };
      }
      if (info.kind === 'response' && info.statusCode === 200 && !info.truncated) {
        const parsed = parseDockerInfo(info.body.toString('utf8'));
        Object.assign(evidence, parsed.info);
        if (parsed.error) evidence.infoError = parsed.error;
      } else {
        evidence.infoError =
          info.kind === 'response'
            ? info.truncated
              ? 'GET /info answer too large'
              : `GET /info answered HTTP ${info.statusCode}`
            : info.kind === 'error'
              ? `GET /info failed: ${info.message}`
              : 'GET /info aborted';
      }
      const infoNote = evidence.infoError
        ? `; ${String(evidence.infoError)}, live-restore unknown`
        : `, live-restore ${evidence.liveRestoreEnabled ? 'enabled' : 'disabled'}`;
      return {
        status: 'ok',
        reason: 'DockerHealthy',
        message: `dockerd${evidence.serverVersion ? ` ${String(evidence.serverVersion)}` : ''} answered on ${socket} in ${formatDuration(ping.elapsedMs)}${infoNote}`,
        evidence,
      };
    }

    return {
      id: 'docker',
      async run(signal) {
        const pending = flight.pendingFor(host.clock.now());
        if (pending !== undefined) {
          return {
            status: 'problem',
            reason: 'DockerHung',
            message: `the previous probe of dockerd on ${socket} has been waiting for ${formatDuration(pending)}: the daemon is hung`,
            evidence: { socket, timeoutMs, pendingMs: pending },
          };
        }
        return flight.run(host.clock.now(), () => probe(signal));
      },
    };
  },
};

/** The fields of `GET /info` the agent reports; `liveRestoreEnabled` decides whether a restart is safe. */
export interface DockerInfoEvidence {
  liveRestoreEnabled?: boolean;
  serverVersion?: string;
  containers?: number;
  containersRunning?: number;
}

/**
 * Picks the reported fields out of a `GET /info` body. Pure. `error` says what is missing or wrong;
 * the fields that could be read are returned anyway.
 */
export function parseDockerInfo(body: string): { info: DockerInfoEvidence; error?: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (e) {
    return { info: {}, error: `GET /info answered invalid JSON: ${(e as Error).message}` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { info: {}, error: 'GET /info answered JSON that is not an object' };
  }
  const o = parsed as Record<string, unknown>;
  const info: DockerInfoEvidence = {};
  if (typeof o.LiveRestoreEnabled === 'boolean') info.liveRestoreEnabled = o.LiveRestoreEnabled;
  if (typeof o.ServerVersion === 'string') info.serverVersion = o.ServerVersion;
  if (typeof o.Containers === 'number') info.containers = o.Containers;
  if (typeof o.ContainersRunning === 'number') info.containersRunning = o.ContainersRunning;
  if (info.liveRestoreEnabled === undefined) return { info, error: 'GET /info has no boolean LiveRestoreEnabled' };
  return { info };
}
