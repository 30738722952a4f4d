/**
 * Drives test/fixtures/fake-kubelet.mjs: a kubelet stand-in for a systemd namespace's
 * `kubelet.service` that serves /healthz and writes (corpus) lines to the real journal.
 *
 * ```ts
 * const kubelet = await FakeKubelet.create(t);
 * await kubelet.configure({ emit: [{ corpus: PLEG_CORPUS, label: 'pleg-unhealthy', toStart: 1 }] });
 * const ns = await startSystemdNs({ t, units: { 'kubelet.service': kubelet.unit() } });
 * // ... `systemctl restart kubelet` in the namespace: start 2 emits nothing.
 * ```
 */
import { rmSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/agent.js';

const here = dirname(fileURLToPath(import.meta.url));
export const FAKE_KUBELET_SCRIPT = resolve(here, '../fixtures/fake-kubelet.mjs');
/** The corpus (test/fixtures/corpus, copied verbatim; provenance in its SOURCES.md). */
export const PLEG_CORPUS = resolve(here, '../fixtures/corpus/kubelet/kubelet-pleg.tsv');
export const OTHER_CORPUS = resolve(here, '../fixtures/corpus/kubelet/kubelet-other.tsv');

/** Lines a fake kubelet writes, one every `everyMs`, while its start number is in [fromStart, toStart]. */
/** A free TCP port on 127.0.0.1 (closed again, so a small race with other processes is possible). */
export { freePort };

export interface Emitter {
  /** A `label<TAB>line` TSV (the corpus); `label` picks rows. */
  corpus?: string;
  label?: string;
  /** Literal lines instead of a corpus. */
  lines?: string[];
  /** Default 200. */
  everyMs?: number;
  /** Default 1 (the first start). */
  fromStart?: number;
  /** Default: every start. `toStart: N` = "until restarted N times". */
  toStart?: number;
  /** Most lines per start. Default unbounded. */
  max?: number;
}

export interface FakeKubeletConfig {
  /** Default `ok`. `refuse` closes the listening socket. */
  healthz?: 'ok' | 'fail' | 'hang' | 'refuse';
  emit?: Emitter[];
  /** Exit on its own `afterMs` after starting (only for starts in range). */
  exit?: { afterMs: number; code?: number; fromStart?: number; toStart?: number };
  /** Ignore SIGTERM, so that a stop needs systemd's SIGKILL. */
  ignoreSigterm?: boolean;
}

export interface FakeKubeletStart {
  /** 1 for the first start. */
  n: number;
  pid: number;
  at: string;
}


function quote(arg: string): string {
  return `"${arg.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

export class FakeKubelet {
  private constructor(
    /** Host directory with config.json, starts, inbox. */
    readonly controlDir: string,
    readonly port: number,
  ) {}

  /** A control directory and a port; the directory is removed in `t.teardown` when `t` is given. */
  static async create(t?: { teardown(fn: () => unknown): void }, opts: { port?: number } = {}): Promise<FakeKubelet> {
    const dir = await mkdtemp(join(tmpdir(), 'nodemedic-fake-kubelet-'));
    // Also on exit, for a test process that ends (or is interrupted) before its teardowns run.
    const onExit = (): void => rmSync(dir, { recursive: true, force: true });
    process.once('exit', onExit);
    t?.teardown(async () => {
      process.removeListener('exit', onExit);
      await rm(dir, { recursive: true, force: true });
    });
    return new FakeKubelet(dir, opts.port ?? (await freePort()));
  }

  get healthzUrl(): string {
    return `http://127.0.0.1:${this.port}/healthz`;
  }

  /** A unit file running the fake. `service` lines are appended to `[Service]` (e.g. `Restart=always`). */
  unit(opts: { description?: string; service?: string[] } = {}): string {
    const exec = [process.execPath, FAKE_KUBELET_SCRIPT, '--port', String(this.port), '--control', this.controlDir];
    return [
      '[Unit]',
      `Description=${opts.description ?? 'fake kubelet (nodemedic tests)'}`,
      '',
      '[Service]',
      `ExecStart=${exec.map(quote).join(' ')}`,
      'TimeoutStopSec=3s',
      ...(opts.service ?? []),
      '',
    ].join('\n');
  }

  /** Replaces config.json atomically; a running fake applies it within ~50 ms. */
  async configure(config: FakeKubeletConfig): Promise<void> {
    const tmp = join(this.controlDir, `config.json.${process.pid}.tmp`);
    await writeFile(tmp, JSON.stringify(config));
    await rename(tmp, join(this.controlDir, 'config.json'));
  }

  /** Every start so far, oldest first. */
  async starts(): Promise<FakeKubeletStart[]> {
    let text = '';
    try {
      text = await readFile(join(this.controlDir, 'starts'), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [n, pid, at] = l.split(' ');
        return { n: Number(n), pid: Number(pid), at: at ?? '' };
      });
  }

  /** Has the running fake write these lines to stdout (once each, within ~50 ms). */
  async say(...lines: string[]): Promise<void> {
    if (lines.some((l) => l.includes('\n'))) throw new Error('FakeKubelet.say: one line per argument, without newlines');
    await appendFile(join(this.controlDir, 'inbox'), lines.map((l) => `${l}\n`).join(''));
  }
}
