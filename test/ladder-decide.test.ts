// The ladder's decision function, path by path, with an injected clock. Pure: no I/O anywhere here.
import t from 'tap';
import { ManualClock } from '../platform/clock.js';
import type { CheckResult, CheckStatus } from '../checks/types.js';
import { remediationDefaults, remediationProblems } from '../remediations/config.js';
import {
  applyOutcome,
  chooseRuntime,
  decide,
  emptyState,
  judgeInterrupted,
  MAX_ACTIONS,
  type Decision,
  type LadderPolicy,
  type Observed,
} from '../remediations/decide.js';
import type { ActionRecord, LadderState, UnitFacts } from '../remediations/types.js';
import { testPolicy } from './helpers/ladder-policy.js';

const S = 1000;
const MIN = 60 * S;
const HOUR = 60 * MIN;
const T0 = Date.parse('2026-11-27T10:00:00Z');

const policy = testPolicy;

function res(check: string, status: CheckStatus, at: number, reason?: string, evidence: Record<string, unknown> = {}): CheckResult {
  return {
    check,
    status,
    reason: reason ?? (status === 'ok' ? 'Healthy' : status === 'problem' ? `${check}Broken` : 'CheckTimeout'),
    message: `${check} is ${status}`,
    observedAt: new Date(at).toISOString(),
    durationSeconds: 0.01,
    evidence,
  };
}

type Statuses = Partial<Record<'pleg' | 'kubelet' | 'docker' | 'containerd' | 'disk' | 'load' | 'systemd-version', CheckStatus | [CheckStatus, string]>>;

/** A full sweep at `at`: everything ok on a docker node with live-restore, except `over`. */
function sweep(at: number, over: Statuses = {}, dockerEvidence: Record<string, unknown> = { liveRestoreEnabled: true }): CheckResult[] {
  const base: Statuses = { disk: 'ok', load: 'ok', pleg: 'ok', kubelet: 'ok', docker: 'ok', containerd: ['unknown', 'NotInstalled'], 'systemd-version': 'ok', ...over };
  return Object.entries(base).map(([check, v]) => {
    const [status, reason] = Array.isArray(v) ? v : [v!, undefined];
    return res(check, status, at, reason, check === 'docker' ? dockerEvidence : {});
  });
}

const oldUnit = (): UnitFacts => ({ loadState: 'loaded', activeState: 'active', lastStartMs: T0 - 24 * HOUR });
const UNITS = { kubelet: oldUnit(), docker: oldUnit(), containerd: oldUnit() };

/**
 * Drives decide() like the remediator does: answers `need` from `units`, keeps the state, and
 * completes actions with the outcome the test gives. The clock is the one the test moves.
 */
class Sim {
  state: LadderState = emptyState();
  readonly clock = new ManualClock(T0);
  units: Record<string, UnitFacts | { error: string }> = { ...UNITS };
  asked: string[] = [];
  constructor(public p: LadderPolicy = policy()) {}
  decide(results: CheckResult[]): Decision {
    const known: Record<string, UnitFacts | { error: string }> = {};
    for (;;) {
      const obs: Observed = { results, units: known };
      const d = decide(this.state, obs, this.clock.now(), this.p);
      if (d.next.kind !== 'need') {
        this.state = d.state;
        return d;
      }
      for (const u of d.next.units) {
        this.asked.push(u);
        known[u] = this.units[u] ?? { error: `no such unit ${u}` };
      }
    }
  }
  /** One sweep now with these statuses. */
  tick(over: Statuses = {}, dockerEvidence?: Record<string, unknown>): Decision {
    return this.decide(sweep(this.clock.now(), over, dockerEvidence));
  }
  complete(d: Decision, result: 'success' | 'failure' | 'dry_run' | 'skipped' = 'success', detail = 'done'): void {
    if (d.next.kind !== 'act') throw new Error(`expected an action, got ${d.next.kind}`);
    this.state = applyOutcome(this.state, d.next.action.id, { result, detail, at: this.clock.now() }, this.p);
  }
  advance(ms: number): void {
    this.clock.advance(ms);
  }
  get actions(): ActionRecord[] {
    return this.state.actions;
  }
}

function act(d: Decision): ActionRecord {
  if (d.next.kind !== 'act') throw new Error(`expected act, got ${JSON.stringify(d.next)}`);
  return d.next.action;
}

type Tap = typeof t;
const PLEG_BAD: Statuses = { pleg: 'problem' };

/** A sim whose pleg trigger has been a problem for exactly grace, so the next tick starts an episode. */
function simAtEpisodeStart(p = policy(), over: Statuses = PLEG_BAD, dockerEvidence?: Record<string, unknown>): Sim {
  const sim = new Sim(p);
  t.equal(sim.tick(over, dockerEvidence).next.kind, p.mode === 'off' ? 'none' : p.graceMs > 0 ? 'wait' : 'act');
  sim.advance(p.graceMs);
  return sim;
}

