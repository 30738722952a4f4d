import http from 'node:http';
import https from 'node:https';
import type { CheckResult } from '../checks/types.js';
import { EXIT } from '../platform/errors.js';

/** `check`'s exit code (node-problem-detector custom-plugin protocol): 0 ok, 1 a problem, 2 unknown only. */
export function exitCodeFor(results: readonly Pick<CheckResult, 'status'>[]): number {
  if (results.some((r) => r.status === 'problem')) return EXIT.problem;
  if (results.some((r) => r.status === 'unknown')) return EXIT.unknown;
  return EXIT.ok;
}

/** A plain-text table: one row per check, the message wrapped to the terminal width. */
export function formatTable(results: readonly CheckResult[], width = process.stdout.columns || 120): string {
  const rows = results.map((r) => [r.check, r.status.toUpperCase(), r.reason, r.message] as const);
  const head = ['CHECK', 'STATUS', 'REASON', 'MESSAGE'] as const;
  const w = [0, 1, 2].map((i) => Math.max(head[i]!.length, ...rows.map((r) => r[i]!.length)));
  const indent = w[0]! + w[1]! + w[2]! + 6;
  const msgWidth = Math.max(30, width - indent);
  const line = (cols: readonly string[]): string => {
    const msg = wrap(cols[3]!, msgWidth);
    const first = `${cols[0]!.padEnd(w[0]!)}  ${cols[1]!.padEnd(w[1]!)}  ${cols[2]!.padEnd(w[2]!)}  ${msg[0] ?? ''}`;
    return [first, ...msg.slice(1).map((m) => `${' '.repeat(indent)}${m}`)].join('\n');
  };
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let cur = '';
  for (const word of text.split(/\s+/)) {
    if (cur && cur.length + 1 + word.length > width) {
      out.push(cur);
      cur = word;
    } else cur = cur ? `${cur} ${word}` : word;
  }
  if (cur) out.push(cur);
  return out;
}

// ---------------------------------------------------------------------------------------------
// node-problem-detector's custom-plugin protocol

/**
 * NPD (pkg/custompluginmonitor/plugin/plugin.go) trims the plugin's stdout and cuts it at
 * `max_output_length` bytes, 80 by default, and uses it as the condition's message; exit 0 is OK, 1
 * NonOK, anything else Unknown (`exitCodeFor`).
 */
export const NPD_MAX_OUTPUT_BYTES = 80;

/** Cuts `text` to at most `max` UTF-8 bytes, never inside a character, marking a cut with `...`. */
export function cutUtf8(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = '';
  let n = 0;
  for (const ch of text) {
    const b = Buffer.byteLength(ch);
    if (n + b > max - 3) break;
    out += ch;
    n += b;
  }
  return `${out}...`;
}

/**
 * The one line `check --format npd` prints: the worst result (a problem, else an unknown, else ok),
 * as `check: Reason: message`, on one line of at most 80 bytes. Other results are counted, so the
 * line says when more than one check is not ok.
 */
export function formatNpd(results: readonly CheckResult[]): string {
  const worst = results.find((r) => r.status === 'problem') ?? results.find((r) => r.status === 'unknown');
  let text: string;
  if (!results.length) text = 'no check ran (disabled in the config)';
  else if (!worst) {
    text = results.length === 1 ? `${results[0]!.check}: ${results[0]!.reason}: ${results[0]!.message}` : `ok: ${results.map((r) => r.check).join(', ')}`;
  } else {
    const others = results.filter((r) => r !== worst && r.status !== 'ok').length;
    text = `${worst.check}: ${worst.reason}: ${worst.message}`;
    if (others) text = `(+${others} more) ${text}`;
  }
  return cutUtf8(text.replace(/\s+/g, ' ').trim(), NPD_MAX_OUTPUT_BYTES);
}

// ---------------------------------------------------------------------------------------------
// `nodemedic status`

/** What `status` shows of a running agent's /status, after checking its shape. */
export interface StatusAnswer {
  node?: string;
  lastSweep?: string | null;
  results: CheckResult[];
  remediation?: Record<string, unknown>;
  [k: string]: unknown;
}

/** /status is a few hundred KB at most (evidence included); far more is not an agent's answer. */
export const STATUS_MAX_BYTES = 8 * 1024 * 1024;

const STATUSES = new Set(['ok', 'problem', 'unknown']);

