/**
 * Start-up: from spawning `nodemedic run` to its first `/healthz` 200, against a bare Node.js HTTP
 * server answering 200 (the floor: Node.js itself starting and listening). Runs alternate between
 * the two so that machine noise spreads over both.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, fmt, freePort, loadAverage, median, runs, stopChild, table, waitFor200, type StepOptions, type StepReport } from './lib.js';

const POLL_MS = 2;

const BARE_SERVER = "require('node:http').createServer((q, s) => s.end('ok\\n')).listen(Number(process.argv[1]), '127.0.0.1')";

async function timeToHealthy(kind: 'bare' | 'agent'): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'nm-bench-startup-'));
  const port = await freePort();
  let argv: string[];
  if (kind === 'bare') {
    argv = ['-e', BARE_SERVER, String(port)];
  } else {
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, `http:\n  listen: "127.0.0.1:${port}"\nstateDir: ${JSON.stringify(join(dir, 'state'))}\n`);
    argv = [CLI, 'run', '--dry-run', '--config', cfg];
  }
  const t0 = performance.now();
  const child = spawn(process.execPath, argv, { stdio: 'ignore', env: { ...process.env, NODEMEDIC_CONFIG: '' } });
  try {
    const t1 = await waitFor200(`http://127.0.0.1:${port}/healthz`, { timeoutMs: 30_000, intervalMs: POLL_MS, child, what: kind });
    return t1 - t0;
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function startup(opts: StepOptions): Promise<StepReport> {
  const n = opts.quick ? 3 : 9;
  const bare: number[] = [];
  const agent: number[] = [];
  // One unrecorded run of each first: the page cache, not start-up, decides a cold first run.
  await timeToHealthy('bare');
  await timeToHealthy('agent');
  for (let i = 0; i < n; i++) {
    bare.push(await timeToHealthy('bare'));
    agent.push(await timeToHealthy('agent'));
  }
  opts.log(`startup: bare ${fmt(median(bare))} ms, agent ${fmt(median(agent))} ms`);
  const ratio = median(agent) / median(bare);
  const body = [
    `Method: ${n} runs of each, alternating, after one unrecorded warm-up run of each (page cache). Time from \`spawn()\` ` +
      `to the first HTTP 200 of \`GET /healthz\`, polled every ${POLL_MS} ms on loopback. Agent: \`node dist/agent/cli.js run ` +
      '--dry-run` with the default config (only `http.listen` and `stateDir` changed). Bare: `node -e` with a `node:http` ' +
      'server answering 200.',
    '',
    table(
      ['process', 'launch to /healthz 200, ms (median)', 'runs, ms'],
      [
        ['bare Node.js http server', fmt(median(bare)), runs(bare)],
        ['`nodemedic run`', fmt(median(agent)), runs(agent)],
        ['ratio agent / bare', fmt(ratio), ''],
      ],
    ),
    '',
    `No goal is set for start-up. Load average after: ${loadAverage()}.`,
  ].join('\n');
  return {
    id: 'startup',
    title: 'Start-up: launch to /healthz 200',
    measured: true,
    body,
    goals: [],
    data: { bareMs: bare, agentMs: agent, ratio },
  };
}
