import t from 'tap';
import { pino } from 'pino';
import { RealHost, type Host } from '../platform/host.js';
import { loadCheck, parseLoadavg, parsePressure } from '../checks/load.js';

t.test('parses /proc/loadavg and PSI files', async (t) => {
  t.same(parseLoadavg('0.24 0.30 0.41 2/187 12345\n'), { load1: 0.24, load5: 0.3, load15: 0.41, runnable: 2, total: 187 });
  t.throws(() => parseLoadavg('garbage'), /unexpected \/proc\/loadavg/);
  t.same(parsePressure('some avg10=1.78 avg60=1.33 avg300=2.38 total=17760506\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n'), {
    some: { avg10: 1.78, avg60: 1.33, avg300: 2.38 },
    full: { avg10: 0, avg60: 0, avg300: 0 },
  });
  t.throws(() => parsePressure(''), /unexpected pressure/);
});

function hostWithLoad(loadavg: string): Host {
  const real = new RealHost();
  return Object.assign(Object.create(real) as Host, {
    readFile: (p: string, n?: number) => (p === '/proc/loadavg' ? Promise.resolve(loadavg) : real.readFile(p, n)),
  });
}

t.test('per-CPU load against the threshold, with PSI as evidence', async (t) => {
  const logger = pino({ level: 'silent' });
  const check = (l: string, max = 3) => loadCheck.create({ enabled: true, maxLoadPerCpu: max }, { host: hostWithLoad(l), logger, nodeName: 'n' });
  const real = await check('0.10 0.10 0.10 1/100 1').run(new AbortController().signal);
  t.equal(real.status, 'ok');
  const cpus = (real.evidence as { cpus: number }).cpus;
  t.ok(cpus >= 1, `counts ${cpus} CPUs`);
  const high = await check(`${cpus * 3 + 1} 1 1 9/100 1`).run(new AbortController().signal);
  t.equal(high.status, 'problem');
  t.equal(high.reason, 'LoadHigh');
  const bad = await check('nonsense').run(new AbortController().signal);
  t.equal(bad.status, 'unknown');
  t.equal(bad.reason, 'LoadUnreadable');
  const live = await loadCheck.create({ enabled: true, maxLoadPerCpu: 1000 }, { host: new RealHost(), logger, nodeName: 'n' }).run(new AbortController().signal);
  t.equal(live.status, 'ok', 'the real machine reads');
  t.ok((live.evidence as { pressure?: unknown }).pressure, 'PSI present on this kernel');
});
