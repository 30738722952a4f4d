// The systemd namespace harness (test/harness/systemd-ns.ts) against the real systemd, journald,
// systemctl and journalctl: it boots fast, runs our units and only ours, logs to its own journal,
// records restarts, ends on reboot/poweroff inside without touching the host, and cleans up,
// even after its owner is SIGKILLed.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import t, { type Test } from 'tap';
import { requireComponent } from './helpers/require.js';
import { BOOT_TARGET, COPIED_UNITS, requireSystemdNs, startSystemdNs, waitFor, type SystemdNs } from './harness/systemd-ns.js';

const here = dirname(fileURLToPath(import.meta.url));
const TOOLS = ['systemctl', 'journalctl', 'unshare', 'nsenter', 'script'];
const TICKER = '[Service]\nExecStart=/bin/sh -c "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"\n';

async function available(t: Test): Promise<boolean> {
  return (await requireComponent(t, 'systemd namespace', TOOLS)) && (await requireSystemdNs(t));
}

function gone(path: string): boolean {
  return !existsSync(path);
}

/** Host processes whose cgroup path names this namespace. */
function processesOf(name: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cgroup`, 'utf8').includes(`/${name}`)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

async function assertCleanedUp(t: Test, ns: { name: string; pid: number; cgroup: string; unitsDir: string }): Promise<void> {
  await waitFor(() => gone(ns.cgroup) && gone(dirname(ns.unitsDir)) && !existsSync(`/proc/${ns.pid}`), {
    timeoutMs: 8000,
    what: `namespace ${ns.name} to be cleaned up`,
  });
  t.ok(gone(ns.cgroup), 'its cgroup is removed');
  t.ok(gone(dirname(ns.unitsDir)), 'its directory is removed');
  t.notOk(existsSync(`/proc/${ns.pid}`), 'its PID 1 is gone');
  t.same(processesOf(ns.name), [], 'no process of the namespace is left');
}

t.test('boots fast, runs our unit, logs to its own journal, and stops cleanly', async (t) => {
  if (!(await available(t))) return;
  const started = Date.now();
  const ns = await startSystemdNs({ t, name: 'basic', units: { 'ticker.service': TICKER } });
  const bootMs = Date.now() - started;
  t.ok(bootMs < 5000, `booted in ${bootMs} ms (< 5 s)`);

  t.equal(readFileSync(`/proc/${ns.pid}/comm`, 'utf8').trim(), 'systemd', 'PID 1 of the namespace is systemd');
  t.match(readFileSync(`/proc/${ns.pid}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m, 'and it is PID 1 inside');
  t.same(ns.prefix, ['nsenter', '-t', String(ns.pid), '-m', '-p', '--']);
  t.not(readFileSync(`/proc/${ns.pid}/cgroup`, 'utf8'), readFileSync('/proc/self/cgroup', 'utf8'), 'it lives in a cgroup of its own');

  const active = await ns.systemctl('is-active', 'ticker.service');
  t.equal(active.stdout.trim(), 'active', 'our unit was started at boot');
  t.equal((await ns.systemctl('is-active', BOOT_TARGET)).stdout.trim(), 'active', 'the boot target is reached');

  // Its output reaches the namespace's journal, readable inside and from the host.
  const inside = await waitFor(
    async () => {
      const r = await ns.journalctl('-u', 'ticker.service', '-o', 'cat');
      return r.stdout.includes('tick 3') ? r : undefined;
    },
    { timeoutMs: 5000, what: 'ticker lines in the journal' },
  );
  t.match(inside.stdout, /^tick 1$/m, 'journalctl -u inside the namespace sees the unit output');
  const outside = await execa('journalctl', ['--no-pager', `--directory=${ns.journalDir}`, '-u', 'ticker.service', '-o', 'cat'], {
    reject: false,
    timeout: 10_000,
  });
  t.equal(outside.exitCode, 0, 'journalctl --directory works from the host');
  t.match(outside.stdout, /^tick 1$/m, 'and sees the same lines');

  const info = { name: ns.name, pid: ns.pid, cgroup: ns.cgroup, unitsDir: ns.unitsDir };
  const stopStarted = Date.now();
  await ns.stop();
  const exit = await ns.exited;
  t.equal(exit.how, 'poweroff', 'stop() powers it off from inside');
  t.ok(Date.now() - stopStarted < 6000, `stop took ${Date.now() - stopStarted} ms`);
  t.notOk(ns.running(), 'running() is false afterwards');
  await assertCleanedUp(t, info);
  await ns.stop();
  t.pass('stop() is idempotent');
});

