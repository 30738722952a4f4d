// The ladder's decisions about `reexec-systemd` (issue 15), pure: when PID 1 is the cause the episode
// walks from reexec-systemd (no kubelet or runtime restart), otherwise it never sees the step; its own
// daily budget; dry-run; insertion when PID 1 turns out to be the cause mid-episode; a crash mid-step.
import t from 'tap';
import { testPolicy } from './helpers/ladder-policy.js';
import type { CheckResult, CheckStatus } from '../checks/types.js';
import { applyOutcome, decide, emptyState, judgeInterrupted, pid1Cause, type Decision, type LadderPolicy } from '../remediations/decide.js';
import { parseState } from '../remediations/state.js';
import type { LadderState, UnitFacts } from '../remediations/types.js';

const MIN = 60_000;
const T0 = Date.parse('2026-12-05T10:00:00Z');

const policy = (over: Partial<LadderPolicy> = {}): LadderPolicy => testPolicy({ reexecsPerDay: 2, ...over });

type Spec = [CheckStatus, string?, Record<string, unknown>?];
function sweep(at: number, over: Record<string, Spec> = {}): CheckResult[] {
  const base: Record<string, Spec> = {
    pleg: ['ok'],
    kubelet: ['ok'],
    docker: ['ok', 'DockerHealthy', { liveRestoreEnabled: true }],
    containerd: ['unknown', 'NotInstalled'],
    systemd: ['ok', 'SystemdResponsive', { stuckRunc: { count: 0 }, version: '219' }],
    ...over,
  };
  return Object.entries(base).map(([check, [status, reason, evidence]]) => ({
    check,
    status,
    reason: reason ?? (status === 'problem' ? `${check}Broken` : 'Healthy'),
    message: `${check} ${status}`,
    observedAt: new Date(at).toISOString(),
    durationSeconds: 0.01,
    evidence: evidence ?? {},
  }));
}

const HUNG: Record<string, Spec> = { systemd: ['problem', 'SystemdUnresponsive', { stuckRunc: { count: 4 } }], kubelet: ['unknown', 'CommandTimeout'] };
const oldUnit: UnitFacts = { loadState: 'loaded', activeState: 'active', lastStartMs: T0 - 86_400_000 };

class Sim {
  state: LadderState = emptyState();
  now = T0;
  constructor(public p = policy()) {}
  tick(over: Record<string, Spec> = {}): Decision {
    const results = sweep(this.now, over);
    const units: Record<string, UnitFacts> = {};
    for (;;) {
      const d = decide(this.state, { results, units }, this.now, this.p);
      if (d.next.kind !== 'need') {
        this.state = d.state;
        return d;
      }
      for (const u of d.next.units) units[u] = oldUnit;
    }
  }
  complete(d: Decision, result: 'success' | 'failure' | 'dry_run' = 'success'): void {
    if (d.next.kind !== 'act') throw new Error(`expected act, got ${JSON.stringify(d.next)}`);
    this.state = applyOutcome(this.state, d.next.action.id, { result, detail: 'done', at: this.now }, this.p);
  }
  /** Problem for grace, then the episode's first decision. */
  start(over: Record<string, Spec>): Decision {
    this.tick(over);
    this.now += this.p.graceMs;
    return this.tick(over);
  }
}

const acted = (d: Decision) => (d.next.kind === 'act' ? `${d.next.action.step}:${d.next.action.action}` : d.next.kind);

t.test('PID 1 unresponsive: the episode starts at reexec-systemd, not a kubelet restart', async (t) => {
  const sim = new Sim();
  const d = sim.start(HUNG);
  t.equal(acted(d), 'reexec-systemd:reexec_systemd');
  t.same(sim.state.episode?.ladder, ['reexec-systemd', 'drain-reboot']);
  t.equal(sim.state.episode?.trigger, 'systemd');
  t.equal(sim.state.budgets.reexecs?.length, 1, 'enforce consumes the reexec budget');
  t.same(sim.state.budgets.restarts, {}, 'no restart budget used');
  sim.complete(d);
  sim.now += 2 * MIN;
  const r = sim.tick();
  t.equal(r.next.kind, 'none');
  t.match(sim.state.episode, { state: 'recovered', endReason: /systemd ok after reexec-systemd/ });
});

t.test('still unresponsive after the reexec: the reboot is the next (and last) step', async (t) => {
  const sim = new Sim();
  sim.complete(sim.start(HUNG), 'failure');
  sim.now += 2 * MIN;
  const d = sim.tick(HUNG);
  t.equal(acted(d), 'drain-reboot:reboot');
});

