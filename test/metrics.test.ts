import t from 'tap';
import { AgentMetrics } from '../agent/metrics.js';

t.test('rendering is shared within maxAge, fresh after it', async (t) => {
  const m = new AgentMetrics();
  const obs = (status: 'ok' | 'problem') =>
    m.observe({ check: 'disk', status, reason: 'R', message: 'm', observedAt: '', durationSeconds: 0.001, evidence: {} });
  obs('ok');
  const a = m.render(200);
  const b = m.render(200);
  t.equal(a, b, 'concurrent scrapes share one rendering');
  t.match(await a, /nodemedic_check_status\{check="disk",status="ok"\} 1/);
  obs('problem');
  t.match(await m.render(200), /status="ok"\} 1/, 'within maxAge: the same text');
  await new Promise((r) => setTimeout(r, 250));
  t.match(await m.render(200), /nodemedic_check_status\{check="disk",status="problem"\} 1/, 'after maxAge: fresh');
});

t.test('a check that disappears (reload) loses its series', async (t) => {
  const m = new AgentMetrics();
  m.observe({ check: 'gone', status: 'ok', reason: 'R', message: 'm', observedAt: '', durationSeconds: 0, evidence: {} });
  m.forget('gone');
  t.notMatch(await m.render(0), /check="gone"/);
});
