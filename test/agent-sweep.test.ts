import t from 'tap';
import { pino } from 'pino';
import { Agent } from '../agent/agent.js';
import { resolveConfig } from '../agent/config.js';
import { CHECK_DEFINITIONS } from '../checks/index.js';

function agent(): Agent {
  const checks: Record<string, unknown> = {};
  // Only disk and load: every other registered check off, whatever checks are added later.
  for (const { id } of CHECK_DEFINITIONS) if (id !== 'disk' && id !== 'load') checks[id] = { enabled: false };
  checks.disk = { paths: ['/'] };
  const config = resolveConfig({ checks, stateDir: '/tmp/nodemedic-agent-sweep-test' });
  return new Agent({ config, logger: pino({ level: 'silent' }), serve: false });
}

t.test('a full sweep asked for during a partial one runs every check itself', async (t) => {
  const a = agent();
  await a.start();
  t.teardown(() => a.stop());
  const partial = a.sweep(['disk']);
  const full = a.sweep();
  const [p, f] = await Promise.all([partial, full]);
  t.same(p.map((r) => r.check), ['disk']);
  t.same(f.map((r) => r.check), ['disk', 'load'], 'not the partial sweep\'s results');
  t.ok(a.status().lastSweep, 'the full sweep counted as a sweep');
});

t.test('full sweeps asked for together share one run', async (t) => {
  const a = agent();
  await a.start();
  t.teardown(() => a.stop());
  const [x, y] = await Promise.all([a.sweep(), a.sweep()]);
  t.equal(x, y, 'the very same results');
});
