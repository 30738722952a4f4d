/**
 * The reboot itself, for real but contained: the drain-reboot's `systemctl reboot` goes through the
 * host command prefix into a test systemd (PID 1 of its own namespace), which reboots, ending only the
 * namespace. The machine running the test is never touched.
 */
import t from 'tap';
import { pino } from 'pino';
import { systemClock } from '../platform/clock.js';
import { RealHost, type Host } from '../platform/host.js';
import { DrainRebootController } from '../remediations/kubernetes/rebooter.js';
import { makeNode, makePod } from './fake-apiserver/fixtures.js';
import { nodeConfig, startCluster } from './fake-apiserver/harness.js';
import { requireSystemdNs, startSystemdNs } from './harness/systemd-ns.js';

const SELF = 'worker-1';

t.test('systemctl reboot through hostCommandPrefix reboots the test systemd, and only it', async (t) => {
  if (!(await requireSystemdNs(t))) return;
  const c = await startCluster(t, { msPerGraceSecond: 10 });
  for (const n of [SELF, 'worker-2']) c.fake.addNode(makeNode({ name: n }));
  c.fake.addPod(makePod({ name: 'web-0', node: SELF }));
  const ns = await startSystemdNs({ t, name: 'k8s-reboot', units: { 'kubelet.service': '[Service]\nExecStart=/bin/sleep infinity\n' } });
  // The safety of this test rests on the prefix: it must lead into the namespace, never to this machine.
  t.same(ns.prefix.slice(0, 3), ['nsenter', '-t', String(ns.pid)], 'the prefix enters the test namespace');
  const real = new RealHost({ commandPrefix: ns.prefix });
  const commands: string[][] = [];
  const host: Host = {
    clock: real.clock,
    run: (argv, opts) => {
      if (opts.onHost === false) throw new Error(`refusing a command outside the namespace: ${argv.join(' ')}`);
      commands.push([...argv]);
      return real.run(argv, opts);
    },
    spawnLines: () => {
      throw new Error('not used');
    },
    readFile: (p, max) => real.readFile(p, max),
    statfs: (p) => real.statfs(p),
  };
  const config = nodeConfig(c, SELF);
  const controller = new DrainRebootController({ config, host, logger: pino({ level: 'silent' }), clock: systemClock, recordAction: () => {}, kube: c.access });
  t.teardown(() => controller.stop());
  t.ok(ns.running());
  const r = await controller.run({ episodeId: 'ns', reason: 'reboot test', dryRun: false });
  t.equal(r.result, 'success', r.detail);
  t.same(commands, [['systemctl', 'reboot']]);
  const end = await Promise.race([ns.exited, new Promise<undefined>((res) => setTimeout(() => res(undefined), 20_000))]);
  t.equal(end?.how, 'reboot', 'the namespace rebooted');
  t.notOk(ns.running());
  t.equal(c.fake.node(SELF).spec.unschedulable, true, 'the node stays cordoned through the reboot');
});
