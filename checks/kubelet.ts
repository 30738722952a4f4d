import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { describeUnitState, showUnitShared, type UnitQueryResult, type UnitState } from '../platform/systemd-unit.js';
import { unknown, type BaseCheckOptions, type CheckDefinition, type Finding } from './types.js';

export interface KubeletOptions extends BaseCheckOptions {
  /** The systemd unit running kubelet (`kubelet` means `kubelet.service`). */
  unit: string;
  /** kubelet's healthz endpoint (`--healthz-bind-address`/`--healthz-port`, plain HTTP by default). */
  healthzUrl: string;
  /** Bound for each probe (systemctl, healthz); they run in parallel. */
  timeout: string;
}

/**
 * Reasons:
 * - `ok` `KubeletHealthy`: the unit is active and healthz answered 200.
 * - `problem` `KubeletInactive`: the unit is not active (stopped, failed, restarting); the
 *   message says its state.
 * - `problem` `KubeletHealthzFailed`: the unit is active but healthz answered non-200, refused
 *   the connection or broke it.
 * - `problem` `KubeletHealthzTimeout`: the unit is active but healthz did not answer within `timeout`.
 * - `unknown` `NotInstalled`: systemd knows no such unit, or there is no systemd on this node.
 * - `unknown` `CommandTimeout` / `SystemctlFailed`: systemctl itself did not answer or failed, so
 *   the unit's state is not known (healthz is still reported in the evidence).
 * - `unknown` `Aborted`: the scheduler gave up on this run.
 */
export const KUBELET_REASONS = [
  'KubeletHealthy',
  'KubeletInactive',
  'KubeletHealthzFailed',
  'KubeletHealthzTimeout',
  'NotInstalled',
  'CommandTimeout',
  'SystemctlFailed',
  'InvalidUnitName',
  'Aborted',
] as const;

/**
 * Whether a failed `systemctl show` means this node has no systemd at all: systemctl is missing, or
 * it says systemd is not PID 1 ("System has not been booted with systemd as init system"). A hung or
 * broken systemd is not this: its failures stay `SystemctlFailed` / `CommandTimeout`.
 */
export function noSystemdHere(q: UnitQueryResult): boolean {
  if (q.ok || q.reason !== 'SystemctlFailed') return false;
  return /has not been booted with systemd|could not run: \S+ is not installed|could not run: .*(?:No such file|not found)/i.test(q.message);
}

/** How one healthz request ended. */
export type HealthzOutcome =
  | { kind: 'response'; status: number; body: string; latencyMs: number }
  | { kind: 'timeout'; latencyMs: number }
  | { kind: 'error'; code: string; message: string; latencyMs: number }
  | { kind: 'aborted'; latencyMs: number };

const MAX_BODY = 64 * 1024;

/**
 * One GET of `url`, on a connection of its own (no keep-alive pool: a hung kubelet must not
 * leave sockets behind), bounded by `timeoutMs` and `signal`. Never rejects.
 */
export function probeHealthz(url: string, timeoutMs: number, signal?: AbortSignal): Promise<HealthzOutcome> {
  const started = performance.now();
  const elapsed = (): number => Math.round((performance.now() - started) * 10) / 10;
  return new Promise((resolve) => {
    let req: http.ClientRequest | undefined;
    let settled = false;
    const finish = (o: HealthzOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req?.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout', latencyMs: elapsed() }), timeoutMs);
    const onAbort = (): void => finish({ kind: 'aborted', latencyMs: elapsed() });
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const target = new URL(url);
      const mod = target.protocol === 'https:' ? https : http;
      req = mod.get(target, { agent: false, headers: { 'user-agent': 'nodemedic' } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < MAX_BODY) chunks.push(c.subarray(0, MAX_BODY - size));
          size += c.length;
        });
        res.on('end', () =>
          finish({ kind: 'response', status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), latencyMs: elapsed() }),
        );
        res.on('error', (e: NodeJS.ErrnoException) =>
          finish({ kind: 'error', code: e.code ?? 'ERROR', message: e.message, latencyMs: elapsed() }),
        );
      });
      req.on('error', (e: NodeJS.ErrnoException) =>
        finish({ kind: 'error', code: e.code ?? 'ERROR', message: e.message, latencyMs: elapsed() }),
      );
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      finish({ kind: 'error', code: err.code ?? 'ERROR', message: err.message, latencyMs: elapsed() });
    }
  });
}

