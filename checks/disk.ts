import type { StatFs } from '../platform/host.js';
import { parseDuration } from '../platform/duration.js';
import { within } from '../platform/deadline.js';
import type { BaseCheckOptions, CheckDefinition, Finding } from './types.js';

export interface DiskOptions extends BaseCheckOptions {
  /** Paths to measure; one that does not exist on this node is skipped and listed in the evidence. */
  paths: string[];
  maxUsedPercent: number;
  maxInodesUsedPercent: number;
  /** A statfs that does not return within this makes its path `unknown` (a hung network mount). */
  timeout: string;
}

/** Usage of one filesystem, as `df` computes it. */
export interface PathUsage {
  path: string;
  usedPercent: number;
  inodesUsedPercent: number | null;
  sizeBytes: number;
  availableBytes: number;
  inodes: number;
  inodesFree: number;
}

/**
 * `df`'s used percentage: used / (used + available to unprivileged users), so the root-reserved
 * blocks count as used, which is what kubelet's eviction thresholds see too.
 */
export function usageOf(path: string, s: StatFs): PathUsage {
  const used = s.blocks - s.bfree;
  const denom = used + s.bavail;
  return {
    path,
    usedPercent: denom > 0 ? round2((used / denom) * 100) : 0,
    // Filesystems without a fixed inode table (btrfs, some FUSE) report 0 inodes.
    inodesUsedPercent: s.files > 0 ? round2(((s.files - s.ffree) / s.files) * 100) : null,
    sizeBytes: s.blocks * s.bsize,
    availableBytes: s.bavail * s.bsize,
    inodes: s.files,
    inodesFree: s.ffree,
  };
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

type Outcome = { kind: 'usage'; usage: PathUsage } | { kind: 'missing' } | { kind: 'timeout' } | { kind: 'error'; error: string };

export const diskCheck: CheckDefinition<DiskOptions> = {
  id: 'disk',
  reasons: ['DiskUsageHigh', 'InodeUsageHigh', 'DiskUsageNormal', 'StatfsTimeout', 'StatfsFailed'],
  restartCures: false, // no restart frees a disk
  hostPathOptions: ['paths'],
  defaults: {
    enabled: true,
    paths: ['/', '/var/lib/kubelet', '/var/lib/docker', '/var/lib/containerd'],
    maxUsedPercent: 90,
    maxInodesUsedPercent: 90,
    timeout: '5s',
  },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      paths: { type: 'array', items: { type: 'string', pattern: '^/', description: 'an absolute path' }, uniqueItems: true },
      maxUsedPercent: { type: 'number', minimum: 0, maximum: 100 },
      maxInodesUsedPercent: { type: 'number', minimum: 0, maximum: 100 },
      timeout: { type: 'string', format: 'duration' },
    },
  },
  runTimeoutMs: (o) => parseDuration(o.timeout) + 1000,
  create(options, { host }) {
    const timeoutMs = parseDuration(options.timeout);
    // A statfs stuck in the kernel cannot be cancelled; remember it so we never stack a second one
    // on the same mount (each would pin a libuv thread).
    const pending = new Map<string, Promise<Outcome>>();

    function measure(path: string): Promise<Outcome> {
      const inFlight = pending.get(path);
      if (inFlight) return Promise.resolve({ kind: 'timeout' });
      const p: Promise<Outcome> = host.statfs(path).then(
        (s) => ({ kind: 'usage', usage: usageOf(path, s) }),
        (e: NodeJS.ErrnoException) =>
          e.code === 'ENOENT' || e.code === 'ENOTDIR' ? { kind: 'missing' } : { kind: 'error', error: `${e.code ?? ''} ${e.message}`.trim() },
      );
      pending.set(path, p);
      void p.finally(() => pending.delete(path));
      return within(p, timeoutMs, (): Outcome => ({ kind: 'timeout' }));
    }

    return {
      id: 'disk',
      async run(): Promise<Finding> {
        const outcomes = await Promise.all(options.paths.map(async (path) => [path, await measure(path)] as const));
        const usage: PathUsage[] = [];
        const skipped: string[] = [];
        const unreadable: Record<string, string> = {};
        for (const [path, o] of outcomes) {
          if (o.kind === 'usage') usage.push(o.usage);
          else if (o.kind === 'missing') skipped.push(path);
          else unreadable[path] = o.kind === 'timeout' ? `statfs did not return within ${options.timeout}` : o.error;
        }
        const evidence = { paths: usage, skipped, unreadable };
        const full = usage.filter((u) => u.usedPercent > options.maxUsedPercent);
        const inodes = usage.filter((u) => u.inodesUsedPercent !== null && u.inodesUsedPercent > options.maxInodesUsedPercent);
        if (full.length || inodes.length) {
          const parts = [
            ...full.map((u) => `${u.path} is ${u.usedPercent}% full (limit ${options.maxUsedPercent}%)`),
            ...inodes.map((u) => `${u.path} uses ${u.inodesUsedPercent}% of its inodes (limit ${options.maxInodesUsedPercent}%)`),
          ];
          return {
            status: 'problem',
            reason: full.length ? 'DiskUsageHigh' : 'InodeUsageHigh',
            message: `${parts.join('; ')}: free space (old images, logs, container layers) before kubelet starts evicting pods`,
            evidence,
          };
        }
        const bad = Object.keys(unreadable);
        if (bad.length) {
          const timedOut = outcomes.some(([, o]) => o.kind === 'timeout');
          return {
            status: 'unknown',
            reason: timedOut ? 'StatfsTimeout' : 'StatfsFailed',
            message: `could not measure ${bad.join(', ')}: ${bad.map((p) => unreadable[p]).join('; ')}`,
            evidence,
          };
        }
        if (!usage.length) {
          return { status: 'unknown', reason: 'NoPaths', message: `none of the configured paths exist: ${skipped.join(', ')}`, evidence };
        }
        const worst = usage.reduce((a, b) => (b.usedPercent > a.usedPercent ? b : a));
        return {
          status: 'ok',
          reason: 'DiskUsageNormal',
          message: `${usage.length} path(s) below limits (fullest: ${worst.path} at ${worst.usedPercent}%)`,
          evidence,
        };
      },
    };
  },
};
