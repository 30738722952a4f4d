import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { RealHost, type Host, type StatFs } from '../platform/host.js';
import { diskCheck, usageOf, type DiskOptions } from '../checks/disk.js';
import { requireComponent } from './helpers/require.js';

const logger = pino({ level: 'silent' });
const opts = (o: Partial<DiskOptions>): DiskOptions => ({ ...diskCheck.defaults, ...o });
const run = (o: Partial<DiskOptions>, host: Host = new RealHost()) =>
  diskCheck.create(opts(o), { host, logger, nodeName: 'n' }).run(new AbortController().signal);

t.test('usage arithmetic matches df (reserved blocks count as used)', async (t) => {
  // 1000 blocks, 100 free of which 50 reserved for root: df shows 900/(900+50) = 94.74%.
  const u = usageOf('/x', { bsize: 4096, blocks: 1000, bfree: 100, bavail: 50, files: 200, ffree: 20 });
  t.equal(u.usedPercent, 94.74);
  t.equal(u.inodesUsedPercent, 90);
  t.equal(u.availableBytes, 50 * 4096);
  t.equal(usageOf('/btrfs', { bsize: 4096, blocks: 10, bfree: 5, bavail: 5, files: 0, ffree: 0 }).inodesUsedPercent, null, 'no inode table');
});

t.test('real tmpfs filesystems filled past the thresholds', async (t) => {
  if (!(await requireComponent(t, 'disk tmpfs test', ['mount', 'umount']))) return;
  const base = mkdtempSync(join(tmpdir(), 'nodemedic-disk-'));
  const bytes = join(base, 'bytes');
  const inodes = join(base, 'inodes');
  mkdirSync(bytes);
  mkdirSync(inodes);
  const mounted: string[] = [];
  t.teardown(() => {
    for (const m of mounted) execFileSync('umount', [m]);
    rmSync(base, { recursive: true, force: true });
  });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=1000', 'tmpfs', bytes]);
  mounted.push(bytes);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,nr_inodes=64', 'tmpfs', inodes]);
  mounted.push(inodes);

  const before = await run({ paths: [bytes, inodes], maxUsedPercent: 80, maxInodesUsedPercent: 80 });
  t.equal(before.status, 'ok', 'empty filesystems are ok');

  writeFileSync(join(bytes, 'fill'), Buffer.alloc(900 * 1024, 1));
  const full = await run({ paths: [bytes], maxUsedPercent: 80, maxInodesUsedPercent: 80 });
  t.equal(full.status, 'problem');
  t.equal(full.reason, 'DiskUsageHigh');
  t.match(full.message, new RegExp(`${bytes} is \\d+(\\.\\d+)?% full \\(limit 80%\\)`));

  for (let i = 0; i < 60; i++) writeFileSync(join(inodes, `f${i}`), '');
  const inodeFull = await run({ paths: [inodes], maxUsedPercent: 80, maxInodesUsedPercent: 80 });
  t.equal(inodeFull.status, 'problem');
  t.equal(inodeFull.reason, 'InodeUsageHigh', 'bytes are fine, inodes are not');
  const ev = inodeFull.evidence as { paths: { usedPercent: number; inodesUsedPercent: number }[] };
  t.ok(ev.paths[0]!.usedPercent < 80, 'bytes below the limit');
  t.ok(ev.paths[0]!.inodesUsedPercent > 80, 'inodes above the limit');

  const both = await run({ paths: [bytes, inodes], maxUsedPercent: 80, maxInodesUsedPercent: 80 });
  t.equal(both.reason, 'DiskUsageHigh', 'bytes take precedence in the reason');
  t.match(both.message, /inodes/, 'but the message names both');
});

t.test('paths that do not exist are skipped and listed, not errors', async (t) => {
  const f = await run({ paths: ['/', '/nonexistent/nodemedic-test'] });
  t.equal(f.status, 'ok');
  t.same((f.evidence as { skipped: string[] }).skipped, ['/nonexistent/nodemedic-test']);
  const none = await run({ paths: ['/nonexistent/a'] });
  t.equal(none.status, 'unknown');
  t.equal(none.reason, 'NoPaths');
});

t.test('a hung statfs makes its path unknown on time and is never stacked', async (t) => {
  const real = new RealHost();
  let calls = 0;
  let release: (() => void) | undefined;
  let mountBack = false;
  const answer: StatFs = { bsize: 4096, blocks: 100, bfree: 90, bavail: 90, files: 10, ffree: 9 };
  // A dead NFS mount: statfs never returns until we let it.
  const host: Host = {
    ...real,
    clock: real.clock,
    run: real.run.bind(real),
    spawnLines: real.spawnLines.bind(real),
    readFile: real.readFile.bind(real),
    statfs: (p: string): Promise<StatFs> => {
      if (p !== '/hung') return real.statfs(p);
      calls++;
      if (mountBack) return Promise.resolve(answer);
      return new Promise((resolve) => {
        release = () => resolve(answer);
      });
    },
  };
  const check = diskCheck.create(opts({ paths: ['/', '/hung'], timeout: '200ms' }), { host, logger, nodeName: 'n' });
  const t0 = Date.now();
  const first = await check.run(new AbortController().signal);
  t.ok(Date.now() - t0 < 1000, 'returns within the timeout');
  t.equal(first.status, 'unknown');
  t.equal(first.reason, 'StatfsTimeout');
  t.match((first.evidence as { unreadable: Record<string, string> }).unreadable['/hung'], /did not return within 200ms/);
  const second = await check.run(new AbortController().signal);
  t.equal(second.reason, 'StatfsTimeout');
  t.equal(calls, 1, 'no second statfs while the first is pending');
  mountBack = true;
  release!();
  await new Promise((r) => setTimeout(r, 10));
  const third = await check.run(new AbortController().signal);
  t.equal(third.status, 'ok', 'recovers once the mount answers');
  t.equal(calls, 2);
});
