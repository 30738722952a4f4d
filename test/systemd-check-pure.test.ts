// The systemd check's pure parts: /proc parsing, runc ages, the known-bug verdict, failure counting.
import t from 'tap';
import { countFailures, probeOutcome } from '../checks/systemd.js';
import { bugVerdict, isRuncComm, parseProcStat, stuckRuncFrom, symptomLines } from '../checks/systemd-pid1.js';

const stat = (pid: number, comm: string, state: string, start: number): string =>
  `${pid} (${comm}) ${state} 1 ${pid} ${pid} 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${start} 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0`;

t.test('parseProcStat reads the name between the first ( and the last ), state and start time', async (t) => {
  t.same(parseProcStat(stat(42, 'runc:[2:INIT]', 'S', 12345)), { pid: 42, comm: 'runc:[2:INIT]', state: 'S', startTicks: 12345 });
  t.same(parseProcStat(stat(7, 'a) (b', 'D', 9)), { pid: 7, comm: 'a) (b', state: 'D', startTicks: 9 });
  t.equal(parseProcStat('garbage'), undefined);
  t.equal(parseProcStat('12 (x) S 1'), undefined, 'too short: no start time');
});

t.test('runc names as the kernel shows them', async (t) => {
  for (const c of ['runc', 'runc:[2:INIT]', 'runc:[1:CHILD]', 'docker-runc', 'docker-runc-cur']) t.ok(isRuncComm(c), c);
  for (const c of ['runcx', 'crun', 'containerd-shim', 'dockerd', 'sleep']) t.notOk(isRuncComm(c), c);
});

t.test('stuck runc: older than the threshold, oldest first', async (t) => {
  const procs = [stat(1, 'systemd', 'S', 0), stat(10, 'runc', 'S', 100_000), stat(11, 'runc:[2:INIT]', 'D', 50_000), stat(12, 'runc', 'S', 199_950)].map((l) => parseProcStat(l)!);
  // uptime 2000 s: ages 1000 s, 1500 s, 0.5 s
  const s = stuckRuncFrom(procs, 2000, 600);
  t.same(s.pids, [11, 10]);
  t.equal(s.count, 2);
  t.equal(s.oldestSeconds, 1500);
  t.same(s.sample[0], { pid: 11, comm: 'runc:[2:INIT]', state: 'D', ageSeconds: 1500 });
  t.same(stuckRuncFrom(procs, 2000, 5000), { count: 0, olderThanSeconds: 5000, oldestSeconds: 0, sample: [], pids: [] });
});

t.test('bug verdict: el7 below 219-65 is affected, above fixed; upstream below 242 affected; bare 219 unknown', async (t) => {
  t.equal(bugVerdict({ rpm: 'systemd-219-42.el7_4.4.x86_64' }).status, 'affected');
  t.equal(bugVerdict({ rpm: 'systemd-219-62.el7_6.5.x86_64' }).status, 'affected');
  t.equal(bugVerdict({ rpm: 'systemd-219-65.el7.x86_64' }).status, 'fixed');
  t.equal(bugVerdict({ rpm: 'systemd-219-78.el7_9.7.x86_64' }).status, 'fixed');
  t.equal(bugVerdict({ version: '219' }).status, 'unknown', 'el7 PID 1 says 219 only');
  t.equal(bugVerdict({ rpm: 'systemd-219-62.el7.x86_64', version: '219' }).status, 'affected', 'rpm wins over the bare number');
  t.equal(bugVerdict({ version: '239' }).status, 'affected');
  t.equal(bugVerdict({ version: '252.38-1~deb12u1' }).status, 'fixed');
  t.equal(bugVerdict({}).status, 'unknown');
  t.equal(bugVerdict({ version: 'x' }).status, 'unknown');
});

t.test('failures count only timeouts, and an answer resets them', async (t) => {
  t.equal(countFailures(0, { kind: 'timeout', ms: 1 }), 1);
  t.equal(countFailures(1, { kind: 'timeout', ms: 1 }), 2);
  t.equal(countFailures(2, { kind: 'failed', why: 'x' }), 2, 'a fast failure says nothing about a hang');
  t.equal(countFailures(2, { kind: 'answered', version: '252', ms: 1 }), 0);
});

t.test('probeOutcome: timeout(1) exits, a missing tool, an answer', async (t) => {
  const r = (o: Partial<Parameters<typeof probeOutcome>[0]>) => ({ argv: ['timeout'], exitCode: 0, stdout: '', stderr: '', timedOut: false, notFound: false, outputCapped: false, ...o });
  t.match(probeOutcome(r({ exitCode: 124 }), 5), { kind: 'timeout' });
  t.match(probeOutcome(r({ exitCode: 137 }), 5), { kind: 'timeout' });
  t.match(probeOutcome(r({ exitCode: undefined, timedOut: true }), 5), { kind: 'timeout' });
  t.match(probeOutcome(r({ exitCode: 127, stderr: 'timeout: failed to run command ‘systemctl’: No such file or directory\n' }), 5), { kind: 'missing', why: /No such file/ });
  t.match(probeOutcome(r({ stdout: 'Version=252.38-1~deb12u1\n' }), 5), { kind: 'answered', version: '252.38-1~deb12u1' });
  t.match(probeOutcome(r({ exitCode: 1, stderr: 'System has not been booted with systemd as init system (PID 1). Can\'t operate.\n' }), 5), { kind: 'failed', why: /not been booted/ });
});

t.test('symptom lines from the journal', async (t) => {
  const text = [
    '2026-12-05T10:00:00+0000 node kubelet[1]: I1205 ok',
    '2026-12-05T10:00:01+0000 node dockerd[2]: Error response from daemon: oci runtime error: container_linux.go:247: starting container process caused "process_linux.go:258: applying cgroup configuration for process caused \\"Failed to start transient scope unit: Connection timed out\\""',
    '2026-12-05T10:00:02+0000 node kubelet[1]: fine',
  ].join('\n');
  const l = symptomLines(text);
  t.equal(l.length, 1);
  t.match(l[0], /Failed to start transient scope unit/);
});
