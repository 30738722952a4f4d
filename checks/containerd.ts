import { formatDuration, parseDuration } from '../platform/duration.js';
import { absentDaemonFinding, needsUnitState, queryUnit, remaining, runtimeSocketSchema, SingleFlight, type RuntimeSocketOptions } from './daemon-liveness.js';
import { unknown, type CheckDefinition, type Finding } from './types.js';
import { ANSWER_TOO_LARGE, unixGrpcUnary } from './unix-http.js';

export type ContainerdOptions = RuntimeSocketOptions;

/** containerd's Version API (`ctr version` calls the same), which needs no namespace and touches no state. */
export const CONTAINERD_VERSION_METHOD = '/containerd.services.version.v1.Version/Version';

/**
 * Reasons (stable):
 * - `ContainerdHealthy` (ok): the Version API answered within `timeout`; evidence `version`, `revision`.
 * - `ContainerdHung` (problem): connected (or not even that) but no answer within `timeout`, or the
 *   previous probe is still pending.
 * - `ContainerdDown` (problem): see `absentDaemonFinding`.
 * - `NotInstalled`, `NotRunning`, `SocketError`, `UnexpectedResponse`, `AnswerTooLarge` (unknown: an
 *   answer over 64 KiB, refused as soon as its size shows); `CheckAborted` (unknown)
 *   when the scheduler's own deadline aborted the probe.
 *
 * The probe speaks gRPC itself (HTTP/2 over the unix socket) rather than running `ctr`: no
 * subprocess per sweep, no dependency on ctr being in the agent's image, and the deadline is ours.
 */
export const containerdCheck: CheckDefinition<ContainerdOptions> = {
  id: 'containerd',
  reasons: ['ContainerdHealthy', 'ContainerdHung', 'ContainerdDown', 'NotInstalled', 'NotRunning', 'AnswerTooLarge'],
  restartCures: true,
  nodeCondition: { type: 'ContainerRuntimeUnhealthy', healthyReason: 'ContainerRuntimeIsHealthy' },
  hostPathOptions: ['socket'],
  defaults: { enabled: true, socket: '/run/containerd/containerd.sock', unit: 'containerd', timeout: '10s' },
  schema: runtimeSocketSchema,
  create(options, { host }) {
    const timeoutMs = parseDuration(options.timeout);
    const { socket, unit } = options;
    const flight = new SingleFlight();

    async function probe(signal: AbortSignal): Promise<Finding> {
      const t0 = performance.now();
      const r = await unixGrpcUnary({ socketPath: socket, method: CONTAINERD_VERSION_METHOD, timeoutMs, signal, maxBodyBytes: 64 * 1024 });
      switch (r.kind) {
        case 'aborted':
          return unknown('CheckAborted', `containerd probe on ${socket} was aborted after ${formatDuration(r.elapsedMs)}`, { socket });
        case 'timeout':
          return {
            status: 'problem',
            reason: 'ContainerdHung',
            message: r.connected
              ? `containerd accepted a connection on ${socket} but its Version API did not answer within ${formatDuration(timeoutMs)}: the daemon is hung`
              : `containerd did not accept a connection on ${socket} within ${formatDuration(timeoutMs)}: the daemon is hung`,
            evidence: { socket, timeoutMs, connected: r.connected },
          };
        case 'error': {
          // It answered, promptly: not hung, but not an answer we can judge either.
          if (r.code === ANSWER_TOO_LARGE) {
            return unknown('AnswerTooLarge', `containerd's Version answer on ${socket} is too large (${r.message}); it answered, so it is not hung`, {
              socket,
              elapsedMs: r.elapsedMs,
            });
          }
          if (!r.code.startsWith('E') || r.connected) {
            return unknown('UnexpectedResponse', `the Version call on ${socket} failed: ${r.message}`, { socket, error: r.code });
          }
          const unitQuery = needsUnitState(r.code) ? await queryUnit(host, unit, remaining(t0, timeoutMs, 250)) : undefined;
          return absentDaemonFinding({ label: 'Containerd', socket, unit, failure: r, ...(unitQuery ? { unitQuery } : {}) });
        }
        case 'response':
          break;
      }
      if (r.grpcStatus !== 0) {
        return unknown('UnexpectedResponse', `the Version call on ${socket} answered gRPC status ${r.grpcStatus}${r.grpcMessage ? ` (${r.grpcMessage})` : ''}`, {
          socket,
          grpcStatus: r.grpcStatus,
        });
      }
      const v = decodeVersionResponse(r.message);
      if ('error' in v) return unknown('UnexpectedResponse', `the Version answer on ${socket} is malformed: ${v.error}`, { socket });
      return {
        status: 'ok',
        reason: 'ContainerdHealthy',
        message: `containerd ${v.version} answered on ${socket} in ${formatDuration(r.elapsedMs)}`,
        evidence: { socket, version: v.version, revision: v.revision, latencyMs: r.elapsedMs },
      };
    }

    return {
      id: 'containerd',
      async run(signal) {
        const pending = flight.pendingFor(host.clock.now());
        if (pending !== undefined) {
          return {
            status: 'problem',
            reason: 'ContainerdHung',
            message: `the previous probe of containerd on ${socket} has been waiting for ${formatDuration(pending)}: the daemon is hung`,
            evidence: { socket, timeoutMs, pendingMs: pending },
          };
        }
        return flight.run(host.clock.now(), () => probe(signal));
      },
    };
  },
};

/**
 * Decodes `containerd.services.version.v1.VersionResponse { string version = 1; string revision = 2; }`
 * from protobuf wire format. Pure; unknown fields are skipped, malformed input is an error.
 */
export function decodeVersionResponse(buf: Buffer): { version: string; revision: string } | { error: string } {
  const out = { version: '', revision: '' };
  let i = 0;
  const varint = (): number | undefined => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (i >= buf.length) return undefined;
      const b = buf[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
    }
    return undefined;
  };
  while (i < buf.length) {
    const key = varint();
    if (key === undefined) return { error: `truncated field key at byte ${i}` };
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 2) {
      const len = varint();
      if (len === undefined || i + len > buf.length) return { error: `field ${field}: length runs past the end (${buf.length} bytes)` };
      const bytes = buf.subarray(i, i + len);
      i += len;
      if (field === 1) out.version = bytes.toString('utf8');
      else if (field === 2) out.revision = bytes.toString('utf8');
    } else if (wire === 0) {
      if (varint() === undefined) return { error: `field ${field}: truncated varint` };
    } else if (wire === 1 || wire === 5) {
      i += wire === 1 ? 8 : 4;
      if (i > buf.length) return { error: `field ${field}: truncated fixed-width value` };
    } else {
      return { error: `field ${field}: unsupported wire type ${wire}` };
    }
  }
  if (!out.version) return { error: 'no version field' };
  return out;
}