t.test('PLEG with stuck runc on an affected systemd is PID 1 too; on a fixed one it is not', async (t) => {
  const affected: Record<string, Spec> = { pleg: ['problem', 'PLEGUnhealthy'], systemd: ['ok', 'SystemdResponsive', { stuckRunc: { count: 3 }, bug: { status: 'affected' } }] };
  t.match(pid1Cause(sweep(T0, affected)), /3 stuck runc/);
  const sim = new Sim();
  t.equal(acted(sim.start(affected)), 'reexec-systemd:reexec_systemd');

  const fixed: Record<string, Spec> = { pleg: ['problem', 'PLEGUnhealthy'], systemd: ['ok', 'SystemdResponsive', { stuckRunc: { count: 3 }, bug: { status: 'fixed' } }] };
  t.equal(pid1Cause(sweep(T0, fixed)), null);
  const sim2 = new Sim();
  t.equal(acted(sim2.start(fixed)), 'restart-kubelet:restart_kubelet');
  t.same(sim2.state.episode?.ladder, ['restart-kubelet', 'restart-runtime', 'drain-reboot'], 'other causes never see the step');
});

t.test('PID 1 becomes the cause mid-episode: reexec-systemd goes before the next step', async (t) => {
  const sim = new Sim();
  const PLEG: Record<string, Spec> = { pleg: ['problem', 'PLEGUnhealthy'] };
  const d1 = sim.start(PLEG);
  t.equal(acted(d1), 'restart-kubelet:restart_kubelet');
  sim.complete(d1);
  sim.now += 2 * MIN;
  const d2 = sim.tick({ ...PLEG, ...HUNG });
  t.equal(acted(d2), 'reexec-systemd:reexec_systemd');
  t.same(sim.state.episode?.ladder, ['restart-kubelet', 'reexec-systemd', 'restart-runtime', 'drain-reboot']);
  t.match(d2.log.events.join('\n'), /reexec-systemd added before restart-runtime/);
});

t.test('own budget per day: spent -> skipped and recorded, the ladder moves on', async (t) => {
  const sim = new Sim(policy({ reexecsPerDay: 1 }));
  sim.state.budgets.reexecs = [T0 - 3_600_000];
  const d = sim.start(HUNG);
  t.equal(acted(d), 'drain-reboot:reboot');
  t.match(sim.state.actions[0], { step: 'reexec-systemd', action: 'reexec_systemd', outcome: { result: 'skipped', detail: /budget spent: 1 of 1 re-executions of systemd in the last 24h/ } });
  // A day later the budget is back.
  const sim2 = new Sim(policy({ reexecsPerDay: 1 }));
  sim2.state.budgets.reexecs = [T0 - 25 * 3_600_000];
  t.equal(acted(sim2.start(HUNG)), 'reexec-systemd:reexec_systemd');
  t.same(sim2.state.budgets.reexecs, [T0 + MIN], 'the old entry is pruned');
});

t.test('dry-run decides the same step and consumes no budget', async (t) => {
  const sim = new Sim(policy({ mode: 'dry-run' }));
  const d = sim.start(HUNG);
  t.equal(acted(d), 'reexec-systemd:reexec_systemd');
  t.equal(d.next.kind === 'act' && d.next.action.mode, 'dry-run');
  t.same(sim.state.budgets.reexecs ?? [], []);
});

t.test('a ladder configured without reexec-systemd keeps its steps', async (t) => {
  const sim = new Sim(policy({ steps: ['restart-kubelet', 'drain-reboot'] }));
  t.equal(acted(sim.start(HUNG)), 'restart-kubelet:restart_kubelet');
});

t.test('a reexec interrupted by a crash is judged failed, never repeated', async (t) => {
  const o = judgeInterrupted({ id: 'e/1', episodeId: 'e', step: 'reexec-systemd', action: 'reexec_systemd', mode: 'enforce', intentAt: T0, reason: 'x' }, undefined, 'b', T0 + 1);
  t.match(o, { result: 'failure', inferred: true, detail: /not repeated/ });
});

t.test('the state file keeps the reexec budget and action', async (t) => {
  const sim = new Sim();
  sim.start(HUNG);
  const back = parseState(JSON.stringify(sim.state));
  t.same(back.budgets.reexecs, sim.state.budgets.reexecs);
  t.equal(back.actions[0]?.action, 'reexec_systemd');
  const old = JSON.parse(JSON.stringify(emptyState())) as LadderState;
  delete old.budgets.reexecs;
  t.same(parseState(JSON.stringify(old)).budgets.reexecs, undefined, 'older state files without it still load');
});
