/**
 * Evidence bundles: what a restart or a reboot is about to destroy, captured first (issue 16). The
 * runbook ends every step with "capture the log and analyse it"; operators turn auto-repair off when
 * it throws that away. One gzipped tar per action (and per `nodemedic collect`) under
 * `<stateDir>/evidence/`, holding:
 *
 * - `journal-<unit>.log`: kubelet's and the runtime's journal since the episode started (last lines, bounded);
 * - `kernel.log`: the tail of the kernel log (`journalctl -k`, else `dmesg`);
 * - `dockerd-goroutines.log`: a goroutine dump of the running dockerd (SIGUSR1 makes it write
 *   `goroutine-stacks-<time>.log` under its exec root); `containerd-stacks.log`: containerd's (SIGUSR1
 *   makes it log its stacks, read back from its journal);
 * - `processes.txt`: runc, shims, runtimes, kubelet and every task in D state, with state, age and
 *   wait channel (`ps`, which reads only /proc/<pid>/stat for these columns, so a task stuck in the
 *   kernel cannot hang it); `processes-all.txt` the whole table;
 * - `status.json` (what /status shows) and `config.json` (the effective config);
 * - `manifest.json`: every step, how long it took, and what could not be got and why.
 *
 * Every step is bounded (each command by its own timeout, the whole collection by `timeoutMs`), runs
 * through the host boundary (so the DaemonSet's nsenter prefix applies), and never throws: a bundle
 * that lacks something says so in its manifest; a collection that fails entirely returns an error and
 * the action goes ahead anyway. Total size is capped: the oldest bundles are removed first.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Host } from '../platform/host.js';
import { syncDir, writeFileAtomic } from '../platform/atomic-file.js';
import { tarGz, type TarEntry } from './evidence-tar.js';
import { evidenceMaxBytes, type EvidenceSettings } from './config.js';
import { parseDuration } from '../platform/duration.js';

export interface EvidenceOptions {
  host: Host;
  logger: Logger;
  /** Bundles go to `<stateDir>/evidence/`. */
  stateDir: string;
  /** systemd unit names: whose journals to take, and whose MainPID to send SIGUSR1. */
  units: { kubelet: string; docker: string; containerd: string };
  /** Total size of `<stateDir>/evidence/`; the oldest bundles are removed first. Default 50 MiB. */
  maxTotalBytes?: number;
  /** The whole collection, all steps in parallel. Default 30 s. */
  timeoutMs?: number;
  /** One command. Default 10 s. */
  stepTimeoutMs?: number;
  /** How long to wait for a goroutine dump after SIGUSR1. Default 5 s. */
  dumpTimeoutMs?: number;
  /** Last lines taken from each journal. Default 20000. */
  journalLines?: number;
  /** What `/status` shows, at collection time. */
  status?: () => unknown;
  /** The effective config. */
  config?: unknown;
}

export interface BundleRequest {
  /** What the bundle is for: `restart-kubelet`, `drain-reboot`, `collect`. Goes into the file name. */
  label: string;
  /** Journals are taken from here on (the episode's start). */
  sinceMs: number;
  episodeId?: string;
  reason?: string;
  /** Write here instead of `<stateDir>/evidence/` (not counted against the cap). */
  output?: string;
}

export interface StepReport {
  step: string;
  ok: boolean;
  durationMs: number;
  files: string[];
  /** Why it got nothing or only part. */
  error?: string;
}

export interface BundleResult {
  /** The archive, when one was written. */
  path?: string;
  bytes?: number;
  durationMs: number;
  steps: StepReport[];
  /** One line per thing the bundle lacks ("dockerd goroutine dump: ..."). */
  missing: string[];
  /** Bundles removed by the size cap. */
  removed: string[];
  /** The bundle could not be written at all. */
  error?: string;
}

export interface BundleInfo {
  file: string;
  bytes: number;
  createdAt: string;
}

const MiB = 1024 * 1024;
const BUNDLE_SUFFIX = '.tar.gz';

interface StepContext {
  deadline: number;
  sinceMs: number;
  add(name: string, data: string | Buffer): void;
}

type Step = { name: string; run(ctx: StepContext): Promise<void> };