t.test('table: single decisions', async (t) => {
  type Case = {
    name: string;
    setup: () => Sim;
    over?: Statuses;
    evidence?: Record<string, unknown>;
    expect: (t: Tap, d: Decision, sim: Sim) => void;
  };
  const cases: Case[] = [
    {
      name: 'all triggers ok: nothing to do, no episode',
      setup: () => new Sim(),
      expect: (t, d, sim) => {
        t.match(d.next, { kind: 'none' });
        t.equal(sim.state.episode, null);
        t.equal(d.log.level, 'debug');
      },
    },
    {
      name: 'a trigger in problem for less than grace: wait until grace ends',
      setup: () => {
        const sim = new Sim();
        sim.tick(PLEG_BAD);
        sim.advance(30 * S);
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.same(d.next, { kind: 'wait', until: T0 + MIN, why: 'pleg in problem for less than grace' });
        t.equal(sim.state.episode, null);
        t.equal(sim.state.problemSince.pleg, T0);
      },
    },
    {
      name: 'a trigger in problem for grace: episode starts and restarts kubelet first',
      setup: () => simAtEpisodeStart(),
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        const a = act(d);
        t.match(a, { step: 'restart-kubelet', action: 'restart_kubelet', unit: 'kubelet', mode: 'enforce', intentAt: T0 + MIN });
        t.notOk(a.outcome, 'intent only: no outcome before the action is carried out');
        t.match(sim.state.episode, { trigger: 'pleg', state: 'active', phase: 'acting', stepIndex: 0, startedAt: T0 + MIN, id: '20261127T100100Z-1' });
        t.same(sim.state.budgets.restarts.kubelet, [T0 + MIN], 'budget consumed at intent');
        t.equal(d.log.episodeId, '20261127T100100Z-1');
        t.match(d.log.events[0], /episode 20261127T100100Z-1 started: pleg/);
        t.same(sim.asked, ['kubelet'], 'asked systemd about kubelet only');
      },
    },
    {
      name: 'unknown never starts an episode, however long it lasts',
      setup: () => {
        const sim = new Sim();
        sim.tick({ kubelet: 'unknown', pleg: 'unknown' });
        sim.advance(10 * HOUR);
        return sim;
      },
      over: { kubelet: 'unknown', pleg: 'unknown' },
      expect: (t, d, sim) => {
        t.match(d.next, { kind: 'none' });
        t.equal(sim.state.episode, null);
        t.same(sim.state.problemSince, {});
      },
    },
    {
      name: 'disk, load and systemd-version never trigger, even when listed as triggers',
      setup: () => {
        const sim = new Sim(policy({ triggers: [...remediationDefaults.triggers, 'disk', 'load', 'systemd-version'] }));
        sim.tick({ disk: 'problem', load: 'problem', 'systemd-version': 'problem' });
        sim.advance(HOUR);
        return sim;
      },
      over: { disk: 'problem', load: 'problem', 'systemd-version': 'problem' },
      expect: (t, d, sim) => {
        t.match(d.next, { kind: 'none' });
        t.equal(sim.state.episode, null);
      },
    },
    {
      name: 'a trigger that is not configured never starts an episode',
      setup: () => {
        const sim = new Sim(policy({ triggers: ['kubelet'] }));
        sim.tick(PLEG_BAD);
        sim.advance(HOUR);
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d) => t.match(d.next, { kind: 'none' }),
    },
    {
      name: 'unknown in between does not reset the grace period',
      setup: () => {
        const sim = new Sim();
        sim.tick(PLEG_BAD);
        sim.advance(40 * S);
        sim.tick({ pleg: 'unknown' });
        sim.advance(20 * S);
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d) => t.match(act(d), { action: 'restart_kubelet' }),
    },
    {
      name: 'ok in between resets the grace period',
      setup: () => {
        const sim = new Sim();
        sim.tick(PLEG_BAD);
        sim.advance(40 * S);
        sim.tick();
        sim.advance(20 * S);
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d) => t.match(d.next, { kind: 'wait', until: T0 + 60 * S + MIN }),
    },
    {
      name: 'grace 0: the first problem starts the episode',
      setup: () => new Sim(policy({ graceMs: 0 })),
      over: PLEG_BAD,
      expect: (t, d) => t.match(act(d), { action: 'restart_kubelet' }),
    },
    {
      name: 'firstStep per trigger: docker starts at restart-runtime',
      setup: () => simAtEpisodeStart(policy({ firstStep: { docker: 'restart-runtime' } }), { docker: 'problem' }),
      over: { docker: 'problem' },
      expect: (t, d, sim) => {
        t.match(act(d), { step: 'restart-runtime', action: 'restart_docker', unit: 'docker' });
        t.same(sim.state.episode?.ladder, ['restart-runtime', 'drain-reboot']);
      },
    },
    {
      name: 'two triggers due at once: the least disruptive first step wins',
      setup: () => simAtEpisodeStart(policy({ firstStep: { docker: 'restart-runtime' } }), { docker: 'problem', pleg: 'problem' }),
      over: { docker: 'problem', pleg: 'problem' },
      expect: (t, d, sim) => {
        t.match(act(d), { step: 'restart-kubelet' });
        t.match(sim.state.episode, { trigger: 'pleg', triggers: ['pleg', 'docker'] });
      },
    },
    {
      name: 'configurable order: runtime before kubelet',
      setup: () => simAtEpisodeStart(policy({ steps: ['restart-runtime', 'restart-kubelet', 'drain-reboot'] })),
      over: PLEG_BAD,
      expect: (t, d) => t.match(act(d), { step: 'restart-runtime', action: 'restart_docker' }),
    },
    {
      name: 'a ladder without restarts goes straight to drain-reboot',
      setup: () => simAtEpisodeStart(policy({ steps: ['drain-reboot'] })),
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.match(act(d), { step: 'drain-reboot', action: 'reboot' });
        t.same(sim.state.budgets.reboots, [], 'the reboot budget is spent when the reboot is issued, not when it is asked for');
        t.same(sim.asked, [], 'a reboot needs no unit facts');
      },
    },
    {
      name: 'kubelet restart budget spent: skipped and recorded, the runtime step follows',
      setup: () => {
        const sim = simAtEpisodeStart(policy({ restartsPerHour: 2 }));
        sim.state.budgets.restarts.kubelet = [T0 - 50 * MIN, T0 - 10 * MIN];
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.match(act(d), { step: 'restart-runtime', action: 'restart_docker' });
        t.equal(d.recorded.length, 1);
        t.match(d.recorded[0], { step: 'restart-kubelet', action: 'restart_kubelet', outcome: { result: 'skipped', detail: /budget spent: 2 of 2 restarts of kubelet/ } });
        t.same(sim.asked, ['docker'], 'no systemd query for a step whose budget is spent');
      },
    },
    {
      name: 'budget window rolls: restarts older than an hour no longer count',
      setup: () => {
        const sim = simAtEpisodeStart(policy({ restartsPerHour: 2 }));
        sim.state.budgets.restarts.kubelet = [T0 - 61 * MIN, T0 - 10 * MIN];
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.match(act(d), { action: 'restart_kubelet' });
        t.same(sim.state.budgets.restarts.kubelet, [T0 - 10 * MIN, T0 + MIN], 'pruned and consumed');
      },
    },
    {
      name: 'restartsPerHour 0: restarts always skipped',
      setup: () => simAtEpisodeStart(policy({ restartsPerHour: 0 })),
      over: PLEG_BAD,
      expect: (t, d) => {
        t.match(act(d), { action: 'reboot' });
        t.same(d.recorded.map((r) => r.action), ['restart_kubelet', 'restart_docker']);
      },
    },
    {
      name: 'reboot budget spent: every step skipped, episode exhausted at once',
      setup: () => {
        const sim = simAtEpisodeStart(policy({ restartsPerHour: 0 }));
        sim.state.budgets.reboots = [T0 - 23 * HOUR];
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.match(d.next, { kind: 'none', why: 'exhausted' });
        t.match(d.recorded.at(-1), { action: 'reboot', outcome: { result: 'skipped', detail: /1 of 1 reboot requests used/ } });
        t.match(sim.state.episode, { state: 'exhausted' });
        t.match(sim.state.latch, { triggers: ['pleg'] });
        t.equal(d.log.level, 'warn');
        t.ok(d.log.episodeId, 'the exhausting decision still names its episode');
      },
    },
    {
      name: 'reboot budget: a request older than a day no longer counts',
      setup: () => {
        const sim = simAtEpisodeStart(policy({ steps: ['drain-reboot'] }));
        sim.state.budgets.reboots = [T0 - 25 * HOUR];
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d) => t.match(act(d), { action: 'reboot' }),
    },
    {
      name: 'after a corrupt state: no reboot request before noRebootBefore',
      setup: () => {
        const sim = simAtEpisodeStart(policy({ steps: ['drain-reboot'] }));
        sim.state.budgets.noRebootBefore = T0 + 24 * HOUR;
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d) => t.match(d.recorded[0], { outcome: { result: 'skipped', detail: /no reboot request before 2026-11-28T10:00:00.000Z/ } }),
    },
    {
      name: "kubelet's state cannot be read: not restarted blind (skipped)",
      setup: () => {
        const sim = simAtEpisodeStart();
        sim.units.kubelet = { error: 'systemctl show kubelet timed out after 10s' };
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d) => {
        t.match(d.recorded[0], { action: 'restart_kubelet', outcome: { result: 'skipped', detail: /cannot read the state of kubelet \(systemctl show kubelet timed out/ } });
        t.match(act(d), { action: 'restart_docker' });
      },
    },
    {
      name: 'kubelet unit not found: skipped',
      setup: () => {
        const sim = simAtEpisodeStart();
        sim.units.kubelet = { loadState: 'not-found', activeState: 'inactive', lastStartMs: null };
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d) => t.match(d.recorded[0], { outcome: { result: 'skipped', detail: 'unit kubelet is not-found' } }),
    },
    {
      name: 'kubelet started less than settle ago (systemd Restart=): deferred until it has been up for settle',
      setup: () => {
        const sim = simAtEpisodeStart();
        sim.units.kubelet = { loadState: 'loaded', activeState: 'active', lastStartMs: T0 + 30 * S };
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.same(d.next, { kind: 'wait', until: T0 + 30 * S + 2 * MIN, why: d.next.kind === 'wait' ? d.next.why : '' });
        t.match(sim.state.episode, { phase: 'deferred', deferred: 'restart-kubelet', stepIndex: 0 });
        t.equal(sim.actions.length, 0, 'nothing recorded for a deferral');
      },
    },
    {
      name: 'docker reports LiveRestoreEnabled false: runtime step skipped, reboot next',
      setup: () => {
        const sim = simAtEpisodeStart(policy({ firstStep: { docker: 'restart-runtime' } }), { docker: 'problem' });
        return sim;
      },
      over: { docker: 'problem' },
      evidence: { liveRestoreEnabled: false },
      expect: (t, d) => {
        t.match(d.recorded[0], { step: 'restart-runtime', action: 'restart_docker', outcome: { result: 'skipped', detail: /LiveRestoreEnabled: false; restarting it would kill every container/ } });
        t.match(act(d), { action: 'reboot' });
      },
    },
    {
      name: 'live-restore off but allowRuntimeRestartWithoutLiveRestore: docker restarted',
      setup: () => simAtEpisodeStart(policy({ firstStep: { docker: 'restart-runtime' }, allowRuntimeRestartWithoutLiveRestore: true }), { docker: 'problem' }),
      over: { docker: 'problem' },
      evidence: { liveRestoreEnabled: false },
      expect: (t, d) => t.match(act(d), { action: 'restart_docker' }),
    },
    {
      name: 'live-restore never reported: docker not restarted (fails closed)',
      setup: () => simAtEpisodeStart(policy({ firstStep: { docker: 'restart-runtime' } }), { docker: 'problem' }, {}),
      over: { docker: 'problem' },
      evidence: {},
      expect: (t, d) => t.match(d.recorded[0], { action: 'restart_docker', outcome: { result: 'skipped', detail: /never reported/ } }),
    },
    {
      name: 'a hung docker cannot report live-restore: the last value it reported is used',
      setup: () => {
        const sim = new Sim(policy({ firstStep: { docker: 'restart-runtime' } }));
        sim.tick({}, { liveRestoreEnabled: true });
        sim.advance(15 * S);
        sim.tick({ docker: ['problem', 'DockerHung'] }, {});
        sim.advance(MIN);
        return sim;
      },
      over: { docker: ['problem', 'DockerHung'] },
      evidence: {},
      expect: (t, d, sim) => {
        t.match(act(d), { action: 'restart_docker' });
        t.same(sim.state.liveRestore, { enabled: true, observedAt: T0 });
      },
    },
    {
      name: 'containerd node (docker not installed): restart-runtime restarts containerd',
      setup: () => simAtEpisodeStart(policy({ firstStep: { containerd: 'restart-runtime' } }), { docker: ['unknown', 'NotInstalled'], containerd: 'problem' }),
      over: { docker: ['unknown', 'NotInstalled'], containerd: 'problem' },
      evidence: {},
      expect: (t, d) => t.match(act(d), { action: 'restart_containerd', unit: 'containerd' }),
    },
    {
      name: 'no runtime on the node: runtime step skipped with that reason',
      setup: () => simAtEpisodeStart(policy({ steps: ['restart-runtime', 'drain-reboot'] }), { pleg: 'problem', docker: ['unknown', 'NotInstalled'], containerd: ['unknown', 'NotRunning'] }),
      over: { pleg: 'problem', docker: ['unknown', 'NotInstalled'], containerd: ['unknown', 'NotRunning'] },
      expect: (t, d) => {
        t.match(d.recorded[0], { step: 'restart-runtime', action: null, outcome: { result: 'skipped', detail: /no container runtime/ } });
        t.match(act(d), { action: 'reboot' });
      },
    },
    {
      name: 'paused: the episode starts but no action is taken; wait until the pause lapses',
      setup: () => simAtEpisodeStart(policy({ pause: { since: T0, until: T0 + 30 * MIN, reason: 'maintenance' } })),
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.same(d.next, { kind: 'wait', until: T0 + 30 * MIN, why: 'paused (maintenance) until 2026-11-27T10:30:00.000Z' });
        t.match(sim.state.episode, { phase: 'due', state: 'active' });
        t.equal(sim.actions.length, 0);
        t.same(sim.state.budgets.restarts, {});
      },
    },
    {
      name: 'paused without end: wait with no deadline',
      setup: () => simAtEpisodeStart(policy({ pause: { since: T0, until: null, reason: '' } })),
      over: PLEG_BAD,
      expect: (t, d) => t.same(d.next, { kind: 'wait', until: null, why: 'paused until resumed' }),
    },
    {
      name: 'a pause that lapsed no longer holds the ladder',
      setup: () => simAtEpisodeStart(policy({ pause: { since: T0 - HOUR, until: T0, reason: 'x' } })),
      over: PLEG_BAD,
      expect: (t, d) => t.match(act(d), { action: 'restart_kubelet' }),
    },
    {
      name: 'dry-run: the same decision, marked dry-run, no budget consumed',
      setup: () => simAtEpisodeStart(policy({ mode: 'dry-run' })),
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.match(act(d), { action: 'restart_kubelet', mode: 'dry-run' });
        t.match(sim.state.episode, { mode: 'dry-run' });
        t.same(sim.state.budgets.restarts, {});
      },
    },
    {
      name: 'dry-run reports a spent budget as enforce would',
      setup: () => {
        const sim = simAtEpisodeStart(policy({ mode: 'dry-run', restartsPerHour: 1 }));
        sim.state.budgets.restarts.kubelet = [T0];
        return sim;
      },
      over: PLEG_BAD,
      expect: (t, d) => t.match(d.recorded[0], { mode: 'dry-run', outcome: { result: 'skipped', detail: /budget spent/ } }),
    },
    {
      name: 'mode off: nothing, and no episode starts',
      setup: () => simAtEpisodeStart(policy({ mode: 'off' })),
      over: PLEG_BAD,
      expect: (t, d, sim) => {
        t.match(d.next, { kind: 'none', why: 'remediation.mode is off' });
        t.equal(sim.state.episode, null);
      },
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const sim = c.setup();
      const before = structuredClone(sim.state);
      const frozen = JSON.stringify(before);
      const d = sim.decide(sweep(sim.clock.now(), c.over ?? {}, c.evidence ?? { liveRestoreEnabled: true }));
      t.equal(JSON.stringify(before), frozen, 'decide does not mutate its input state');
      c.expect(t, d, sim);
    });
  }
});

