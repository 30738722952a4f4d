/**
 * Processes of a test's systemd namespace as the host sees them, for "no process left behind" and
 * "no pile-up" assertions: every process whose PID namespace is the namespace's, plus the host-side
 * `nsenter -t <pid>` processes that lead into it.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';

export interface NsProc {
  /** Host PID. */
  pid: number;
  comm: string;
  /** argv joined with spaces. */
  cmdline: string;
  /** Seconds since it started. */
  ageSeconds: number;
  /** True for the host-side nsenter, false for a process inside the namespace. */
  nsenter: boolean;
}

async function uptime(): Promise<number> {
  return Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]);
}

/** Processes in the PID namespace of host PID `initPid`, and nsenter processes targeting it. */
export async function nsProcesses(initPid: number): Promise<NsProc[]> {
  const nsLink = await readlink(`/proc/${initPid}/ns/pid`);
  const up = await uptime();
  const out: NsProc[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const [link, stat, cmd] = await Promise.all([
        readlink(`/proc/${name}/ns/pid`),
        readFile(`/proc/${name}/stat`, 'utf8'),
        readFile(`/proc/${name}/cmdline`, 'utf8'),
      ]);
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) / 100;
      const argv = cmd.split('\0').filter(Boolean);
      const nsenter = comm === 'nsenter' && argv.includes('-t') && argv[argv.indexOf('-t') + 1] === String(initPid);
      if (link === nsLink || nsenter) out.push({ pid: Number(name), comm, cmdline: argv.join(' '), ageSeconds: up - start, nsenter });
    } catch {
      // Exited while being read.
    }
  }
  return out;
}
