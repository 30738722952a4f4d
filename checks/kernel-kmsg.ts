/**
 * Follows `/dev/kmsg` where there is no journal (the kernel log read the way NPD's kernel monitor
 * reads it). Read-only and non-blocking: opened O_RDONLY|O_NONBLOCK, drained until EAGAIN, then
 * polled; nothing is ever written to it. Each read(2) of /dev/kmsg returns one record
 * `pri,seq,usec,flags;message\n` plus continuation lines (` KEY=value`); a regular file holding such
 * records reads the same way, which is how tests feed it.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { LineSplitter, SourceBase, type LogLine, type LogSource } from './log-source.js';

export interface KmsgRecord {
  facility: number;
  level: number;
  seq: number;
  /** Microseconds since boot (CLOCK_MONOTONIC at the time the kernel logged it). */
  usec: number;
  text: string;
}

/** Parses the first line of one /dev/kmsg record; undefined for continuation or malformed lines. */
export function parseKmsgRecord(line: string): KmsgRecord | undefined {
  const semi = line.indexOf(';');
  if (semi === -1 || semi > 80) return undefined;
  const m = /^(\d{1,4}),(\d{1,20}),(\d{1,20}),[^;]*$/.exec(line.slice(0, semi));
  if (!m) return undefined;
  const pri = Number(m[1]);
  return { facility: pri >> 3, level: pri & 7, seq: Number(m[2]), usec: Number(m[3]), text: line.slice(semi + 1) };
}

export interface KmsgSourceOptions {
  path: string;
  /** Wall-clock time of boot in ms, to turn the records' monotonic stamps into `timeMs`. */
  bootTimeMs: number;
  pollIntervalMs: number;
  onLine(line: LogLine): void;
  /** Lines longer than this are cut. Default 8 KiB (the kernel's own record limit is ~1 KiB). */
  maxLineBytes?: number;
}

/** Records read per drain before yielding to the event loop, so a full ring buffer never stalls it. */
const RECORDS_PER_SLICE = 2000;

export class KmsgSource extends SourceBase implements LogSource {
  private fh: FileHandle | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private draining: Promise<void> | undefined;
  /** Bounded line splitting, shared with the journal and file followers (a cut record fails to parse and is counted). */
  private readonly splitter: LineSplitter;
  /** Records lost because the ring buffer wrapped past us (EPIPE). */
  lost = 0;

  constructor(private readonly o: KmsgSourceOptions) {
    super('file');
    this.splitter = new LineSplitter(o.maxLineBytes ?? 8192, (line) => this.take(line));
  }

  /** The open file's flags as the kernel has them (`/proc/self/fdinfo`), for the read-only proof. */
  get fd(): number | undefined {
    return this.fh?.fd;
  }

  start(): void {
    if (this.draining || this.stopped) return;
    this.draining = this.open().then(() => this.drain());
  }

  private async open(): Promise<void> {
    try {
      // Never O_WRONLY/O_RDWR: a write to /dev/kmsg injects a line into the node's kernel log.
      this.fh = await open(this.o.path, constants.O_RDONLY | constants.O_NONBLOCK);
      this.st.state = 'following';
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      this.st.state = 'error';
      this.st.failure = {
        reason: err.code === 'ENOENT' ? 'NotInstalled' : 'SourceUnavailable',
        message: `cannot read ${this.o.path}: ${err.code ?? ''} ${err.message}`.trim(),
      };
      this.notify();
    }
  }

  private async drain(): Promise<void> {
    const fh = this.fh;
    if (!fh || this.stopped) return;
    const buf = Buffer.alloc(this.o.maxLineBytes ?? 8192);
    let n = 0;
    for (;;) {
      if (this.stopped) return;
      let bytesRead: number;
      try {
        ({ bytesRead } = await fh.read(buf, 0, buf.length, null));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') {
          // The ring buffer overwrote records we had not read: the next read goes on after them.
          this.lost++;
          continue;
        }
        if (code !== 'EAGAIN') {
          this.st.lastError = `${this.o.path}: ${(e as Error).message}`;
        }
        break;
      }
      if (bytesRead === 0) break;
      this.splitter.push(buf.subarray(0, bytesRead));
      if (++n % RECORDS_PER_SLICE === 0) await new Promise((r) => setImmediate(r));
    }
    if (!this.st.caughtUp) {
      this.st.caughtUp = true;
      this.notify();
    }
    if (!this.stopped) {
      this.timer = setTimeout(() => {
        this.draining = this.drain();
      }, this.o.pollIntervalMs);
      this.timer.unref?.();
    }
  }

  /** One line of /dev/kmsg (a read returns one record; a file of records is split the same way). */
  private take(line: string): void {
    if (line.startsWith(' ')) return; // ` SUBSYSTEM=...` dictionary lines
    const rec = parseKmsgRecord(line);
    if (!rec) {
      this.st.invalidRecords++;
      return;
    }
    // Facility 0 is the kernel; userspace (systemd-shutdown, journald) also writes to kmsg.
    if (rec.facility !== 0) return;
    this.st.lines++;
    this.o.onLine({ text: rec.text, timeMs: this.o.bootTimeMs + rec.usec / 1000 });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.st.state = 'stopped';
    clearTimeout(this.timer);
    await this.draining?.catch(() => undefined);
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
    this.notify();
  }
}