t.test('the whole ladder when nothing cures it: kubelet, runtime, reboot request, exhausted, then quiet', async (t) => {
  const sim = simAtEpisodeStart(policy({ settleMs: 2 * MIN }));
  const d1 = sim.tick(PLEG_BAD);
  t.match(act(d1), { step: 'restart-kubelet' });
  sim.advance(2 * S);
  sim.complete(d1);
  t.match(sim.state.episode, { phase: 'settling', judgeAt: T0 + MIN + 2 * S + 2 * MIN });

  sim.advance(MIN);
  t.match(sim.tick(PLEG_BAD).next, { kind: 'wait', until: T0 + MIN + 2 * S + 2 * MIN }, 'settling: no judgment yet');
  sim.advance(MIN + 2 * S);
  const d2 = sim.tick(PLEG_BAD);
  t.match(act(d2), { step: 'restart-runtime', action: 'restart_docker' });
  t.match(d2.log.events, [/restart-kubelet did not cure it \(pleg: plegBroken\)/]);
  sim.complete(d2);
  sim.advance(2 * MIN);
  const d3 = sim.tick(PLEG_BAD);
  t.match(act(d3), { step: 'drain-reboot', action: 'reboot', reason: /pleg still failing after 2 step/ });
  sim.complete(d3, 'skipped', 'reboot requested; no Kubernetes access');
  t.match(sim.state.rebootRequest, { result: 'skipped', detail: 'reboot requested; no Kubernetes access' });
  sim.advance(2 * MIN);
  const d4 = sim.tick(PLEG_BAD);
  t.match(d4.next, { kind: 'none', why: 'exhausted' });
  t.match(sim.state.episode, { state: 'exhausted', endReason: /still failing after the last step/ });

  for (let i = 0; i < 20; i++) {
    sim.advance(HOUR);
    t.match(sim.tick(PLEG_BAD).next, { kind: 'none', why: /exhausted; no action until pleg are ok again/ });
  }
  t.same(
    sim.actions.map((a) => [a.action, a.outcome?.result]),
    [
      ['restart_kubelet', 'success'],
      ['restart_docker', 'success'],
      ['reboot', 'skipped'],
    ],
    'three actions, no more',
  );

  // An unknown does not re-arm the ladder; ok does, and the reboot request is cleared.
  t.match(sim.tick({ pleg: 'unknown' }).next, { kind: 'none', why: /exhausted/ });
  t.ok(sim.state.latch);
  const armed = sim.tick();
  t.match(armed.log.events, [/ok again after exhausted episode/]);
  t.equal(sim.state.latch, null);
  t.equal(sim.state.rebootRequest, null);
  // A new fault starts a new episode after grace.
  sim.tick(PLEG_BAD);
  sim.advance(MIN);
  const again = sim.tick(PLEG_BAD);
  t.match(act(again), { action: 'restart_kubelet', episodeId: /-2$/ });
});

