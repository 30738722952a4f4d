import t from 'tap';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { RealHost } from '../platform/host.js';
import { parseFileNr, parseThreadCount, resourcesCheck, type ResourcesOptions, type TableUsage } from '../checks/resources.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const logger = pino({ level: 'silent' });
const host = new RealHost();

function run(procRoot: string, over: Partial<ResourcesOptions> = {}) {
  const opts = { ...resourcesCheck.defaults, procRoot, ...over };
  return resourcesCheck.create(opts, { host, logger, nodeName: 'n' }).run(new AbortController().signal);
}

interface Tree {
  threads: number;
  pidMax: number;
  threadsMax: number;
  files: number;
  fileMax: number;
  conntrack?: [number, number];
}

async function tree(t: Tap.Test, spec: Tree): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'nodemedic-proc-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  await mkdir(join(d, 'sys/kernel'), { recursive: true });
  await mkdir(join(d, 'sys/fs'), { recursive: true });
  await writeFile(join(d, 'loadavg'), `0.10 0.20 0.30 1/${spec.threads} 4242\n`);
  await writeFile(join(d, 'sys/kernel/pid_max'), `${spec.pidMax}\n`);
  await writeFile(join(d, 'sys/kernel/threads-max'), `${spec.threadsMax}\n`);
  await writeFile(join(d, 'sys/fs/file-nr'), `${spec.files}\t0\t${spec.fileMax}\n`);
  if (spec.conntrack) {
    await mkdir(join(d, 'sys/net/netfilter'), { recursive: true });
    await writeFile(join(d, 'sys/net/netfilter/nf_conntrack_count'), `${spec.conntrack[0]}\n`);
    await writeFile(join(d, 'sys/net/netfilter/nf_conntrack_max'), `${spec.conntrack[1]}\n`);
  }
  return d;
}

// eslint-disable-next-line @typescript-eslint/no-namespace
declare namespace Tap {
  type Test = Parameters<Parameters<typeof t.test>[1]>[0];
}

t.test('parsers', async (t) => {
  t.equal(parseThreadCount('0.24 0.30 0.41 2/734 12345\n'), 734);
  t.throws(() => parseThreadCount('nonsense'), /unexpected loadavg/);
  t.same(parseFileNr('4480\t0\t9223372036854775807\n'), { used: 4480, max: 9223372036854775807 });
  t.same(parseFileNr('4480\t10\t100\n'), { used: 4470, max: 100 });
  t.throws(() => parseFileNr('1 2'), /unexpected file-nr/);
});

t.test('fixture trees', async (t) => {
  const ok = await run(join(fixtures, 'proc-ok'));
  t.equal(ok.status, 'ok', ok.message);
  t.equal(ok.reason, 'ResourcesNormal');
  t.match(ok.evidence, { pids: { used: 734, limit: 32768, high: false }, conntrack: { used: 1200, limit: 262144 }, files: { used: 4480 } });
  t.ok(((ok.evidence as { files: TableUsage }).files.percent) < 0.001, 'LONG_MAX file-max is near zero use');

  const pids = await run(join(fixtures, 'proc-pids-high'));
  t.equal(pids.status, 'problem');
  t.equal(pids.reason, 'PIDUsageHigh');
  t.match(pids.message, /threads against kernel\.pid_max at 70\.19% \(23000\/32768, limit 70%\)/);

  const noCt = await run(join(fixtures, 'proc-no-conntrack'));
  t.equal(noCt.status, 'ok', 'no conntrack module is not a problem');
  t.same((noCt.evidence as { notApplicable: string[] }).notApplicable, ['conntrack']);
  t.notOk((noCt.evidence as { conntrack?: unknown }).conntrack);

  const full = await run(join(fixtures, 'proc-conntrack-full'));
  t.equal(full.status, 'problem');
  t.equal(full.reason, 'ConntrackUsageHigh');

  const bad = await run(join(fixtures, 'proc-unreadable'));
  t.equal(bad.status, 'unknown');
  t.equal(bad.reason, 'ProcUnreadable');
  t.match(bad.message, /pid_max/);
  t.match(bad.message, /threads-max/);
  t.match(bad.message, /file-nr/);

  const none = await run(join(fixtures, 'no-such-proc'));
  t.equal(none.status, 'unknown', 'a missing procRoot is unknown, not ok');
});

t.test('at, below and above every threshold', async (t) => {
  const quiet: Tree = { threads: 100, pidMax: 100_000, threadsMax: 100_000, files: 100, fileMax: 100_000, conntrack: [100, 100_000] };
  // [name, tree modifier for below / at / above, expected reason when reached]
  const cases: [string, (n: number) => Partial<Tree>, string][] = [
    ['pids (pid_max, 70%)', (n) => ({ threads: n, pidMax: 10_000, threadsMax: 1_000_000 }), 'PIDUsageHigh'],
    ['threads (threads-max, 70%)', (n) => ({ threads: n, pidMax: 1_000_000, threadsMax: 10_000 }), 'PIDUsageHigh'],
    ['files (file-max, 70%)', (n) => ({ files: n, fileMax: 10_000 }), 'FileUsageHigh'],
  ];
  for (const [name, mod, reason] of cases) {
    for (const [n, expect] of [[6999, 'ok'], [7000, 'problem'], [7001, 'problem']] as const) {
      const r = await run(await tree(t, { ...quiet, ...mod(n) }));
      t.equal(r.status, expect, `${name}: ${n}/10000 → ${expect} (${r.message})`);
      if (expect === 'problem') t.equal(r.reason, reason);
    }
  }
  for (const [n, expect] of [[8999, 'ok'], [9000, 'problem'], [9001, 'problem']] as const) {
    const r = await run(await tree(t, { ...quiet, conntrack: [n, 10_000] }));
    t.equal(r.status, expect, `conntrack (90%): ${n}/10000 → ${expect}`);
    if (expect === 'problem') t.equal(r.reason, 'ConntrackUsageHigh');
  }
  // Thresholds are options, not constants.
  const r = await run(await tree(t, { ...quiet, conntrack: [8999, 10_000] }), { maxConntrackPercent: 80 });
  t.equal(r.status, 'problem', 'a lower configured threshold reports earlier');
  // A table that is high wins over another that cannot be read: the problem is known.
  const d = await tree(t, { ...quiet, threads: 9000, pidMax: 10_000 });
  await rm(join(d, 'sys/fs/file-nr'));
  const mixed = await run(d);
  t.equal(mixed.status, 'problem');
  t.match((mixed.evidence as { unreadable: string[] }).unreadable, [/file-nr/]);
});

t.test('the real /proc of this machine', async (t) => {
  const r = await run('/proc');
  t.equal(r.status, 'ok', r.message);
  const ev = r.evidence as { pids: TableUsage; threads: TableUsage; files: TableUsage };
  t.ok(ev.pids.used > 10, `counts ${ev.pids.used} threads`);
  t.ok(ev.pids.limit > 300, 'reads pid_max (the kernel minimum is 301)');
  t.ok(ev.files.used > 0, 'reads file-nr');
});