/** `2026-12-05T13:05:01.123Z` → `20261205T130501.123Z`: sortable, no ':' in file names. */
function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `3h4m5s` for a process age. */
function age(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return `${d ? `${d}d` : ''}${d || h ? `${h}h` : ''}${d || h || m ? `${m}m` : ''}${s}s`;
}

/** Runtime-related command names (as `ps` shows comm, at most 15 bytes). */
const RUNTIME_COMM = /^(dockerd|docker-containe.*|containerd(-shim.*)?|runc.*|kubelet|conmon|crio|crun|ctr)$/;

export class EvidenceCollector {
  private readonly o: Required<Omit<EvidenceOptions, 'status' | 'config'>> & Pick<EvidenceOptions, 'status' | 'config'>;
  private bundles: BundleInfo[] = [];
  private last: (BundleResult & { label: string; at: string }) | undefined;
  /** Collections one at a time: two actions never interleave their dumps. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: EvidenceOptions) {
    this.o = {
      maxTotalBytes: 50 * MiB,
      timeoutMs: 30_000,
      stepTimeoutMs: 10_000,
      dumpTimeoutMs: 5000,
      journalLines: 20_000,
      ...opts,
    };
    void this.rescan();
  }

  get dir(): string {
    return join(this.o.stateDir, 'evidence');
  }

  /** For `/status`: the bundles on disk (newest first) and the last collection. */
  status(): Record<string, unknown> {
    return {
      dir: this.dir,
      maxTotalBytes: this.o.maxTotalBytes,
      totalBytes: this.bundles.reduce((a, b) => a + b.bytes, 0),
      bundles: [...this.bundles].reverse().slice(0, 20),
      ...(this.last
        ? { last: { label: this.last.label, at: this.last.at, path: this.last.path ?? null, durationMs: this.last.durationMs, missing: this.last.missing, ...(this.last.error ? { error: this.last.error } : {}) } }
        : {}),
    };
  }

  private async rescan(): Promise<void> {
    try {
      const names = (await readdir(this.dir)).filter((n) => n.endsWith(BUNDLE_SUFFIX)).sort();
      const out: BundleInfo[] = [];
      for (const n of names) {
        const s = await stat(join(this.dir, n)).catch(() => undefined);
        if (s) out.push({ file: join(this.dir, n), bytes: s.size, createdAt: s.mtime.toISOString() });
      }
      this.bundles = out;
    } catch {
      this.bundles = [];
    }
  }

  /** One bundle. Never throws; bounded by `timeoutMs` plus the time to write the archive. */
  collect(req: BundleRequest): Promise<BundleResult> {
    const run = this.queue.then(() => this.collectNow(req));
    this.queue = run.catch(() => {});
    return run;
  }