t.test('recovery after the first step ends the episode; results from before settle ended are not judged', async (t) => {
  const sim = simAtEpisodeStart();
  const d1 = sim.tick(PLEG_BAD);
  sim.complete(d1);
  sim.advance(2 * MIN);
  // A sweep that started before the deadline: its results say nothing about the step.
  const stale = sweep(sim.clock.now() - 1);
  t.match(sim.decide(stale).next, { kind: 'wait', until: null, why: /observed after/ });
  const d2 = sim.tick();
  t.match(d2.next, { kind: 'none', why: 'recovered' });
  t.match(sim.state.episode, { state: 'recovered', endReason: 'pleg ok after restart-kubelet' });
  t.equal(d2.log.level, 'info');
  t.equal(d2.log.episodeId, sim.state.episode!.id);
  t.equal(sim.state.latch, null);
  t.same(sim.actions.map((a) => a.action), ['restart_kubelet'], 'docker untouched');
});

t.test('unknown after settle never advances: the ladder waits for a verdict', async (t) => {
  const sim = simAtEpisodeStart();
  sim.complete(sim.tick(PLEG_BAD));
  sim.advance(2 * MIN);
  for (let i = 0; i < 5; i++) {
    t.match(sim.tick({ pleg: 'unknown' }).next, { kind: 'wait', until: null, why: /pleg is unknown \(CheckTimeout\); unknown never advances/ });
    sim.advance(15 * S);
  }
  t.equal(sim.actions.length, 1);
  // ... but a problem elsewhere is a verdict.
  t.match(act(sim.tick({ pleg: 'unknown', kubelet: 'problem' })), { action: 'restart_docker' });
  t.same(sim.state.episode?.triggers, ['pleg', 'kubelet'], 'the new failing trigger joins the episode');
});