/** Why `body` is not a nodemedic /status answer, or undefined when it is one. Pure. */
export function statusShapeProblem(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'it is not a JSON object';
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.results)) return '"results" is missing or not a list';
  for (const [i, r] of b.results.entries()) {
    if (typeof r !== 'object' || r === null) return `results[${i}] is not an object`;
    const x = r as Record<string, unknown>;
    if (typeof x.check !== 'string') return `results[${i}].check is not a string`;
    if (typeof x.status !== 'string' || !STATUSES.has(x.status)) return `results[${i}].status is not ok, problem or unknown`;
    if (typeof x.reason !== 'string' || typeof x.message !== 'string') return `results[${i}] has no reason or message`;
  }
  if (b.remediation !== undefined && (typeof b.remediation !== 'object' || b.remediation === null || Array.isArray(b.remediation))) return '"remediation" is not an object';
  return undefined;
}

/**
 * GET `url` (an agent's /status), bounded in time and size, and check the answer's shape. Never
 * rejects: every failure is a sentence for the operator (nothing listening, not JSON, too large...).
 */
export function readStatusAnswer(url: URL, opts: { timeoutMs: number; maxBytes?: number }): Promise<{ ok: true; status: StatusAnswer } | { ok: false; error: string }> {
  const maxBytes = opts.maxBytes ?? STATUS_MAX_BYTES;
  return new Promise((resolve) => {
    let done = false;
    const finish = (v: { ok: true; status: StatusAnswer } | { ok: false; error: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(v);
    };
    const fail = (error: string): void => finish({ ok: false, error });
    const timer = setTimeout(() => fail(`no answer from ${url.href} within ${opts.timeoutMs / 1000} s (is the agent hung?)`), opts.timeoutMs);
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.get(url, { agent: false, headers: { accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return fail(`${url.href} answered HTTP ${res.statusCode ?? '?'}, not 200 (is this a nodemedic agent?)`);
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) return fail(`the answer from ${url.href} is too large (${declared} bytes; at most ${maxBytes} are read): not an agent's /status`);
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) return fail(`the answer from ${url.href} is too large (more than ${maxBytes} bytes): not an agent's /status`);
        chunks.push(c);
      });
      res.on('error', (e) => fail(`the answer from ${url.href} broke off: ${e.message}`));
      res.on('end', () => {
        const text = Buffer.concat(chunks, size).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch (e) {
          return fail(`the answer from ${url.href} is not JSON (${(e as Error).message.slice(0, 100)}); is this a nodemedic agent? It began: ${JSON.stringify(text.slice(0, 60))}`);
        }
        const why = statusShapeProblem(body);
        if (why) return fail(`the answer from ${url.href} is not a nodemedic /status: ${why}`);
        finish({ ok: true, status: body as StatusAnswer });
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') {
        return fail(`nothing is listening at ${url.origin}: is the agent running? (start it with \`systemctl start nodemedic\` or \`nodemedic run\`; --url or the config's http.listen say where it listens)`);
      }
      fail(`cannot reach the agent at ${url.origin}: ${e.code ?? ''} ${e.message}`.replace(/\s+/g, ' '));
    });
  });
}

/** The remediation part of /status as indented `key: value` lines (one level of nesting spelled out). */
export function formatRemediation(rem: Record<string, unknown>): string {
  const lines = ['remediation:'];
  const scalar = (v: unknown): string | undefined =>
    v === null ? 'none' : typeof v === 'string' ? (v === '' ? '""' : v) : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
  const one = (v: unknown): string => {
    const s = scalar(v);
    if (s !== undefined) return s;
    if (Array.isArray(v)) return v.length === 0 ? 'none' : v.every((x) => scalar(x) !== undefined) ? v.map((x) => scalar(x)).join(', ') : `${v.length} entries`;
    const keys = Object.keys(v as object);
    return keys.length === 0 ? 'none' : `${keys.length} entries (${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', ...' : ''})`;
  };
  for (const [k, v] of Object.entries(rem)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length === 0) lines.push(`  ${k}: none`);
      else {
        lines.push(`  ${k}:`);
        for (const [k2, v2] of entries.slice(0, 20)) lines.push(`    ${k2}: ${one(v2)}`);
        if (entries.length > 20) lines.push(`    ... and ${entries.length - 20} more`);
      }
    } else lines.push(`  ${k}: ${one(v)}`);
  }
  return lines.map((l) => cutUtf8(l, 200)).join('\n') + '\n';
}
