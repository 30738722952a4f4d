import type { Host } from '../platform/host.js';
import type { BaseCheckOptions, CheckDefinition, Finding } from './types.js';

/**
 * Kernel-wide tables that a node exhausts silently: PIDs (every thread takes one), open files, and
 * conntrack entries. None of these is cured by restarting kubelet or the runtime, so this check
 * reports (and may set a condition) but is never a remediation trigger.
 */
export interface ResourcesOptions extends BaseCheckOptions {
  /**
   * Where the node's procfs is: `/proc` for the systemd service; `/proc/1/root/proc` in the DaemonSet
   * (hostPID); a fixture tree in tests. Note `sys/net/...` is resolved in the *reader's* network
   * namespace, so the conntrack figures are the node's only with hostNetwork (the DaemonSet has it).
   */
  procRoot: string;
  /** Threads (PIDs in use) against `kernel.pid_max` and `kernel.threads-max`; EKS's node agent uses 70. */
  maxPidsPercent: number;
  /** Allocated file handles against `fs.file-max`; EKS's node agent uses 70. */
  maxFilesPercent: number;
  /** Conntrack entries against `nf_conntrack_max`; NPD's conntrack plugin uses 90. */
  maxConntrackPercent: number;
}

/** One table's use. `percent` is rounded to two decimals; the comparison uses the exact ratio. */
export interface TableUsage {
  used: number;
  limit: number;
  percent: number;
  maxPercent: number;
  /** Reached: `used / limit * 100 >= maxPercent` (at the threshold counts, as EKS's agent does). */
  high: boolean;
}

/** `/proc/loadavg`'s fifth field: the number of scheduling entities (threads), each holding a PID. */
export function parseThreadCount(loadavg: string): number {
  const m = /^\S+ \S+ \S+ \d+\/(\d+) \d+\s*$/.exec(loadavg);
  if (!m) throw new Error(`unexpected loadavg content: ${JSON.stringify(loadavg.slice(0, 80))}`);
  return Number(m[1]);
}

/**
 * `/proc/sys/fs/file-nr`: "allocated unused max". Since 2.6 `unused` is always 0, but subtract it
 * anyway. `max` may be LONG_MAX (systemd 240+ raises fs.file-max), which a double holds well enough.
 */