t.test('a containerd that is not installed does not block recovery on a docker node', async (t) => {
  const sim = simAtEpisodeStart();
  sim.complete(sim.tick(PLEG_BAD));
  sim.advance(2 * MIN);
  t.match(sim.tick({ containerd: ['unknown', 'NotInstalled'] }).next, { kind: 'none', why: 'recovered' });
});

t.test('deferral: a unit restarted by someone else', async (t) => {
  await t.test('once: judged after it has been up for settle, then restarted if still failing', async (t) => {
    const sim = simAtEpisodeStart();
    sim.units.kubelet = { loadState: 'loaded', activeState: 'active', lastStartMs: T0 + 30 * S };
    t.match(sim.tick(PLEG_BAD).next, { kind: 'wait', until: T0 + 150 * S });
    sim.advance(MIN);
    t.match(sim.tick(PLEG_BAD).next, { kind: 'wait', until: T0 + 150 * S });
    sim.advance(30 * S);
    t.match(act(sim.tick(PLEG_BAD)), { step: 'restart-kubelet' });
  });
  await t.test('once, and the restart cured it: recovered with no action', async (t) => {
    const sim = simAtEpisodeStart();
    sim.units.kubelet = { loadState: 'loaded', activeState: 'active', lastStartMs: T0 + 30 * S };
    sim.tick(PLEG_BAD);
    sim.advance(90 * S);
    t.match(sim.tick().next, { kind: 'none', why: 'recovered' });
    t.match(sim.state.episode, { endReason: /while restart-kubelet was deferred/ });
    t.equal(sim.actions.length, 0);
  });
  await t.test('again (a restart loop): skipped, judged after settle, the next step follows', async (t) => {
    const sim = simAtEpisodeStart();
    sim.units.kubelet = { loadState: 'loaded', activeState: 'active', lastStartMs: T0 + 30 * S };
    sim.tick(PLEG_BAD);
    sim.advance(90 * S);
    sim.units.kubelet = { loadState: 'loaded', activeState: 'active', lastStartMs: T0 + 140 * S };
    const d = sim.tick(PLEG_BAD);
    t.match(d.next, { kind: 'wait', until: T0 + 140 * S + 2 * MIN });
    t.match(d.recorded[0], { action: 'restart_kubelet', outcome: { result: 'skipped', detail: /again: it is being restarted by something else/ } });
    sim.advance(2 * MIN);
    t.match(act(sim.tick(PLEG_BAD)), { action: 'restart_docker' });
    t.notOk(sim.state.budgets.restarts.kubelet, 'no kubelet restart was ordered');
  });
});

