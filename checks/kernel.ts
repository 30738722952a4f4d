import { readFileSync } from 'node:fs';
import type { Host, LineStream, SpawnLinesOptions } from '../platform/host.js';
import { parseDuration } from '../platform/duration.js';
import { classifyKernelLine, CONDITION_KINDS, EVENT_KINDS, type KernelKind } from './kernel-classify.js';
import { KmsgSource } from './kernel-kmsg.js';
import { JournaldSource, type LogLine, type LogSource } from './log-source.js';
import { unknown, type BaseCheckOptions, type CheckDefinition, type CheckResult, type Finding, type NodeConditionSpec } from './types.js';

export interface KernelOptions extends BaseCheckOptions {
  /** `journald`: `journalctl -k -b -o json` through the host prefix. `kmsg`: read `kmsgPath` (no journal). */
  source: 'journald' | 'kmsg';
  kmsgPath: string;
  /** How long an event kind (OOM kill, I/O error, ...) keeps the check at `problem` after its last line. */
  window: string;
  /** OOM victims that matter (comm, as the kernel prints it); other OOM kills are a pod's business. */
  oomProcesses: string[];
  /** Lines kept per kind as evidence (the most recent). */
  maxLinesPerKind: number;
  /** kmsg: how often to look for new records. */
  pollInterval: string;
}

/**
 * The Node conditions of the kernel log, with NPD's types and healthy reasons (NPD's
 * config/kernel-monitor.json: `KernelHasNoDeadlock`, `FilesystemIsNotReadOnly`), so tools that read
 * NPD's conditions read ours. One result feeds both: each condition is `True` while its kind was seen
 * this boot, whatever else the log shows; the event kinds (OOM kills, I/O errors, ...) set neither.
 */
function kernelCondition(kind: KernelKind, healthyReason: string): NodeConditionSpec {
  return {
    type: kind,
    healthyReason,
    // A node without a kernel log source says nothing, and a catching-up reader says nothing yet.
    silentWhen: ['NotInstalled', 'SourceCatchingUp'],
    select(r: CheckResult): CheckResult {
      const seen = (r.evidence?.kinds as Record<string, { count: number; names: string[]; lines: string[] }> | undefined)?.[kind];
      if (seen) {
        const names = seen.names.length ? ` (${seen.names.join(', ')})` : '';
        return { ...r, status: 'problem', reason: kind, message: `${kind}${names}: ${seen.count} line(s) this boot, last "${seen.lines.at(-1) ?? ''}"` };
      }
      // Another kind (an event, or the other condition) is not this condition's problem.
      return r.status === 'problem' ? { ...r, status: 'ok', reason: 'KernelLogQuiet', message: `no ${kind} line in the kernel log of this boot` } : r;
    },
  };
}

interface KindState {
  count: number;
  firstAtMs: number;
  lastAtMs: number;
  /** The most recent lines, oldest first, as they were logged. */
  lines: string[];
  /** Processes named (hung tasks, OOM victims, locked-up tasks) and devices. */
  names: Set<string>;
}

/** Placeholder unit name swapped for `-k` on its way to journalctl (see `kernelJournalHost`). */
const KERNEL_UNIT = '\u0000kernel-transport';

/**
 * The journald follower reads one unit (`-u UNIT`); the kernel log is `-k` (`_TRANSPORT=kernel`, this
 * boot). Rather than fork the follower (cursor, back-off and catch-up logic), its argv is rewritten
 * on the way out: `-u <placeholder>` becomes `-k`.
 */
function kernelJournalHost(host: Host): Host {
  const rewrite = (argv: readonly string[]): string[] => {
    const out: string[] = [];
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === '-u' && argv[i + 1] === KERNEL_UNIT) {
        out.push('-k');
        i++;
      } else out.push(argv[i]!);
    }
    return out;
  };
  return {
    clock: host.clock,
    run: (argv, opts) => host.run(rewrite(argv), opts),
    spawnLines: (argv: readonly string[], opts: SpawnLinesOptions): LineStream => host.spawnLines(rewrite(argv), opts),
    readFile: (p, n) => host.readFile(p, n),
    statfs: (p) => host.statfs(p),
  };
}

function bootTimeMs(nowMs: number): number {
  try {
    const up = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    if (Number.isFinite(up)) return nowMs - up * 1000;
  } catch {
    // Not Linux: the kmsg source does not apply anyway.
  }
  return nowMs;
}

const CATCH_UP_WAIT_MS = 5000;