  private async collectNow(req: BundleRequest): Promise<BundleResult> {
    const t0 = performance.now();
    const startedAt = this.o.host.clock.now();
    const name = `${stamp(startedAt)}-${req.label.replace(/[^\w.-]/g, '_').slice(0, 40)}`;
    const entries: TarEntry[] = [];
    const steps: StepReport[] = [];
    const deadline = performance.now() + this.o.timeoutMs;
    const result: BundleResult = { durationMs: 0, steps, missing: [], removed: [] };
    try {
      await Promise.all(
        this.steps().map(async (s) => {
          const files: string[] = [];
          const report: StepReport = { step: s.name, ok: false, durationMs: 0, files };
          steps.push(report);
          const st = performance.now();
          const ctx: StepContext = {
            deadline,
            sinceMs: req.sinceMs,
            add: (file, data) => {
              files.push(file);
              entries.push({ name: `${name}/${file}`, data: Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8'), mtimeMs: this.o.host.clock.now() });
            },
          };
          let timer: NodeJS.Timeout | undefined;
          const overall = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`did not finish within the collection deadline (${this.o.timeoutMs} ms)`)), Math.max(0, deadline - performance.now()));
          });
          try {
            await Promise.race([s.run(ctx), overall]);
            report.ok = true;
          } catch (e) {
            report.error = (e as Error).message;
            result.missing.push(`${s.name}: ${report.error}`);
          } finally {
            clearTimeout(timer);
            report.durationMs = Math.round(performance.now() - st);
          }
        }),
      );
      // A step that lost the race may still add entries later: freeze the list now.
      const frozen = [...entries];
      const manifest = {
        bundle: name,
        label: req.label,
        ...(req.episodeId ? { episodeId: req.episodeId } : {}),
        ...(req.reason ? { reason: req.reason } : {}),
        since: new Date(req.sinceMs).toISOString(),
        startedAt: new Date(startedAt).toISOString(),
        collectedInMs: Math.round(performance.now() - t0),
        steps: steps.sort((a, b) => a.step.localeCompare(b.step)),
        missing: result.missing,
      };
      frozen.push({ name: `${name}/manifest.json`, data: Buffer.from(JSON.stringify(manifest, null, 2) + '\n'), mtimeMs: startedAt });
      const archive = await tarGz(frozen);
      const path = req.output ?? join(this.dir, name + BUNDLE_SUFFIX);
      await writeAtomic(path, archive);
      result.path = path;
      result.bytes = archive.length;
      if (!req.output) result.removed = await this.enforceCap(path);
    } catch (e) {
      result.error = `evidence bundle not written: ${(e as Error).message}`;
    }
    result.durationMs = Math.round(performance.now() - t0);
    this.last = { ...result, label: req.label, at: new Date(startedAt).toISOString() };
    const level = result.error ? 'error' : result.missing.length ? 'warn' : 'info';
    this.o.logger[level](
      { evidence: result.path, bytes: result.bytes, durationMs: result.durationMs, missing: result.missing, removed: result.removed, error: result.error, label: req.label, episodeId: req.episodeId },
      result.path ? `evidence bundle written: ${result.path}` : 'evidence bundle not written',
    );
    return result;
  }

  /** Removes the oldest bundles until the directory fits; the one just written is always kept. */
  private async enforceCap(keep: string): Promise<string[]> {
    await this.rescan();
    const removed: string[] = [];
    let total = this.bundles.reduce((a, b) => a + b.bytes, 0);
    for (const b of [...this.bundles]) {
      if (total <= this.o.maxTotalBytes) break;
      if (b.file === keep) continue;
      try {
        await unlink(b.file);
        removed.push(b.file);
        total -= b.bytes;
      } catch (e) {
        this.o.logger.warn({ file: b.file, err: (e as Error).message }, 'cannot remove an old evidence bundle');
      }
    }
    if (removed.length) {
      await syncDir(this.dir).catch(() => undefined);
      await this.rescan();
    }
    return removed;
  }

  // ------------------------------------------------------------------------------------------
  // Steps

  private steps(): Step[] {
    const u = this.o.units;
    return [
      { name: `journal ${u.kubelet}`, run: (c) => this.journal(c, u.kubelet) },
      { name: `journal ${u.docker}`, run: (c) => this.journal(c, u.docker) },
      { name: `journal ${u.containerd}`, run: (c) => this.journal(c, u.containerd) },
      { name: 'kernel log', run: (c) => this.kernelLog(c) },
      { name: 'dockerd goroutine dump', run: (c) => this.dockerdDump(c) },
      { name: 'containerd stack dump', run: (c) => this.containerdDump(c) },
      { name: 'process table', run: (c) => this.processTable(c) },
      {
        name: 'status and config',
        run: async (c) => {
          c.add('status.json', JSON.stringify(this.o.status?.() ?? null, null, 2) + '\n');
          c.add('config.json', JSON.stringify(this.o.config ?? null, null, 2) + '\n');
        },
      },
    ];
  }

  /** A command bounded by the step timeout and what is left of the collection. */
  private run(c: StepContext, argv: string[], maxOutputBytes = 16 * MiB, timeoutMs = this.o.stepTimeoutMs) {
    const left = Math.max(100, c.deadline - performance.now());
    return this.o.host.run(argv, { timeoutMs: Math.min(timeoutMs, left), killAfterMs: 500, maxOutputBytes });
  }

  private async journal(c: StepContext, unit: string): Promise<void> {
    const r = await this.run(c, [
      'journalctl', '-u', unit, `--since=@${Math.floor(c.sinceMs / 1000)}`, '-n', String(this.o.journalLines),
      '-o', 'short-iso-precise', '--no-pager', '--all',
    ]);
    if (r.stdout) c.add(`journal-${unit}.log`, r.stdout);
    if (r.exitCode !== 0) throw new Error(r.error ?? `journalctl exited ${r.exitCode}: ${r.stderr.trim().slice(0, 200)}`);
    if (/^-- No entries --/m.test(r.stdout)) throw new Error(`no journal entries for ${unit} since ${new Date(c.sinceMs).toISOString()}`);
  }

  private async kernelLog(c: StepContext): Promise<void> {
    const j = await this.run(c, ['journalctl', '-k', '-b', '-n', '2000', '-o', 'short-iso-precise', '--no-pager'], 8 * MiB);
    if (j.exitCode === 0 && j.stdout.trim() && !/^-- No entries --\s*$/m.test(j.stdout)) {
      c.add('kernel.log', j.stdout);
      return;
    }
    // No journal (or no kernel transport in it): the ring buffer itself, read by dmesg.
    const d = await this.run(c, ['dmesg'], 8 * MiB);
    if (d.exitCode === 0 && d.stdout) {
      c.add('kernel.log', d.stdout.split('\n').slice(-2001).join('\n'));
      return;
    }
    throw new Error(`journalctl -k: ${j.error ?? (j.stderr.trim().slice(0, 200) || 'no entries')}; dmesg: ${d.error ?? d.stderr.trim().slice(0, 200)}`);
  }

  /** MainPID of a unit, or why there is none. */
  private async mainPid(c: StepContext, unit: string): Promise<number | string> {
    const r = await this.run(c, ['systemctl', 'show', '--property=MainPID', '--value', unit], 64 * 1024, 5000);
    if (r.exitCode !== 0) return `systemctl show ${unit}: ${r.error ?? r.stderr.trim().slice(0, 200)}`;
    const pid = Number(r.stdout.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : `${unit} is not running`;
  }

  private async dockerdDump(c: StepContext): Promise<void> {
    const pid = await this.mainPid(c, this.o.units.docker);
    if (typeof pid === 'string') throw new Error(`no dockerd to ask: ${pid}`);
    const cmd = await this.run(c, ['cat', `/proc/${pid}/cmdline`], 64 * 1024, 2000);
    const argv = cmd.stdout.split('\0');
    let execRoot = '/var/run/docker';
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === '--exec-root' && argv[i + 1]) execRoot = argv[i + 1]!;
      else if (argv[i]!.startsWith('--exec-root=')) execRoot = argv[i]!.slice('--exec-root='.length);
    }
    const list = async (): Promise<Set<string>> => {
      const r = await this.run(c, ['find', execRoot, '-maxdepth', '1', '-name', 'goroutine-stacks-*.log'], MiB, 2000);
      return new Set(r.stdout.split('\n').filter(Boolean));
    };
    const before = await list();
    const k = await this.run(c, ['kill', '-s', 'USR1', String(pid)], 64 * 1024, 2000);
    if (k.exitCode !== 0) throw new Error(`kill -USR1 ${pid}: ${k.error ?? k.stderr.trim()}`);
    const until = Math.min(c.deadline, performance.now() + this.o.dumpTimeoutMs);
    let lastSize = -1;
    while (performance.now() < until) {
      await sleep(200);
      const fresh = [...(await list())].filter((f) => !before.has(f)).sort();
      const file = fresh.at(-1);
      if (!file) continue;
      // Written in one go, but read it only once its size stopped changing.
      const s = await this.run(c, ['stat', '-c', '%s', file], 4096, 2000);
      const size = Number(s.stdout.trim());
      if (size > 0 && size === lastSize) {
        const r = await this.run(c, ['cat', file], 32 * MiB);
        if (r.exitCode !== 0) throw new Error(`cat ${file}: ${r.error ?? r.stderr.trim()}`);
        c.add('dockerd-goroutines.log', r.stdout);
        return;
      }
      lastSize = size;
    }
    throw new Error(
      `dockerd (pid ${pid}) wrote no goroutine dump under ${execRoot} within ${this.o.dumpTimeoutMs} ms of SIGUSR1: it is not answering signals (hung or stopped)`,
    );
  }

  private async containerdDump(c: StepContext): Promise<void> {
    const pid = await this.mainPid(c, this.o.units.containerd);
    if (typeof pid === 'string') throw new Error(`no containerd to ask: ${pid}`);
    const since = this.o.host.clock.now();
    const k = await this.run(c, ['kill', '-s', 'USR1', String(pid)], 64 * 1024, 2000);
    if (k.exitCode !== 0) throw new Error(`kill -USR1 ${pid}: ${k.error ?? k.stderr.trim()}`);
    // containerd logs "=== BEGIN goroutine stack dump ===" ... "=== END goroutine stack dump ===".
    const until = Math.min(c.deadline, performance.now() + this.o.dumpTimeoutMs);
    while (performance.now() < until) {
      await sleep(300);
      const r = await this.run(c, ['journalctl', '-u', this.o.units.containerd, `--since=@${Math.floor(since / 1000)}`, '-o', 'cat', '--no-pager', '--all'], 32 * MiB);
      if (r.stdout.includes('END goroutine stack dump')) {
        c.add('containerd-stacks.log', r.stdout);
        return;
      }
    }
    throw new Error(`containerd (pid ${pid}) logged no stack dump within ${this.o.dumpTimeoutMs} ms of SIGUSR1`);
  }

  private async processTable(c: StepContext): Promise<void> {
    // Only columns from /proc/<pid>/stat and wchan: reading a D-state task's cmdline can block on its mm lock.
    const r = await this.run(c, ['ps', '-e', '-o', 'pid=,ppid=,stat=,etimes=,wchan:32=,comm='], 8 * MiB);
    if (r.exitCode !== 0 || !r.stdout) throw new Error(`ps: ${r.error ?? r.stderr.trim().slice(0, 200)}`);
    c.add('processes-all.txt', `PID PPID STAT ELAPSED_S WCHAN COMM\n${r.stdout}`);
    const rows: string[] = [];
    const runtimePids: string[] = [];
    for (const line of r.stdout.split('\n')) {
      const m = /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(.+)$/.exec(line);
      if (!m) continue;
      const [, pid, ppid, st, el, wchan, comm] = m as unknown as [string, string, string, string, string, string, string];
      const dState = st.startsWith('D');
      if (!dState && !RUNTIME_COMM.test(comm)) continue;
      if (!dState) runtimePids.push(pid);
      rows.push([pid.padStart(7), ppid.padStart(7), st.padEnd(5), age(Number(el)).padStart(12), wchan.padEnd(24), comm].join(' '));
    }
    let args = '';
    if (runtimePids.length) {
      // Command lines of the runtime's processes that are not in D state (those could block the read).
      const a = await this.run(c, ['ps', '-o', 'pid=,args=', '-p', runtimePids.slice(0, 500).join(',')], 4 * MiB, 3000);
      args = a.exitCode === 0 ? `\n# command lines (not for D-state tasks)\n${a.stdout}` : `\n# command lines unavailable: ${a.error ?? a.stderr.trim()}\n`;
    }
    c.add(
      'processes.txt',
      `# runtime, shim and kubelet processes, and every task in uninterruptible sleep (D), with ages\n${'PID'.padStart(7)} ${'PPID'.padStart(7)} STAT  ${'AGE'.padStart(12)} ${'WCHAN'.padEnd(24)} COMM\n${rows.join('\n')}\n${args}`,
    );
  }
}

