import t from 'tap';
import { absentDaemonFinding, type UnitQuery } from '../checks/daemon-liveness.js';

const unit = (activeState: string, unitFileState = 'enabled', loadState = 'loaded', subState = ''): UnitQuery => ({
  known: true,
  loadState,
  activeState,
  subState,
  unitFileState,
});
const noSystemd: UnitQuery = { known: false, error: 'System has not been booted with systemd' };
const refused = { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED /run/docker.sock' };
const missing = { code: 'ENOENT', message: 'connect ENOENT /run/docker.sock' };

t.test('the verdict table when nothing answers on the socket', async (t) => {
  const cases: [string, Parameters<typeof absentDaemonFinding>[0]['failure'], UnitQuery | undefined, string, string][] = [
    ['unit active, socket refused', refused, unit('active', 'enabled', 'loaded', 'running'), 'problem', 'DockerDown'],
    ['unit active, socket missing', missing, unit('active'), 'problem', 'DockerDown'],
    ['unit activating, socket missing', missing, unit('activating', 'disabled'), 'problem', 'DockerDown'],
    ['unit failed, socket missing', missing, unit('failed', 'disabled'), 'problem', 'DockerDown'],
    ['unit inactive but enabled', missing, unit('inactive', 'enabled'), 'problem', 'DockerDown'],
    ['unit inactive and disabled, no socket', missing, unit('inactive', 'disabled'), 'unknown', 'NotRunning'],
    ['unit inactive and disabled, stale socket', refused, unit('inactive', 'disabled'), 'unknown', 'NotRunning'],
    ['unit masked', missing, unit('inactive', 'masked', 'masked'), 'unknown', 'NotRunning'],
    ['unit not found, no socket', missing, unit('inactive', '', 'not-found'), 'unknown', 'NotInstalled'],
    ['unit not found, stale socket', refused, unit('inactive', '', 'not-found'), 'problem', 'DockerDown'],
    ['no systemd, no socket', missing, noSystemd, 'unknown', 'NotInstalled'],
    ['no systemd, stale socket', refused, noSystemd, 'problem', 'DockerDown'],
    ['permission denied', { code: 'EACCES', message: 'connect EACCES /run/docker.sock' }, undefined, 'unknown', 'SocketError'],
  ];
  for (const [name, failure, unitQuery, status, reason] of cases) {
    const f = absentDaemonFinding({ label: 'Docker', socket: '/run/docker.sock', unit: 'docker', failure, ...(unitQuery ? { unitQuery } : {}) });
    t.equal(`${f.status} ${f.reason}`, `${status} ${reason}`, `${name}: ${f.message}`);
    t.equal(f.evidence?.socketError, failure.code, `${name}: evidence names the socket error`);
  }
});

t.test('the evidence carries the unit state or why it is unknown', async (t) => {
  const f = absentDaemonFinding({ label: 'Containerd', socket: '/run/containerd/containerd.sock', unit: 'containerd', failure: refused, unitQuery: unit('failed', 'enabled', 'loaded', 'failed') });
  t.match(f, { status: 'problem', reason: 'ContainerdDown', evidence: { unitActiveState: 'failed', unitSubState: 'failed', unitFileState: 'enabled' } });
  t.match(f.message, /containerd is failed \(failed\)/);
  const g = absentDaemonFinding({ label: 'Containerd', socket: '/s', unit: 'containerd', failure: missing, unitQuery: noSystemd });
  t.match(g.evidence, { unitError: /systemd/ });
});
