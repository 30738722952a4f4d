// remediation.mode approve in the ladder's decision function (pure, injected time): which steps wait,
// what an answer must name, lapsing, rejection, retries after an approval, and that an approval
// passes no budget. The end-to-end run is test/scenario-approve.test.ts.
import t from 'tap';
import type { CheckResult } from '../checks/types.js';
import { remediationDefaults } from '../remediations/config.js';
import { applyOutcome, decide, emptyState, type LadderPolicy, type Observed } from '../remediations/decide.js';
import type { ApprovalAnswer, LadderState, UnitFacts } from '../remediations/types.js';
import { testPolicy } from './helpers/ladder-policy.js';

const S = 1000;
const MIN = 60 * S;
const T0 = Date.parse('2026-11-27T10:00:00Z');
const old: UnitFacts = { loadState: 'loaded', activeState: 'active', lastStartMs: T0 - 86_400_000 };
const UNITS = { kubelet: old, docker: old, containerd: old };

const policy = (over: Partial<LadderPolicy> = {}): LadderPolicy =>
  testPolicy({ mode: 'approve', steps: ['restart-kubelet', 'drain-reboot'], approvalSteps: ['reexec-systemd', 'drain-reboot'], approvalExpiryMs: 30 * MIN, ...over });

const pleg = (at: number, status: 'ok' | 'problem'): CheckResult[] => [
  { check: 'pleg', status, reason: status === 'ok' ? 'PLEGHealthy' : 'PLEGUnhealthy', message: 'pleg', observedAt: new Date(at).toISOString(), durationSeconds: 0 },
  { check: 'kubelet', status: 'ok', reason: 'KubeletHealthy', message: 'kubelet', observedAt: new Date(at).toISOString(), durationSeconds: 0 },
];

/** Runs the ladder to the drain-reboot proposal: the restart acts unasked, fails to cure, then the proposal. */
function toProposal(t: Tap.Test, p: LadderPolicy) {
  let s: LadderState = emptyState();
  const obs = (at: number, approval: ApprovalAnswer | null = null): Observed => ({ results: pleg(at, 'problem'), units: UNITS, approval });
  s = decide(s, obs(T0), T0, p).state;
  let d = decide(s, obs(T0 + MIN), T0 + MIN, p);
  t.equal(d.next.kind, 'act', 'restart-kubelet is not an approval step: it acts');
  const restart = d.next.kind === 'act' ? d.next.action : undefined;
  t.equal(restart?.step, 'restart-kubelet');
  s = applyOutcome(d.state, restart!.id, { result: 'success', detail: 'restarted', at: T0 + MIN + S }, p);
  const at = T0 + 4 * MIN;
  d = decide(s, obs(at), at, p);
  return { d, obs, at };
}

t.test('an approval step is proposed, waits, and runs only for an answer naming its id', async (t) => {
  const p = policy();
  const { d: proposed, obs, at } = toProposal(t, p);
  t.equal(proposed.next.kind, 'propose', 'drain-reboot is proposed, not acted on');
  const prop = proposed.state.proposal!;
  t.match(prop, { id: /\/drain-reboot\/1$/, step: 'drain-reboot', action: 'reboot', proposedAt: at, expiresAt: at + 30 * MIN });
  t.equal(proposed.state.episode?.phase, 'awaiting-approval');
  t.equal(proposed.state.actions.filter((a) => a.step === 'drain-reboot').length, 0, 'no intent recorded: nothing to carry out');

  let d = decide(proposed.state, obs(at + MIN), at + MIN, p);
  t.match(d.next, { kind: 'wait', until: prop.expiresAt }, 'no answer: waits until the proposal lapses');
  t.equal(d.state.proposal?.id, prop.id, 'the same proposal');

  d = decide(proposed.state, obs(at + MIN, { id: 'another/drain-reboot/1', decision: 'approve', by: 'operator/x' }), at + MIN, p);
  t.equal(d.next.kind, 'wait', 'an approval for another id does nothing');

  d = decide(proposed.state, obs(at + MIN, { id: prop.id, decision: 'approve', by: 'operator/alice' }), at + MIN, p);
  t.equal(d.next.kind, 'act', 'approved: acts');
  const act = d.next.kind === 'act' ? d.next.action : undefined;
  t.match(act, { step: 'drain-reboot', action: 'reboot', mode: 'enforce', reason: new RegExp(`approved by operator/alice \\(proposal ${prop.id.replace(/[/.]/g, '\\$&')}\\)`) });
  t.equal(d.state.proposal, null, 'the proposal is used up');

  // Refused by a guard (slot busy): retried after the backoff with no new question.
  let s = applyOutcome(d.state, act!.id, { result: 'skipped', detail: 'slot busy', at: at + MIN, retry: true }, { ...p, retryInitialMs: MIN, retryJitter: 0.5 });
  d = decide(s, obs(at + 3 * MIN), at + 3 * MIN, p);
  t.equal(d.next.kind, 'act', 'the retry of an approved step needs no new answer');
  s = d.state;
  t.equal(s.proposal, null);
});

