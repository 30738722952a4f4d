import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';

/**
 * How one request over a unix socket ended. Never thrown: a daemon that hangs, refuses or answers
 * garbage is a finding, not an exception.
 */
export type UnixCallOutcome<R> =
  | ({ kind: 'response'; elapsedMs: number } & R)
  /**
   * No complete answer within `timeoutMs`; the request and the socket were destroyed.
   * `connected` tells whether the connection was made (the request was sent and never answered,
   * the signature of a stopped or deadlocked daemon) or never completed.
   */
  | { kind: 'timeout'; connected: boolean; elapsedMs: number }
  /**
   * The call failed before an answer: `code` is the errno (`ENOENT`: no socket file; `ECONNREFUSED`:
   * a socket file nobody listens on; `EACCES`) or a protocol error code (`HPE_*`, `ERR_HTTP2_*`).
   */
  | { kind: 'error'; code: string; message: string; connected: boolean; elapsedMs: number }
  /** The caller's signal aborted the call; the request and socket were destroyed. */
  | { kind: 'aborted'; elapsedMs: number };

export interface UnixCallOptions {
  socketPath: string;
  /** Hard limit for the whole call: connect, send, and read the complete answer. */
  timeoutMs: number;
  /** Default 1 MiB; a longer answer is cut and `truncated` set. */
  maxBodyBytes?: number;
  signal?: AbortSignal;
}

export interface UnixHttpRequest extends UnixCallOptions {
  /** Path and query, e.g. `/_ping`. */
  path: string;
  /** Default GET. */
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

export type UnixHttpOutcome = UnixCallOutcome<{
  statusCode: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The body was longer than `maxBodyBytes` and was cut. */
  truncated: boolean;
}>;

export interface GrpcUnaryRequest extends UnixCallOptions {
  /** `/package.Service/Method`, e.g. `/containerd.services.version.v1.Version/Version`. */
  method: string;
  /** The serialized protobuf request message (empty for `google.protobuf.Empty`). */
  message?: Buffer;
  /** Extra request metadata (e.g. `containerd-namespace`). */
  metadata?: Record<string, string>;
}

export type GrpcUnaryOutcome = UnixCallOutcome<{
  /** gRPC status code (0 = OK), from the trailers or a trailers-only answer; -1 when absent. */
  grpcStatus: number;
  grpcMessage: string;
  /** The first response message (without its 5-byte frame header); empty when none came. */
  message: Buffer;
  truncated: boolean;
}>;

const MiB = 1024 * 1024;

/** The `code` of an error outcome for an answer larger than `maxBodyBytes` (gRPC). */
export const ANSWER_TOO_LARGE = 'EANSWERTOOLARGE';

/**
 * Settles a call exactly once, with a hard deadline and the caller's abort signal wired to `destroy`.
 * Everything that may keep a socket open goes through `destroy`, so no outcome leaves one behind.
 */
function deadline<T>(
  opts: UnixCallOptions,
  destroy: () => void,
  timedOut: (elapsedMs: number) => T,
  aborted: (elapsedMs: number) => T,
): { settle(v: T): void; elapsed(): number; promise: Promise<T> } {
  const t0 = performance.now();
  const elapsed = () => Math.round(performance.now() - t0);
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  let done = false;
  const settle = (v: T) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    destroy();
    resolve(v);
  };
  const timer = setTimeout(() => settle(timedOut(elapsed())), Math.max(0, opts.timeoutMs));
  const onAbort = () => settle(aborted(elapsed()));
  if (opts.signal?.aborted) queueMicrotask(onAbort);
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  return { settle, elapsed, promise };
}