export function parseFileNr(text: string): { used: number; max: number } {
  const m = /^(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(text);
  if (!m) throw new Error(`unexpected file-nr content: ${JSON.stringify(text.slice(0, 80))}`);
  return { used: Number(m[1]) - Number(m[2]), max: Number(m[3]) };
}

/** A single non-negative integer file (`pid_max`, `nf_conntrack_count`, ...). */
export function parseInteger(text: string, what: string): number {
  const m = /^(\d+)\s*$/.exec(text);
  if (!m) throw new Error(`unexpected ${what} content: ${JSON.stringify(text.slice(0, 80))}`);
  return Number(m[1]);
}

export function usage(used: number, limit: number, maxPercent: number): TableUsage {
  const ratio = limit > 0 ? (used / limit) * 100 : 0;
  return { used, limit, percent: Math.round(ratio * 100) / 100, maxPercent, high: limit > 0 && ratio >= maxPercent };
}

type Read<T> = { ok: true; value: T } | { ok: false; missing: boolean; error: string };

async function readParsed<T>(host: Host, path: string, parse: (s: string) => T): Promise<Read<T>> {
  try {
    return { ok: true, value: parse(await host.readFile(path, 256)) };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { ok: false, missing: err.code === 'ENOENT', error: `${path}: ${err.code ?? ''} ${err.message}`.trim() };
  }
}

export const resourcesCheck: CheckDefinition<ResourcesOptions> = {
  id: 'resources',
  reasons: ['ResourcesNormal', 'PIDUsageHigh', 'FileUsageHigh', 'ConntrackUsageHigh', 'ProcUnreadable'],
  defaults: { enabled: true, procRoot: '/proc', maxPidsPercent: 70, maxFilesPercent: 70, maxConntrackPercent: 90 },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      procRoot: { type: 'string', pattern: '^/', description: 'an absolute path' },
      maxPidsPercent: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
      maxFilesPercent: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
      maxConntrackPercent: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
    },
  },
  runTimeoutMs: () => 10_000,
  create(options, { host }) {
    const p = (rel: string): string => `${options.procRoot.replace(/\/+$/, '')}/${rel}`;
    return {
      id: 'resources',
      async run(): Promise<Finding> {
        const [threads, pidMax, threadsMax, fileNr, ctCount, ctMax] = await Promise.all([
          readParsed(host, p('loadavg'), parseThreadCount),
          readParsed(host, p('sys/kernel/pid_max'), (s) => parseInteger(s, 'pid_max')),
          readParsed(host, p('sys/kernel/threads-max'), (s) => parseInteger(s, 'threads-max')),
          readParsed(host, p('sys/fs/file-nr'), parseFileNr),
          readParsed(host, p('sys/net/netfilter/nf_conntrack_count'), (s) => parseInteger(s, 'nf_conntrack_count')),
          readParsed(host, p('sys/net/netfilter/nf_conntrack_max'), (s) => parseInteger(s, 'nf_conntrack_max')),
        ]);
        const unreadable: string[] = [];
        const tables: Record<string, TableUsage> = {};
        const notApplicable: string[] = [];
        if (threads.ok && pidMax.ok) tables.pids = usage(threads.value, pidMax.value, options.maxPidsPercent);
        if (threads.ok && threadsMax.ok) tables.threads = usage(threads.value, threadsMax.value, options.maxPidsPercent);
        for (const r of [threads, pidMax, threadsMax]) if (!r.ok) unreadable.push(r.error);
        if (fileNr.ok) tables.files = usage(fileNr.value.used, fileNr.value.max, options.maxFilesPercent);
        else unreadable.push(fileNr.error);
        if (ctCount.ok && ctMax.ok) tables.conntrack = usage(ctCount.value, ctMax.value, options.maxConntrackPercent);
        else if ((!ctCount.ok && ctCount.missing) || (!ctMax.ok && ctMax.missing)) {
          // No nf_conntrack module loaded (no kube-proxy iptables/ipvs, or not yet): no table to fill.
          notApplicable.push('conntrack');
        } else {
          for (const r of [ctCount, ctMax]) if (!r.ok) unreadable.push(r.error);
        }
        const evidence = { procRoot: options.procRoot, ...tables, notApplicable, unreadable };
        const high = Object.entries(tables).filter(([, u]) => u.high);
        if (high.length) {
          const what: Record<string, string> = {
            pids: 'threads against kernel.pid_max',
            threads: 'threads against kernel.threads-max',
            files: 'open files against fs.file-max',
            conntrack: 'conntrack entries against nf_conntrack_max',
          };
          const names = high.map(([k]) => k);
          const reason = names.includes('pids') || names.includes('threads')
            ? 'PIDUsageHigh'
            : names.includes('files')
              ? 'FileUsageHigh'
              : 'ConntrackUsageHigh';
          return {
            status: 'problem',
            reason,
            message: `${high
              .map(([k, u]) => `${what[k]} at ${u.percent}% (${u.used}/${u.limit}, limit ${u.maxPercent}%)`)
              .join('; ')}: a restart does not help; find the process leaking threads, files or connections, or raise the limit`,
            evidence,
          };
        }
        if (unreadable.length) {
          return { status: 'unknown', reason: 'ProcUnreadable', message: `could not read ${unreadable.join('; ')}`, evidence };
        }
        const parts = Object.entries(tables).map(([k, u]) => `${k} ${u.percent}%`);
        return {
          status: 'ok',
          reason: 'ResourcesNormal',
          message: `kernel tables below limits (${parts.join(', ')}${notApplicable.length ? '; conntrack not loaded' : ''})`,
          evidence,
        };
      },
    };
  },
};