/** Writes `data` to `path` via a temporary file and rename, so a crash never leaves half an archive. */
function writeAtomic(path: string, data: Buffer): Promise<void> {
  return writeFileAtomic(path, data, 0o640, { dirMode: 0o750, syncDirBestEffort: true });
}

/** The fields of the agent's config a collector needs (structurally `Config`). */
export interface EvidenceConfigView {
  stateDir: string;
  checks: Record<string, Record<string, unknown> | undefined>;
  remediation: { evidence: EvidenceSettings };
}

/** A collector for the agent's config: its stateDir and the units its checks watch. */
export function evidenceCollectorFor(
  config: EvidenceConfigView,
  host: Host,
  logger: Logger,
  extra: Pick<EvidenceOptions, 'status' | 'timeoutMs' | 'dumpTimeoutMs'> = {},
): EvidenceCollector {
  const e = config.remediation.evidence;
  const unit = (check: string, fallback: string): string => {
    const u = config.checks[check]?.unit;
    return typeof u === 'string' && u ? u : fallback;
  };
  return new EvidenceCollector({
    host,
    logger,
    stateDir: config.stateDir,
    units: { kubelet: unit('kubelet', 'kubelet'), docker: unit('docker', 'docker'), containerd: unit('containerd', 'containerd') },
    config,
    maxTotalBytes: evidenceMaxBytes(e),
    timeoutMs: parseDuration(e.timeout),
    journalLines: e.journalLines,
    ...extra,
  });
}
