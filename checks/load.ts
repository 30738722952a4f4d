import { cpus as onlineCpus } from 'node:os';
import type { Host } from '../platform/host.js';
import { withOvercommitEvidence } from './node-overcommit.js';
import type { BaseCheckOptions, CheckDefinition, Finding } from './types.js';

export interface LoadOptions extends BaseCheckOptions {
  /** The 1-minute load average divided by the number of CPUs above which kubelet starves. */
  maxLoadPerCpu: number;
}

export interface LoadAverage {
  load1: number;
  load5: number;
  load15: number;
  runnable: number;
  total: number;
}

/** Parses `/proc/loadavg` (`0.24 0.30 0.41 2/187 12345`). */
export function parseLoadavg(text: string): LoadAverage {
  const m = /^(\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\d+)\/(\d+) \d+\s*$/.exec(text);
  if (!m) throw new Error(`unexpected /proc/loadavg content: ${JSON.stringify(text.slice(0, 80))}`);
  return { load1: Number(m[1]), load5: Number(m[2]), load15: Number(m[3]), runnable: Number(m[4]), total: Number(m[5]) };
}

/** Pressure stall averages of one resource: `some` and (where the kernel has it) `full`. */
export type Pressure = Record<'some' | 'full', { avg10: number; avg60: number; avg300: number } | undefined>;

/** Parses a `/proc/pressure/<resource>` file. */
export function parsePressure(text: string): Pressure {
  const out: Pressure = { some: undefined, full: undefined };
  for (const line of text.split('\n')) {
    const m = /^(some|full) avg10=(\d+\.\d+) avg60=(\d+\.\d+) avg300=(\d+\.\d+) total=\d+$/.exec(line.trim());
    if (m) out[m[1] as 'some' | 'full'] = { avg10: Number(m[2]), avg60: Number(m[3]), avg300: Number(m[4]) };
  }
  if (!out.some) throw new Error(`unexpected pressure content: ${JSON.stringify(text.slice(0, 80))}`);
  return out;
}

async function readPressure(host: Host): Promise<Record<string, Pressure> | undefined> {
  const out: Record<string, Pressure> = {};
  for (const res of ['cpu', 'memory', 'io']) {
    try {
      out[res] = parsePressure(await host.readFile(`/proc/pressure/${res}`, 4096));
    } catch {
      // Kernels before 4.20, or booted with psi=0: PSI is optional evidence.
    }
  }
  return Object.keys(out).length ? out : undefined;
}

export const loadCheck: CheckDefinition<LoadOptions> = {
  id: 'load',
  reasons: ['LoadHigh', 'LoadNormal'],
  restartCures: false, // a restart does not remove what loads the node
  defaults: { enabled: true, maxLoadPerCpu: 3 },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: { enabled: { type: 'boolean' }, maxLoadPerCpu: { type: 'number', exclusiveMinimum: 0 } },
  },
  runTimeoutMs: () => 10_000,
  create(options, { host, nodeName }) {
    let cpus: number | undefined;
    return {
      id: 'load',
      async run(): Promise<Finding> {
        // The CPU count is what systeminformation's cpu().cores returns on Linux (os.cpus().length), read
        // directly: cpu() also runs `lscpu` and `dmidecode` through /bin/sh with no time bound, and the
        // library adds ~9 MiB of resident code for this one number. The load comes from /proc/loadavg.
        cpus ??= onlineCpus().length || undefined;
        let load: LoadAverage;
        try {
          load = parseLoadavg(await host.readFile('/proc/loadavg', 256));
        } catch (e) {
          return { status: 'unknown', reason: 'LoadUnreadable', message: (e as Error).message };
        }
        if (!cpus) return { status: 'unknown', reason: 'CpuCountUnknown', message: 'could not determine the number of CPUs' };
        const perCpu = Math.round((load.load1 / cpus) * 100) / 100;
        const evidence = { ...load, cpus, load1PerCpu: perCpu, maxLoadPerCpu: options.maxLoadPerCpu, pressure: await readPressure(host) };
        if (perCpu > options.maxLoadPerCpu) {
          // With the node's overcommit (Kubernetes access, checks/node-overcommit.ts): was it oversold?
          return withOvercommitEvidence({
            status: 'problem',
            reason: 'LoadHigh',
            message: `1-minute load ${load.load1} on ${cpus} CPUs is ${perCpu} per CPU (limit ${options.maxLoadPerCpu}): kubelet may be unable to report node status; find the runaway workload or move pods off this node`,
            evidence,
          }, nodeName);
        }
        return { status: 'ok', reason: 'LoadNormal', message: `1-minute load ${load.load1} on ${cpus} CPUs (${perCpu} per CPU)`, evidence };
      },
    };
  },
};
