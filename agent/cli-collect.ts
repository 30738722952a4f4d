import http from 'node:http';
import { configOption, type CommandSpec } from './cli-types.js';
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { parseDuration } from '../platform/duration.js';
import { EXIT, UsageError } from '../platform/errors.js';
import { RealHost } from '../platform/host.js';
import { evidenceCollectorFor } from '../remediations/evidence.js';

/** GET /status of a running agent on this node, bounded; undefined with a reason when none answers. */
function agentStatus(listen: string, timeoutMs: number): Promise<unknown> {
  const m = /^(.*):(\d+)$/.exec(listen);
  const host = !m || m[1] === '0.0.0.0' || m[1] === '' || m[1] === '[::]' ? '127.0.0.1' : m[1]!.replace(/^\[|\]$/g, '');
  const port = m ? Number(m[2]) : 20258;
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/status', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 4 * 1024 * 1024) body += c;
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch {
          resolve({ error: `GET http://${host}:${port}/status answered ${res.statusCode} with no JSON` });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ error: `no running agent answered http://${host}:${port}/status: ${e.message}` }));
  });
}

/**
 * `nodemedic collect`: the evidence bundle an action would take (remediations/evidence.ts), now, for
 * an operator about to intervene by hand. The running agent's /status goes in when one answers.
 */
export const collectCommand: CommandSpec = {
  name: 'collect',
  summary: 'write an evidence bundle (journals, kernel log, runtime goroutine dumps, process table, status, config)',
  usage: 'nodemedic collect [--config F] [--output FILE] [--since DURATION]',
  options: { ...configOption, output: { type: 'string', short: 'o' }, since: { type: 'string' } },
  async run(args, io) {
    let sinceMs: number;
    try {
      sinceMs = Date.now() - parseDuration(String(args.values.since ?? '1h'));
    } catch (e) {
      throw new UsageError(`--since: ${(e as Error).message}`);
    }
    const { config } = loadConfig(args.values.config as string | undefined);
    const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level, 'stderr');
    const host = new RealHost({ commandPrefix: config.hostCommandPrefix });
    const status = await agentStatus(config.http.listen, 3000);
    const collector = evidenceCollectorFor(config, host, logger, { status: () => status });
    const output = typeof args.values.output === 'string' ? args.values.output : undefined;
    const r = await collector.collect({ label: 'collect', sinceMs, ...(output ? { output } : {}) });
    if (!r.path) {
      io.err(`nodemedic collect: ${r.error ?? 'no bundle written'}\n`);
      return 73; // EX_CANTCREAT
    }
    io.out(`${r.path} (${r.bytes} bytes, ${r.durationMs} ms)\n`);
    for (const m of r.missing) io.out(`  not collected: ${m}\n`);
    return EXIT.ok;
  },
};
