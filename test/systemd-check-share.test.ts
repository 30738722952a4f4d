// The systemd check's sharing of PID 1's answer, on a scripted host (no process started): which call
// it makes, and which it reads, as the sweep's other calls to PID 1 are in flight, finished or absent.
// test/systemd-check.test.ts shows the same against a real systemd.
import t from 'tap';
import { systemdCheck } from '../checks/systemd.js';
import { ManualClock } from '../platform/clock.js';
import type { CommandResult, Host, RunOptions } from '../platform/host.js';
import { showUnitShared } from '../platform/systemd-unit.js';

const UNIT_SHOW = 'Id=kubelet.service\nLoadState=loaded\nActiveState=active\nSubState=running\n';

/** A host whose `systemctl show` answers at once (or, with `hang`, never within the bound). */
function scriptedHost(clock: ManualClock): Host & { calls: string[]; hang: boolean } {
  const host = {
    clock,
    calls: [] as string[],
    hang: false,
    async run(argv: readonly string[], opts: RunOptions): Promise<CommandResult> {
      const line = argv.join(' ');
      host.calls.push(line);
      const base = { argv: [...argv], stderr: '', notFound: false, outputCapped: false };
      if (host.hang) {
        await new Promise((r) => setTimeout(r, Math.min(opts.timeoutMs ?? 1000, 300)));
        return { ...base, exitCode: 124, stdout: '', timedOut: false };
      }
      if (/--property=Version/.test(line)) return { ...base, exitCode: 0, stdout: 'Version=252.38-1~deb12u1\n', timedOut: false };
      if (/systemctl show/.test(line)) return { ...base, exitCode: 0, stdout: UNIT_SHOW, timedOut: false };
      return { ...base, exitCode: 1, stdout: '', timedOut: false };
    },
    spawnLines: () => {
      throw new Error('not used');
    },
    readFile: async () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
    statfs: async () => {
      throw new Error('not used');
    },
  };
  return host as unknown as Host & { calls: string[]; hang: boolean };
}

const own = (calls: string[]) => calls.filter((c) => /--property=Version/.test(c)).length;

t.test('first its own call (the version), then the answers to the sweep\'s other calls; its own again when none was made', async (t) => {
  const clock = new ManualClock();
  const host = scriptedHost(clock);
  const check = systemdCheck.create({ ...systemdCheck.defaults, timeout: '1s', procPath: '/nonexistent' }, { host } as never);
  const signal = new AbortController().signal;

  const first = await check.run(signal);
  t.match(first, { status: 'ok', reason: 'SystemdResponsive', evidence: { version: '252.38-1~deb12u1' } });
  t.notOk(first.evidence?.answeredVia, 'the first answer is to its own call');
  t.equal(own(host.calls), 1);

  // A sibling's call in flight when the check looks: shared.
  const [q, r] = await Promise.all([showUnitShared(host, 'kubelet', 1000), check.run(signal)]);
  t.equal(q.ok, true);
  t.match(r, { status: 'ok', evidence: { answeredVia: 'systemctl show kubelet', version: '252.38-1~deb12u1' } }, 'in flight: shared');
  t.equal(own(host.calls), 1, 'no second process');

  // A sibling's call of this sweep that already finished: shared too.
  await showUnitShared(host, 'kubelet', 1000);
  const r2 = await check.run(signal);
  t.match(r2, { evidence: { answeredVia: 'systemctl show kubelet' } }, 'finished just before: shared');
  t.equal(own(host.calls), 1);

  // A second later with no call of the sweep's: its own call.
  clock.advance(1500);
  const r3 = await check.run(signal);
  t.notOk(r3.evidence?.answeredVia, 'nothing shared this sweep: its own call');
  t.equal(own(host.calls), 2);

  // The version is read again after ten minutes even while calls are shared.
  clock.advance(10 * 60_000);
  await Promise.all([showUnitShared(host, 'kubelet', 1000), check.run(signal)]);
  t.equal(own(host.calls), 3, 'its own call once the version is ten minutes old');
});

t.test('a shared call that times out is PID 1 not answering; one that timed out at a shorter bound is not enough', async (t) => {
  const clock = new ManualClock();
  const host = scriptedHost(clock);
  const check = systemdCheck.create({ ...systemdCheck.defaults, timeout: '1s', failures: 1, journal: false, procPath: '/nonexistent' }, { host } as never);
  const signal = new AbortController().signal;
  t.equal((await check.run(signal)).status, 'ok');
  host.hang = true;
  // Same bound as the check's: its timeout counts, no call of its own.
  const [, same] = await Promise.all([showUnitShared(host, 'kubelet', 1000), check.run(signal)]);
  t.match(same, { status: 'problem', reason: 'SystemdUnresponsive', evidence: { unansweredVia: 'systemctl show kubelet' } });
  t.equal(own(host.calls), 1, 'judged from the shared call');
  host.hang = false;
  t.equal((await Promise.all([showUnitShared(host, 'kubelet', 1000), check.run(signal)]))[1].status, 'ok', 'answers again');
  // A shorter bound (500 ms against 1 s): the check makes its own call for the rest.
  host.hang = true;
  const [, shorter] = await Promise.all([showUnitShared(host, 'kubelet', 500), check.run(signal)]);
  t.equal(own(host.calls), 2, 'its own call after the shorter one gave up');
  t.match(shorter, { status: 'problem', reason: 'SystemdUnresponsive' });
  t.notOk(shorter.evidence?.unansweredVia, 'the verdict is its own call\'s');
});