function healthzEvidence(url: string, h: HealthzOutcome): Record<string, unknown> {
  const ev: Record<string, unknown> = { url, outcome: h.kind, latencyMs: h.latencyMs };
  if (h.kind === 'response') {
    ev.status = h.status;
    if (h.status !== 200) ev.body = h.body.slice(0, 300);
  }
  if (h.kind === 'error') ev.error = `${h.code}: ${h.message}`.slice(0, 300);
  return ev;
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

function unitEvidence(u: UnitState): Record<string, unknown> {
  const ev: Record<string, unknown> = {
    unit: u.id,
    loadState: u.loadState,
    activeState: u.activeState,
    subState: u.subState,
  };
  if (u.result !== undefined) ev.result = u.result;
  if (u.mainPid !== undefined) ev.mainPid = u.mainPid;
  if (u.nRestarts !== undefined) ev.nRestarts = u.nRestarts;
  // The last start: when it began (set even if it never became active) and when it became active.
  if (u.inactiveExitAtMs !== undefined) ev.lastStartAt = iso(u.inactiveExitAtMs);
  if (u.activeEnterAtMs !== undefined) ev.activeSince = iso(u.activeEnterAtMs);
  if (u.execMainStartAtMs !== undefined) ev.mainProcessStartedAt = iso(u.execMainStartAtMs);
  return ev;
}

function oneLine(text: string, max = 120): string {
  const s = text.replace(/\s+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

/** The verdict from the unit's state and the healthz outcome. Pure. */
export function kubeletFinding(
  unitQuery: UnitQueryResult,
  healthz: HealthzOutcome,
  opts: { unit: string; healthzUrl: string; timeoutMs: number },
): Finding {
  const hz = healthzEvidence(opts.healthzUrl, healthz);
  if (!unitQuery.ok) {
    const seen = healthz.kind === 'response' ? `healthz answered ${healthz.status}` : `healthz: ${healthz.kind}`;
    // No systemd on this node (not PID 1, or no systemctl): there is no unit to find, which the
    // README calls NotInstalled, not a systemctl failure to investigate.
    if (noSystemdHere(unitQuery)) {
      return unknown('NotInstalled', `${opts.unit} is not installed as a systemd unit: ${unitQuery.message} (${seen})`, { unit: opts.unit, healthz: hz, systemd: 'absent' });
    }
    return unknown(unitQuery.reason, `${unitQuery.message} (${seen})`, { unit: opts.unit, healthz: hz });
  }
  const u = unitQuery.unit;
  const evidence = { ...unitEvidence(u), healthz: hz };
  if (u.loadState === 'not-found') {
    return unknown('NotInstalled', `${u.id} is not installed (systemd has no such unit)`, evidence);
  }
  if (healthz.kind === 'aborted') return unknown('Aborted', `the check was aborted while probing ${opts.healthzUrl}`, evidence);
  // `reloading` is active for our purpose: kubelet keeps serving during a reload.
  if (u.activeState !== 'active' && u.activeState !== 'reloading') {
    const restarts = u.nRestarts ? `, ${u.nRestarts} automatic restarts` : '';
    const masked = u.loadState !== 'loaded' ? `, unit ${u.loadState}` : '';
    return {
      status: 'problem',
      reason: 'KubeletInactive',
      message: `${u.id} is ${describeUnitState(u)}${restarts}${masked}; see \`journalctl -u ${u.id}\``,
      evidence,
    };
  }
  const since = u.activeEnterAtMs !== undefined ? ` since ${iso(u.activeEnterAtMs)}` : '';
  switch (healthz.kind) {
    case 'response':
      if (healthz.status === 200) {
        return {
          status: 'ok',
          reason: 'KubeletHealthy',
          message: `${u.id} is ${describeUnitState(u)}${since} and healthz answered 200 in ${formatDuration(healthz.latencyMs)}`,
          evidence,
        };
      }
      return {
        status: 'problem',
        reason: 'KubeletHealthzFailed',
        message: `${u.id} is active but ${opts.healthzUrl} answered ${healthz.status}: ${oneLine(healthz.body) || '(empty body)'}`,
        evidence,
      };
    case 'timeout':
      return {
        status: 'problem',
        reason: 'KubeletHealthzTimeout',
        message: `${u.id} is active but ${opts.healthzUrl} did not answer within ${formatDuration(opts.timeoutMs)}`,
        evidence,
      };
    case 'error':
      return {
        status: 'problem',
        reason: 'KubeletHealthzFailed',
        message: `${u.id} is active but ${opts.healthzUrl} failed: ${healthz.code} (${oneLine(healthz.message)})`,
        evidence,
      };
  }
}

export const kubeletCheck: CheckDefinition<KubeletOptions> = {
  id: 'kubelet',
  reasons: ['KubeletHealthy', 'KubeletInactive', 'KubeletHealthzFailed', 'KubeletHealthzTimeout', 'NotInstalled', 'CommandTimeout', 'SystemctlFailed'],
  restartCures: true,
  nodeCondition: { type: 'KubeletUnhealthy', healthyReason: 'KubeletIsHealthy' },
  defaults: { enabled: true, unit: 'kubelet', healthzUrl: 'http://127.0.0.1:10248/healthz', timeout: '10s' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      // systemd.unit(5) names; a leading '-' could be read as an option.
      unit: { type: 'string', pattern: '^[A-Za-z0-9:_.@\\\\][A-Za-z0-9:_.@\\\\-]*$' },
      healthzUrl: { type: 'string', pattern: '^https?://' },
      timeout: { type: 'string', format: 'duration' },
    },
  },
  // Both probes run in parallel, each bounded by `timeout` (systemctl then gets 0.5 s to die).
  runTimeoutMs: (o) => parseDuration(o.timeout) + 2000,
  create(options, { host }) {
    const timeoutMs = parseDuration(options.timeout);
    return {
      id: 'kubelet',
      async run(signal) {
        const [unitQuery, healthz] = await Promise.all([
          showUnitShared(host, options.unit, timeoutMs),
          probeHealthz(options.healthzUrl, timeoutMs, signal),
        ]);
        return kubeletFinding(unitQuery, healthz, { unit: options.unit, healthzUrl: options.healthzUrl, timeoutMs });
      },
    };
  },
};
