// `nodemedic pause` / `nodemedic resume`: the operator's pause file, written by the CLI, read by the agent.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { main } from '../agent/cli.js';
import { pausePath, readPause } from '../remediations/pause.js';

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { out: (s) => void (out += s), err: (s) => void (err += s), env: {} });
  return { code, out, err };
}

async function setup(t: { teardown(fn: () => unknown): void }): Promise<{ dir: string; config: string; stateDir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'nodemedic-ladder-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const stateDir = join(dir, 'state');
  // As on a node where the agent runs: it creates its stateDir (pause refuses a missing one).
  await mkdir(stateDir);
  const config = join(dir, 'config.yaml');
  await writeFile(config, `stateDir: ${stateDir}\n`);
  return { dir, config, stateDir };
}

t.test('pause --for --reason writes the pause; resume removes it', async (t) => {
  const { config, stateDir } = await setup(t);
  const before = Date.now();
  const r = await run(['pause', '--config', config, '--for', '10m', '--reason', 'kernel upgrade, ticket OPS-1']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /^remediation paused for 10m \(until \d{4}-\d\d-\d\dT[\d:.]+Z\): kernel upgrade, ticket OPS-1\n/);
  const p = await readPause(stateDir);
  t.ok(p && p.until !== null && p.until >= before + 600_000 && p.until <= Date.now() + 600_000, 'until = now + 10m');
  t.equal(p?.reason, 'kernel upgrade, ticket OPS-1');

  const r2 = await run(['pause', '--config', config]);
  t.equal(r2.code, 0);
  t.match(r2.out, /paused until `nodemedic resume`/);
  t.match(await readPause(stateDir), { until: null, reason: '' }, 'a new pause replaces the old one');

  const r3 = await run(['resume', '--config', config]);
  t.same([r3.code, r3.out], [0, 'remediation resumed\n']);
  t.notOk(existsSync(pausePath(stateDir)));
  const r4 = await run(['resume', '--config', config]);
  t.same([r4.code, r4.out], [0, 'remediation was not paused\n']);
});

t.test('usage errors exit 64 naming the flag; a bad config exits 78', async (t) => {
  const { dir, config, stateDir } = await setup(t);
  for (const [args, msg] of [
    [['pause', '--for', '10'], /--for: not a duration: "10"/],
    [['pause', '--for=-5m'], /--for: not a duration: "-5m"/],
    [['pause', '--for', '0s'], /--for: must be longer than 0/],
    [['pause', '--for'], /--for/],
    [['pause', '--reason', 'x'.repeat(501)], /--reason: at most 500 characters/],
    [['pause', '--bogus'], /Unknown option '--bogus'/],
    [['resume', 'now'], /unexpected argument "now"/],
  ] as const) {
    const r = await run([...args, '--config', config]);
    t.equal(r.code, 64, `${args.join(' ')} -> 64`);
    t.match(r.err, msg);
  }
  t.notOk(existsSync(pausePath(stateDir)), 'nothing written on a usage error');
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'stateDir: relative/path\n');
  const r = await run(['pause', '--config', bad]);
  t.equal(r.code, 78);
  t.match(r.err, /stateDir/);
});

t.test('a pause that cannot be written: exit 73 with the path', async (t) => {
  const { dir } = await setup(t);
  const blocker = join(dir, 'file');
  await writeFile(blocker, 'not a directory');
  const config = join(dir, 'c.yaml');
  await writeFile(config, `stateDir: ${join(blocker, 'state')}\n`);
  const r = await run(['pause', '--config', config]);
  t.equal(r.code, 73);
  t.match(r.err, /cannot write .*file\/state\/pause\.json/);
});