t.test('in-flight action: nothing else is decided until its outcome is in', async (t) => {
  const sim = simAtEpisodeStart();
  sim.tick(PLEG_BAD);
  sim.advance(10 * MIN);
  t.match(sim.tick(PLEG_BAD).next, { kind: 'wait', until: null, why: /has no outcome yet/ });
  t.equal(sim.actions.length, 1);
});

t.test('pause in the middle: settle passes, the next step waits; resume takes it', async (t) => {
  const sim = simAtEpisodeStart();
  sim.complete(sim.tick(PLEG_BAD));
  sim.p = policy({ pause: { since: T0, until: null, reason: 'investigating' } });
  sim.advance(5 * MIN);
  t.match(sim.tick(PLEG_BAD).next, { kind: 'wait', why: /paused \(investigating\)/ });
  t.match(sim.state.episode, { phase: 'due', stepIndex: 1 });
  t.equal(sim.actions.length, 1);
  sim.advance(HOUR);
  t.match(sim.tick().next, { kind: 'none', why: 'recovered' }, 'a fault that cleared during the pause ends the episode, no action');
  t.equal(sim.actions.length, 1);
});

t.test('mode changes', async (t) => {
  await t.test('to off abandons the active episode', async (t) => {
    const sim = simAtEpisodeStart();
    sim.complete(sim.tick(PLEG_BAD));
    sim.p = policy({ mode: 'off' });
    const d = sim.tick(PLEG_BAD);
    t.match(d.next, { kind: 'none' });
    t.match(sim.state.episode, { state: 'abandoned', endReason: 'remediation.mode is off' });
    t.equal(d.log.level, 'warn');
  });
  await t.test('dry-run to enforce abandons the dry-run episode and starts afresh from the first step', async (t) => {
    const sim = simAtEpisodeStart(policy({ mode: 'dry-run' }));
    sim.complete(sim.tick(PLEG_BAD), 'dry_run');
    sim.advance(2 * MIN);
    sim.p = policy({ mode: 'enforce' });
    const d = sim.tick(PLEG_BAD);
    t.match(act(d), { step: 'restart-kubelet', mode: 'enforce', episodeId: /-2$/ });
    t.match(d.log.events[0], /abandoned: mode changed from dry-run to enforce/);
  });
});

t.test('an exhausted dry-run episode does not hold back enforce', async (t) => {
  const sim = simAtEpisodeStart(policy({ mode: 'dry-run', steps: ['restart-kubelet'] }));
  sim.complete(sim.tick(PLEG_BAD), 'dry_run');
  sim.advance(2 * MIN);
  t.match(sim.tick(PLEG_BAD).next, { kind: 'none', why: 'exhausted' });
  t.match(sim.state.latch, { mode: 'dry-run' });
  t.match(sim.tick(PLEG_BAD).next, { kind: 'none', why: /is exhausted/ }, 'held in dry-run');
  sim.p = policy({ mode: 'enforce', steps: ['restart-kubelet'] });
  const d = sim.tick(PLEG_BAD);
  t.match(act(d), { action: 'restart_kubelet', mode: 'enforce' });
  t.match(d.log.events[0], /exhausted dry-run episode .* does not hold the ladder in enforce mode/);
});