t.test('a lapsed proposal is made anew under a new id; an answer to the old one does nothing', async (t) => {
  const p = policy({ approvalExpiryMs: 5 * MIN });
  const { d: proposed, obs, at } = toProposal(t, p);
  const first = proposed.state.proposal!;
  const later = at + 6 * MIN;
  const d = decide(proposed.state, obs(later, { id: first.id, decision: 'approve', by: 'operator/late' }), later, p);
  t.equal(d.next.kind, 'propose', 'proposed again');
  t.match(d.state.proposal, { id: /\/drain-reboot\/2$/, proposedAt: later, expiresAt: later + 5 * MIN });
  t.match(d.log.events, [/proposal .*\/drain-reboot\/1 lapsed unanswered/, /drain-reboot proposed as .*\/drain-reboot\/2/]);
  t.equal(d.state.actions.filter((a) => a.step === 'drain-reboot').length, 0, 'the late approval ran nothing');
});

t.test('reject ends the episode as exhausted: no new proposal until the triggers are ok again', async (t) => {
  const p = policy();
  const { d: proposed, obs, at } = toProposal(t, p);
  const prop = proposed.state.proposal!;
  let d = decide(proposed.state, obs(at + MIN, { id: prop.id, decision: 'reject', by: 'operator/bob' }), at + MIN, p);
  t.match(d.next, { kind: 'none', why: /drain-reboot rejected by operator\/bob/ });
  t.match(d.state.episode, { state: 'exhausted', endReason: /rejected by operator\/bob/ });
  t.equal(d.state.proposal, null);
  t.match(d.recorded, [{ step: 'drain-reboot', outcome: { result: 'skipped', detail: /rejected by operator\/bob/ } }], 'recorded as a skipped step');
  d = decide(d.state, obs(at + 10 * MIN), at + 10 * MIN, p);
  t.equal(d.next.kind, 'none', 'still failing: the latch holds, nothing is proposed');
  t.equal(d.state.proposal, null);
});

t.test('approval passes no budget, and an episode that recovers drops its proposal', async (t) => {
  const spent = policy({ rebootsPerDay: 0 });
  const { d } = toProposal(t, spent);
  t.notOk(d.state.proposal, 'a spent reboot budget skips the step: nothing to propose');
  t.match(d.state.actions.at(-1), { step: 'drain-reboot', outcome: { result: 'skipped', detail: /budget spent/ } });

  const p = policy();
  const { d: proposed, at } = toProposal(t, p);
  const healed = decide(proposed.state, { results: pleg(at + MIN, 'ok'), units: UNITS }, at + MIN, p);
  t.match(healed.state.episode, { state: 'recovered' });
  t.equal(healed.state.proposal, null, 'the proposal went with its episode');
});

t.test('enforce and dry-run never propose; restarts in approve mode are not held by default', async (t) => {
  for (const mode of ['enforce', 'dry-run'] as const) {
    const { d } = toProposal(t, policy({ mode }));
    t.equal(d.next.kind, 'act', `${mode}: drain-reboot acts (or reports) at once`);
    t.notOk(d.state.proposal);
  }
  t.same(remediationDefaults.approval, { steps: ['reexec-systemd', 'drain-reboot'], expiry: '1h' }, 'the defaults');
});