function errCode(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' ? code : 'EUNKNOWN';
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One HTTP/1.1 request over a unix socket (the Docker Engine API). Never rejects. */
export function unixHttpRequest(req: UnixHttpRequest): Promise<UnixHttpOutcome> {
  const max = req.maxBodyBytes ?? MiB;
  let connected = false;
  let request: http.ClientRequest | undefined;
  const d = deadline<UnixHttpOutcome>(
    req,
    () => request?.destroy(),
    (elapsedMs) => ({ kind: 'timeout', connected, elapsedMs }),
    (elapsedMs) => ({ kind: 'aborted', elapsedMs }),
  );
  const fail = (e: unknown) => d.settle({ kind: 'error', code: errCode(e), message: errMessage(e), connected, elapsedMs: d.elapsed() });
  try {
    // A fresh connection per call (agent: false): a pooled socket to a daemon that hung would be reused.
    request = http.request({
      socketPath: req.socketPath,
      path: req.path,
      method: req.method ?? 'GET',
      headers: req.headers,
      agent: false,
    });
  } catch (e) {
    fail(e);
    return d.promise;
  }
  request.on('socket', (s: net.Socket) => {
    if (!s.connecting) connected = true;
    else s.once('connect', () => (connected = true));
  });
  request.on('error', fail);
  request.on('response', (res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    const finish = () =>
      d.settle({
        kind: 'response',
        statusCode: res.statusCode ?? 0,
        headers: res.headers,
        body: Buffer.concat(chunks, size),
        truncated,
        elapsedMs: d.elapsed(),
      });
    res.on('data', (c: Buffer) => {
      const room = max - size;
      if (c.length > room) {
        truncated = true;
        if (room > 0) chunks.push(c.subarray(0, room));
        size = max;
        finish();
        return;
      }
      chunks.push(c);
      size += c.length;
    });
    res.on('end', finish);
    res.on('error', fail);
  });
  request.end(req.body);
  return d.promise;
}

/**
 * One unary gRPC call over a unix socket, using Node's HTTP/2 client (gRPC is HTTP/2 with 5-byte
 * length-prefixed frames and the status in trailers). Enough for health and version probes without
 * a gRPC library or a CLI subprocess. Never rejects.
 */
export function unixGrpcUnary(req: GrpcUnaryRequest): Promise<GrpcUnaryOutcome> {
  const max = req.maxBodyBytes ?? MiB;
  let connected = false;
  let socket: net.Socket | undefined;
  let session: http2.ClientHttp2Session | undefined;
  const d = deadline<GrpcUnaryOutcome>(
    req,
    () => {
      session?.destroy();
      socket?.destroy();
    },
    (elapsedMs) => ({ kind: 'timeout', connected, elapsedMs }),
    (elapsedMs) => ({ kind: 'aborted', elapsedMs }),
  );
  const fail = (e: unknown) => d.settle({ kind: 'error', code: errCode(e), message: errMessage(e), connected, elapsedMs: d.elapsed() });
  try {
    socket = net.connect(req.socketPath);
    socket.once('connect', () => (connected = true));
    socket.on('error', fail);
    const s = socket;
    session = http2.connect('http://localhost', { createConnection: () => s });
  } catch (e) {
    fail(e);
    return d.promise;
  }
  session.on('error', fail);
  const stream = session.request({
    ':method': 'POST',
    ':path': req.method,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...req.metadata,
  });
  let grpcStatus = -1;
  let grpcMessage = '';
  const takeStatus = (h: http2.IncomingHttpHeaders) => {
    const st = h['grpc-status'];
    if (typeof st === 'string' && /^\d+$/.test(st)) grpcStatus = Number(st);
    const msg = h['grpc-message'];
    if (typeof msg === 'string') grpcMessage = decodeURIComponentSafe(msg);
  };
  let httpStatus = 0;
  stream.on('response', (h) => {
    httpStatus = Number(h[':status'] ?? 0);
    takeStatus(h);
  });
  stream.on('trailers', takeStatus);
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  // An answer larger than `max` ends the call at once: reading (and dropping) the rest of a 1 GB
  // answer would outlast the deadline and make a daemon that answered promptly look hung.
  const tooLarge = (what: string) =>
    fail(Object.assign(new Error(`answer too large: ${what}, more than the ${max} bytes read`), { code: ANSWER_TOO_LARGE }));
  stream.on('data', (c: Buffer) => {
    if (truncated) return;
    const room = max - size;
    if (c.length > room) {
      truncated = true;
      tooLarge('the response body is longer');
      return;
    }
    chunks.push(c);
    size += c.length;
    // The first frame's header says how long its message is: no need to wait for the bytes.
    if (size >= 5 && size - c.length < 5) {
      const declared = Buffer.concat(chunks, size).readUInt32BE(1);
      if (declared + 5 > max) {
        truncated = true;
        tooLarge(`its first message declares ${declared} bytes`);
      }
    }
  });
  stream.on('error', fail);
  stream.on('close', () => {
    if (httpStatus !== 200) {
      fail(Object.assign(new Error(httpStatus ? `HTTP/2 status ${httpStatus}, not a gRPC answer` : 'stream closed before any answer'), { code: 'EGRPCPROTO' }));
      return;
    }
    const body = Buffer.concat(chunks, size);
    d.settle({ kind: 'response', grpcStatus, grpcMessage, message: firstGrpcMessage(body), truncated, elapsedMs: d.elapsed() });
  });
  const msg = req.message ?? Buffer.alloc(0);
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt8(0, 0); // not compressed
  frame.writeUInt32BE(msg.length, 1);
  msg.copy(frame, 5);
  stream.end(frame);
  return d.promise;
}

/** The payload of the first length-prefixed gRPC message in `body` (cut to what is there). */
export function firstGrpcMessage(body: Buffer): Buffer {
  if (body.length < 5) return Buffer.alloc(0);
  const len = body.readUInt32BE(1);
  return body.subarray(5, 5 + len);
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