t.test('a reboot request is withdrawn once every trigger is ok', async (t) => {
  const sim = new Sim();
  sim.state.rebootRequest = { episodeId: 'e', at: T0, reason: 'r', result: 'skipped', detail: 'd' };
  sim.tick({ pleg: 'unknown' });
  t.ok(sim.state.rebootRequest, 'kept while a trigger is unknown');
  const d = sim.tick();
  t.equal(sim.state.rebootRequest, null);
  t.match(d.log.events, [/reboot request of episode e withdrawn/]);
});

t.test('applyOutcome', async (t) => {
  const sim = simAtEpisodeStart(policy({ steps: ['drain-reboot'] }));
  const d = sim.tick(PLEG_BAD);
  sim.advance(5 * S);
  const s2 = applyOutcome(sim.state, act(d).id, { result: 'failure', detail: 'drain timed out', at: sim.clock.now() }, sim.p);
  t.match(s2.episode, { phase: 'settling', judgeAt: sim.clock.now() + 2 * MIN });
  t.match(s2.rebootRequest, { result: 'failure', detail: 'drain timed out' });
  const s3 = applyOutcome(sim.state, act(d).id, { result: 'success', detail: 'rebooted', at: sim.clock.now() }, sim.p);
  t.equal(s3.rebootRequest, null, 'a reboot that happened is no longer requested');
  const s4 = applyOutcome(sim.state, 'no-such-id', { result: 'success', detail: '', at: 0 }, sim.p);
  t.same(s4, sim.state, 'an unknown action id changes nothing');
  // dry-run reboots are not requests
  const dry = simAtEpisodeStart(policy({ steps: ['drain-reboot'], mode: 'dry-run' }));
  dry.complete(dry.tick(PLEG_BAD), 'dry_run');
  t.equal(dry.state.rebootRequest, null);
});

t.test('the action log keeps the last 100', async (t) => {
  const sim = new Sim(policy({ graceMs: 0, settleMs: 0, restartsPerHour: 1000, rebootsPerDay: 1000 }));
  for (let i = 0; i < 80; i++) {
    for (let k = 0; k < 3; k++) {
      const d = sim.tick(PLEG_BAD);
      sim.complete(d);
      sim.advance(1);
    }
    sim.tick(PLEG_BAD); // exhausted
    sim.tick(); // re-armed
    sim.advance(1);
  }
  t.equal(sim.actions.length, MAX_ACTIONS);
  t.match(sim.actions.at(-1), { id: /-80\/3$/ });
});

t.test('chooseRuntime', async (t) => {
  const at = T0;
  const cases: [string, Statuses, string | null][] = [
    ['docker node', { docker: 'ok', containerd: 'ok' }, 'docker'],
    ['docker hung', { docker: 'problem', containerd: 'ok' }, 'docker'],
    ['containerd broken under a healthy docker', { docker: 'ok', containerd: 'problem' }, 'containerd'],
    ['both broken: the runbook restarts docker', { docker: 'problem', containerd: 'problem' }, 'docker'],
    ['containerd only', { docker: ['unknown', 'NotInstalled'], containerd: 'ok' }, 'containerd'],
    ['docker stopped and disabled, containerd runs', { docker: ['unknown', 'NotRunning'], containerd: 'ok' }, 'containerd'],
    ['docker check timed out: still docker', { docker: ['unknown', 'CheckTimeout'], containerd: ['unknown', 'NotInstalled'] }, 'docker'],
    ['neither', { docker: ['unknown', 'NotInstalled'], containerd: ['unknown', 'NotInstalled'] }, null],
  ];
  for (const [name, over, want] of cases) t.equal(chooseRuntime(sweep(at, over)), want, name);
  t.equal(chooseRuntime([]), null, 'both checks disabled');
});

t.test('judgeInterrupted: an intent without outcome is judged, never repeated', async (t) => {
  const base: ActionRecord = { id: 'e/1', episodeId: 'e', step: 'restart-kubelet', action: 'restart_kubelet', unit: 'kubelet', mode: 'enforce', intentAt: T0, reason: 'x' };
  const now = T0 + 5 * MIN;
  const cases: [string, ActionRecord, UnitFacts | { error: string } | undefined, string | undefined, string, RegExp][] = [
    ['unit started after the intent: it happened', base, { loadState: 'loaded', activeState: 'active', lastStartMs: T0 + 40 }, undefined, 'success', /entered active at .* after the restart was ordered/],
    ['unit started before the intent: it did not', base, { loadState: 'loaded', activeState: 'active', lastStartMs: T0 - 1 }, undefined, 'failure', /stopped before the restart of kubelet took effect.*not repeated/],
    ['unit never active since', base, { loadState: 'loaded', activeState: 'failed', lastStartMs: null }, undefined, 'failure', /it is failed/],
    ['unit state unreadable', base, { error: 'timeout' }, undefined, 'failure', /cannot be read \(timeout\)/],
    ['reboot: boot id changed', { ...base, step: 'drain-reboot', action: 'reboot', bootId: 'a' }, undefined, 'b', 'success', /rebooted \(boot id a -> b\)/],
    ['reboot: same boot', { ...base, step: 'drain-reboot', action: 'reboot', bootId: 'a' }, undefined, 'a', 'failure', /did not reboot/],
    ['dry-run', { ...base, mode: 'dry-run' }, undefined, undefined, 'dry_run', /nothing was changed/],
  ];
  for (const [name, a, facts, boot, result, detail] of cases) {
    const o = judgeInterrupted(a, facts, boot, now);
    t.equal(o.result, result, name);
    t.match(o.detail, detail, name);
    t.equal(o.inferred, true);
    t.equal(o.at, now);
  }
});