t.test("sees only our units and copies, never the host's", async (t) => {
  if (!(await available(t))) return;
  const ns = await startSystemdNs({
    t,
    name: 'isolation',
    units: { 'ticker.service': TICKER, 'extra.service': '[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=nodemedic-ns.target\n' },
    start: ['ticker.service'],
  });
  const r = await ns.systemctl('list-unit-files', '--no-legend', '--plain');
  t.equal(r.exitCode, 0, 'list-unit-files works');
  const listed = r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(/\s+/)[0])
    .sort();
  const expected = [...COPIED_UNITS, BOOT_TARGET, 'ticker.service', 'extra.service'].sort();
  t.same(listed, expected, 'exactly our units, the boot target and the copied distribution units');

  for (const hostUnit of ['multi-user.target', 'systemd-tmpfiles-setup.service', 'systemd-sysctl.service', 'getty.target']) {
    const cat = await ns.systemctl('cat', hostUnit);
    t.not(cat.exitCode, 0, `${hostUnit} is unknown inside`);
  }
  t.equal((await ns.systemctl('is-active', 'extra.service')).stdout.trim(), 'inactive', 'a unit not in `start` stays stopped');

  // enable writes symlinks into the namespace's private /etc, never the host's.
  const enable = await ns.systemctl('enable', 'extra.service');
  t.equal(enable.exitCode, 0, `systemctl enable works inside (${enable.stderr.trim()})`);
  const link = `/etc/systemd/system/${BOOT_TARGET}.wants/extra.service`;
  t.ok(existsSync(`/proc/${ns.pid}/root${link}`), 'the symlink is in the namespace');
  t.notOk(existsSync(link), 'and not on the host');
  t.equal((await ns.systemctl('is-enabled', 'extra.service')).stdout.trim(), 'enabled', 'systemd sees it enabled');

  // Host-global knobs stay untouched: /proc/sys is read-only inside.
  const write = await execa('nsenter', [...ns.prefix.slice(1, -1), '--', 'sh', '-c', 'echo 1 > /proc/sys/vm/drop_caches'], {
    reject: false,
    timeout: 5000,
  });
  t.not(write.exitCode, 0, '/proc/sys is read-only inside');
});

t.test('restarts show in unitEvents; addUnit installs a unit at runtime', async (t) => {
  if (!(await available(t))) return;
  const ns = await startSystemdNs({ t, name: 'events', units: { 'ticker.service': TICKER } });
  const startsBefore = (await ns.unitEvents('ticker.service')).filter((e) => e.fromSystemd && e.jobType === 'start' && e.result === 'done');
  t.equal(startsBefore.length, 1, 'one start so far');

  const r = await ns.systemctl('restart', 'ticker.service');
  t.equal(r.exitCode, 0, 'systemctl restart works');
  const events = await waitFor(
    async () => {
      const ev = await ns.unitEvents('ticker.service');
      return ev.filter((e) => e.fromSystemd && e.jobType === 'start' && e.result === 'done').length === 2 ? ev : undefined;
    },
    { timeoutMs: 5000, what: 'a second start in the journal' },
  );
  const restart = events.find((e) => e.jobType === 'restart');
  t.ok(restart, 'the restart job is recorded');
  t.equal(restart?.result, 'done', 'and it succeeded');
  t.ok(
    events.some((e) => !e.fromSystemd && /^tick \d+$/.test(e.message)),
    "the unit's own output is among the events, marked fromSystemd: false",
  );
  const times = events.map((e) => e.realtimeUs);
  t.same(times, [...times].sort((a, b) => a - b), 'events are oldest first');
  t.ok(times.every((us) => Math.abs(us / 1000 - Date.now()) < 60_000), 'realtimeUs is wall-clock microseconds');

  await ns.addUnit('late.service', '[Service]\nExecStart=/bin/sh -c "echo late unit ran"\n');
  const start = await ns.systemctl('start', 'late.service');
  t.equal(start.exitCode, 0, 'a unit added at runtime can be started');
  await waitFor(async () => (await ns.unitEvents('late.service')).some((e) => e.message === 'late unit ran'), {
    timeoutMs: 5000,
    what: 'the late unit output',
  });
  await ns.addUnit('late.service.d/env.conf', '[Service]\nEnvironment=X=1\n');
  t.match((await ns.systemctl('show', 'late.service', '--property=Environment')).stdout, /X=1/, 'drop-ins work');

  await t.rejects(ns.addUnit('../escape.service', ''), /invalid unit file name/, 'a path is not a unit name');
  await t.rejects(ns.addUnit('systemd-journald.service', ''), /provided by the harness/, 'harness units cannot be replaced');
});