export const kernelCheck: CheckDefinition<KernelOptions> = {
  id: 'kernel',
  nodeCondition: [kernelCondition('KernelDeadlock', 'KernelHasNoDeadlock'), kernelCondition('ReadonlyFilesystem', 'FilesystemIsNotReadOnly')],
  reasons: ['KernelLogQuiet', 'NoKernelLines', 'KernelDeadlock', 'ReadonlyFilesystem', 'OOMKilling', 'SoftLockup', 'IOError', 'FilesystemError', 'ConntrackFull', 'UnregisterNetDevice', 'TaskHung', 'NotInstalled', 'SourceUnavailable', 'SourceCatchingUp'],
  defaults: {
    enabled: true,
    source: 'journald',
    kmsgPath: '/dev/kmsg',
    window: '10m',
    oomProcesses: ['kubelet', 'dockerd', 'containerd', 'nodemedic'],
    maxLinesPerKind: 5,
    pollInterval: '2s',
  },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      source: { enum: ['journald', 'kmsg'] },
      kmsgPath: { type: 'string', pattern: '^/', description: 'an absolute path' },
      window: { type: 'string', format: 'duration' },
      oomProcesses: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 64 }, uniqueItems: true },
      maxLinesPerKind: { type: 'integer', minimum: 1, maximum: 50 },
      pollInterval: { type: 'string', format: 'duration' },
    },
  },
  runTimeoutMs: () => CATCH_UP_WAIT_MS + 5000,
  create(options, { host, requestRun }) {
    const windowMs = parseDuration(options.window);
    const kinds = new Map<KernelKind, KindState>();
    let ignoredOomKills = 0;
    let source: LogSource | undefined;
    let started = false;

    const onLine = (l: LogLine): void => {
      const c = classifyKernelLine(l.text);
      if (!c) return;
      if (c.kind === 'OOMKilling' && !(c.comm && options.oomProcesses.includes(c.comm))) {
        ignoredOomKills++;
        return;
      }
      let s = kinds.get(c.kind);
      if (!s) {
        s = { count: 0, firstAtMs: l.timeMs, lastAtMs: l.timeMs, lines: [], names: new Set() };
        kinds.set(c.kind, s);
      }
      s.count++;
      s.lastAtMs = Math.max(s.lastAtMs, l.timeMs);
      s.lines.push(l.text.slice(0, 1024));
      if (s.lines.length > options.maxLinesPerKind) s.lines.shift();
      const name = c.comm ?? c.device;
      if (name && s.names.size < 20) s.names.add(name);
      requestRun?.();
    };

    function start(): void {
      if (started) return;
      started = true;
      source =
        options.source === 'kmsg'
          ? new KmsgSource({ path: options.kmsgPath, bootTimeMs: bootTimeMs(host.clock.now()), pollIntervalMs: parseDuration(options.pollInterval), onLine })
          : new JournaldSource({ host: kernelJournalHost(host), unit: KERNEL_UNIT, sinceMs: 0, onLine });
      source.start();
    }

    function judge(now: number): Finding {
      const summary: Record<string, unknown> = {};
      for (const [k, s] of kinds) {
        summary[k] = {
          count: s.count,
          first: new Date(s.firstAtMs).toISOString(),
          last: new Date(s.lastAtMs).toISOString(),
          names: [...s.names],
          lines: s.lines,
          condition: CONDITION_KINDS.includes(k),
          active: CONDITION_KINDS.includes(k) || now - s.lastAtMs <= windowMs,
        };
      }
      const src = source?.status();
      const evidence = {
        source: options.source,
        window: options.window,
        kinds: summary,
        ignoredOomKills,
        ...(src ? { sourceState: src.state, linesRead: src.lines } : {}),
      };
      // Conditions hold for the boot (a task in D state, a read-only mount do not heal themselves);
      // events only while recent.
      const conditions = CONDITION_KINDS.filter((k) => kinds.has(k));
      const events = EVENT_KINDS.filter((k) => kinds.has(k) && now - kinds.get(k)!.lastAtMs <= windowMs);
      const active = [...conditions, ...events];
      if (active.length) {
        const describe = (k: KernelKind): string => {
          const s = kinds.get(k)!;
          const names = s.names.size ? ` (${[...s.names].join(', ')})` : '';
          return `${k}${names}: ${s.count} line(s), last "${s.lines.at(-1)}"`;
        };
        return {
          status: 'problem',
          reason: active[0]!,
          message: `kernel log: ${active.map(describe).join('; ')}`,
          evidence,
        };
      }
      return { status: 'ok', reason: 'KernelLogQuiet', message: 'no kernel fault in the kernel log of this boot', evidence };
    }

    return {
      id: 'kernel',
      start,
      async stop() {
        await source?.stop();
      },
      async run(signal): Promise<Finding> {
        start();
        const caughtUp = (await source?.whenCaughtUp(CATCH_UP_WAIT_MS, signal)) ?? false;
        const st = source?.status();
        if (st?.failure) {
          // What was read before the failure still counts: a fault seen is a fault.
          const f = judge(host.clock.now());
          if (f.status === 'problem') return f;
          return unknown(st.failure.reason, st.failure.message, f.evidence);
        }
        if (!caughtUp) {
          const f = judge(host.clock.now());
          if (f.status === 'problem') return f;
          return unknown('SourceCatchingUp', 'still reading the kernel log of this boot; no verdict yet', f.evidence);
        }
        const f = judge(host.clock.now());
        // A booted kernel always has logged something this boot: none at all means this journal does
        // not collect the kernel log (journald without kmsg access, a journal of a container).
        if (f.status === 'ok' && st && st.lines === 0) {
          return unknown('NoKernelLines', `the ${options.source === 'kmsg' ? options.kmsgPath : 'journal'} holds no kernel line of this boot; ${options.source === 'kmsg' ? 'is it readable?' : 'set source: kmsg where journald does not read the kernel log'}`, f.evidence);
        }
        return f;
      },
    };
  },
};
