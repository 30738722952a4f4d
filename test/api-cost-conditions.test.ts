/**
 * Issue 13, Node conditions NPD's way, through the agent's own controller and the real client against
 * the fake API server: a status or reason change is written in the sweep that sees it; a message that
 * changes alone (a latency) is not written; unchanged conditions are re-sent only on the heartbeat
 * (`kubernetes.conditionHeartbeat`, whose range the config enforces).
 */
import { pino } from 'pino';
import t from 'tap';
import { resolveConfig } from '../agent/config.js';
import { systemClock } from '../platform/clock.js';
import { ConditionPublisher, desiredConditions } from '../remediations/kubernetes/conditions.js';
import type { CheckResult } from '../checks/types.js';
import { makeNode } from './fake-apiserver/fixtures.js';
import { agentlet, startCluster } from './fake-apiserver/harness.js';

const SELF = 'worker-1';

function kubelet(status: CheckResult['status'], reason: string, message: string): CheckResult {
  return { check: 'kubelet', status, reason, message, observedAt: new Date().toISOString(), durationSeconds: 0.01, evidence: { healthzLatencyMs: 3 } };
}

t.test('a status or reason change is written in the sweep that sees it; a new message alone is not', async (t) => {
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: SELF }));
  const a = agentlet(c, SELF);
  t.teardown(() => a.controller.stop());
  const writes = (): number => c.fake.requests.filter((r) => r.method === 'PATCH' && r.path === `/api/v1/nodes/${SELF}/status`).length;
  const cond = (type: string) => (c.fake.node(SELF).status.conditions as { type: string; status: string; reason: string; message: string }[]).find((x) => x.type === type);

  await a.controller.afterSweep([kubelet('ok', 'KubeletHealthy', 'kubelet.service is active and healthz answered 200 in 3ms')]);
  t.equal(writes(), 1, 'the first sweep writes the conditions');
  t.match(cond('KubeletUnhealthy'), { status: 'False', reason: 'KubeletIsHealthy', message: 'kubelet: ok (KubeletHealthy)' }, 'the healthy message carries no latency');

  for (const ms of [4, 7, 12, 3]) await a.controller.afterSweep([kubelet('ok', 'KubeletHealthy', `kubelet.service is active and healthz answered 200 in ${ms}ms`)]);
  t.equal(writes(), 1, 'four sweeps with only the latency changing: no write');

  await a.controller.afterSweep([kubelet('problem', 'KubeletHealthzFailed', 'healthz answered 500')]);
  t.equal(writes(), 2, 'a status change: written in that sweep');
  t.match(cond('KubeletUnhealthy'), { status: 'True', reason: 'KubeletHealthzFailed', message: 'kubelet: healthz answered 500' });

  await a.controller.afterSweep([kubelet('problem', 'KubeletHealthzFailed', 'healthz answered 503')]);
  t.equal(writes(), 2, 'same status and reason, another message: no write');
  await a.controller.afterSweep([kubelet('problem', 'KubeletDown', 'kubelet.service is inactive')]);
  t.equal(writes(), 3, 'a reason change: written in that sweep');
  t.match(cond('KubeletUnhealthy'), { status: 'True', reason: 'KubeletDown' });
});

t.test('the heartbeat re-sends unchanged conditions (with the latest message), on a monotonic clock', async (t) => {
  const c = await startCluster(t);
  c.fake.addNode(makeNode({ name: SELF }));
  let mono = 0;
  const p = new ConditionPublisher(c.access.api, SELF, systemClock, pino({ level: 'silent' }), { heartbeatMs: 5 * 60_000, monotonic: () => mono, random: () => 0.5 });
  const want = (msg: string) => desiredConditions([kubelet('problem', 'KubeletDown', msg)], undefined);
  t.equal(await p.publish(want('down 1')), true, 'first: written');
  mono += 4 * 60_000;
  t.equal(await p.publish(want('down 2')), false, '4 minutes later, unchanged: not written');
  mono += 60_000;
  t.equal(await p.publish(want('down 3')), true, '5 minutes: the heartbeat (jittered to 90-100 % of the period) writes');
  const k = (c.fake.node(SELF).status.conditions as { type: string; message: string }[]).find((x) => x.type === 'KubeletUnhealthy');
  t.equal(k?.message, 'kubelet: down 3', 'with the latest message');
  t.equal(p.writes, 2);
});

t.test('kubernetes.conditionHeartbeat: default 5m, 1m to 1h', async (t) => {
  t.equal(resolveConfig({}).kubernetes.conditionHeartbeat, '5m');
  t.equal(resolveConfig({ kubernetes: { conditionHeartbeat: '1h' } }).kubernetes.conditionHeartbeat, '1h');
  t.throws(() => resolveConfig({ kubernetes: { conditionHeartbeat: '15s' } }), { problems: [/kubernetes\.conditionHeartbeat: must be between 1m and 1h, got "15s"/] });
  t.throws(() => resolveConfig({ kubernetes: { conditionHeartbeat: '2h' } }), { problems: [/between 1m and 1h/] });
  t.throws(() => resolveConfig({ kubernetes: { conditionHeartbeat: 'often' } }), { problems: [/kubernetes\.conditionHeartbeat: must be a duration/] });
});