t.test('reboot and poweroff inside end only the namespace', async (t) => {
  if (!(await available(t))) return;
  const hostBoot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8');
  for (const verb of ['reboot', 'poweroff'] as const) {
    const ns = await startSystemdNs({ t, name: verb, units: { 'ticker.service': TICKER } });
    const info = { name: ns.name, pid: ns.pid, cgroup: ns.cgroup, unitsDir: ns.unitsDir };
    const r = await ns.systemctl(verb);
    t.equal(r.exitCode, 0, `systemctl ${verb} inside is accepted`);
    const exit = await Promise.race([ns.exited, new Promise<undefined>((res) => setTimeout(res, 10_000, undefined))]);
    t.equal(exit?.how, verb, `the namespace ended by ${verb}`);
    t.notOk(ns.running(), 'running() is false');
    await ns.stop();
    await assertCleanedUp(t, info);
  }
  t.equal(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'), hostBoot, 'the host did not reboot (same boot id)');
});

t.test('two namespaces at once are independent', async (t) => {
  if (!(await available(t))) return;
  const [a, b] = await Promise.all([
    startSystemdNs({ t, name: 'twin', units: { 'a.service': TICKER } }),
    startSystemdNs({ t, name: 'twin', units: { 'b.service': TICKER } }),
  ]);
  t.not(a.name, b.name, 'unique names');
  t.not(a.pid, b.pid, 'different PID 1s');
  t.equal((await a.systemctl('is-active', 'a.service')).stdout.trim(), 'active');
  t.equal((await b.systemctl('is-active', 'b.service')).stdout.trim(), 'active');
  t.not((await a.systemctl('cat', 'b.service')).exitCode, 0, "a does not see b's unit");
  t.not((await b.systemctl('cat', 'a.service')).exitCode, 0, "b does not see a's unit");
  const infoA = { name: a.name, pid: a.pid, cgroup: a.cgroup, unitsDir: a.unitsDir };
  await a.stop();
  await assertCleanedUp(t, infoA);
  t.equal((await b.systemctl('is-active', 'b.service')).stdout.trim(), 'active', 'stopping one leaves the other running');
});

t.test('a bad unit name is refused before anything is created', async (t) => {
  if (!(await available(t))) return;
  const mine = (): string[] => readdirSync(tmpdir()).filter((d) => d.startsWith('nodemedic-ns-') && d.includes(`-${process.pid}-`));
  const before = mine();
  await t.rejects(startSystemdNs({ units: { 'no suffix': '' } }), /invalid unit file name "no suffix"/);
  await t.rejects(startSystemdNs({ units: { 'x.service': '' }, start: ['-x.service'] }), /invalid unit name in start/);
  t.same(mine(), before, 'no directory was created');
});

t.test('the watchdog cleans up after an owner killed with SIGKILL', async (t) => {
  if (!(await available(t))) return;
  // Run the fixture with the same TypeScript loader tap gave us.
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript') || a.includes('tsimp') || a.includes('ts-node'));
  const child = spawn(process.execPath, [...loader, join(here, 'fixtures', 'ns-orphan.ts')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const info = await waitFor(() => (out.includes('\n') ? (JSON.parse(out.split('\n')[0] as string) as { pid: number; cgroup: string; unitsDir: string }) : undefined), {
    timeoutMs: 20_000,
    what: `the orphan fixture to report its namespace (stderr: ${err})`,
  });
  t.ok(existsSync(`/proc/${info.pid}`), 'the orphan namespace is running');
  child.kill('SIGKILL');
  await assertCleanedUp(t, { name: info.cgroup.split('/').pop() as string, ...info });
});