t.test('config cross-checks name the key path', async (t) => {
  const checks = ['disk', 'load', 'pleg', 'kubelet', 'docker', 'containerd', 'systemd-version', 'systemd', 'node-ready', 'stuck-pods'];
  t.same(remediationProblems(remediationDefaults, checks), []);
  const bad = { ...remediationDefaults, triggers: ['pleg', 'disk', 'nosuch'], firstStep: { docker: 'restart-runtime' as const, pleg: 'drain-reboot' as const }, steps: ['restart-kubelet' as const, 'restart-runtime' as const] };
  t.same(remediationProblems(bad, checks), [
    'remediation.triggers.1: "disk" cannot be a trigger (a restart cures none of disk, load, resources, kernel, systemd-version, network, overcommit)',
    'remediation.triggers.2: no check named "nosuch" (checks: disk, load, pleg, kubelet, docker, containerd, systemd-version, systemd, node-ready, stuck-pods)',
    'remediation.firstStep.docker: "docker" is not in remediation.triggers',
    'remediation.firstStep.pleg: step "drain-reboot" is not in remediation.steps (restart-kubelet, restart-runtime)',
  ]);
});

t.test('a refused drain-reboot is retried with backoff while its trigger persists, and spends nothing until a reboot is issued (issue 11)', async (t) => {
  const sim = new Sim(policy({ steps: ['drain-reboot'], retryInitialMs: 10 * S, retryMaxMs: 40 * S, retryJitter: 0.5 }));
  sim.tick({ pleg: 'problem' });
  sim.advance(MIN);
  let d = sim.tick({ pleg: 'problem' });
  t.match(d.next, { kind: 'act', action: { step: 'drain-reboot' } });
  const waits: number[] = [];
  for (let i = 0; i < 4; i++) {
    const id = d.next.kind === 'act' ? d.next.action.id : '';
    sim.state = applyOutcome(sim.state, id, { result: 'skipped', detail: 'refused: lease: all 1 reboot leases are held', at: sim.clock.now(), retry: true }, sim.p);
    t.match(sim.state.episode, { state: 'active', phase: 'retrying', retries: i + 1 }, `refusal ${i + 1}: retrying, not exhausted`);
    t.same(sim.state.budgets.reboots, [], `refusal ${i + 1}: the reboot budget is untouched`);
    waits.push(sim.state.episode!.judgeAt! - sim.clock.now());
    t.match(sim.tick({ pleg: 'problem' }).next, { kind: 'wait' }, 'waits for the backoff');
    sim.advance(waits.at(-1)! + S);
    d = sim.tick({ pleg: 'problem' });
    t.match(d.next, { kind: 'act', action: { step: 'drain-reboot' } }, `retry ${i + 1} taken while the trigger persists`);
  }
  t.same(waits, [10 * S, 20 * S, 40 * S, 40 * S], 'the backoff doubles up to its max');
  sim.complete(d, 'success', 'reboot issued');
  t.same(sim.state.budgets.reboots, [sim.clock.now()], 'the reboot actually issued spends the budget, once');
  t.notOk(sim.state.episode!.retries, 'retries reset');
  // A refusal whose trigger then clears ends the episode: nothing is retried for nothing.
  const s2 = new Sim(policy({ steps: ['drain-reboot'], retryInitialMs: 10 * S }));
  s2.tick({ pleg: 'problem' });
  s2.advance(MIN);
  const d2 = s2.tick({ pleg: 'problem' });
  s2.state = applyOutcome(s2.state, d2.next.kind === 'act' ? d2.next.action.id : '', { result: 'failure', detail: 'list nodes: HTTP 503', at: s2.clock.now(), retry: true }, s2.p);
  s2.advance(11 * S);
  const end = s2.tick({ pleg: 'ok' });
  t.match(end.next, { kind: 'none', why: 'recovered' });
  t.same(s2.state.budgets.reboots, []);
});

t.test('budget entries dated in the future (the clock stepped back) are ignored and said', async (t) => {
  const sim = new Sim(policy({ steps: ['restart-kubelet', 'drain-reboot'] }));
  // Written before the clock stepped back an hour: one restart and one reboot "in the future".
  sim.state.budgets.restarts.kubelet = [T0 + HOUR, T0 + HOUR, T0 + HOUR];
  sim.state.budgets.reboots = [T0 + HOUR];
  const first = sim.tick({ pleg: 'problem' });
  t.ok(first.log.events.some((e) => /ignored 3 restart budget entries of kubelet dated in the future/.test(e)), 'the restarts are said');
  t.ok(first.log.events.some((e) => /ignored 1 reboot budget entry dated in the future/.test(e)), 'and the reboot');
  t.same(sim.state.budgets, { restarts: {}, reboots: [], noRebootBefore: null }, 'and dropped');
  sim.advance(MIN);
  t.match(sim.tick({ pleg: 'problem' }).next, { kind: 'act', action: { action: 'restart_kubelet' } }, 'they block nothing');
});
