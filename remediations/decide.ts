import type { CheckResult } from '../checks/types.js';
import { NEVER_TRIGGERS, type RemediationMode, type StepName } from './config.js';
import type {
  ActionName,
  ActionOutcome,
  ActionRecord,
  ApprovalAnswer,
  Episode,
  LadderState,
  PauseState,
  Proposal,
  Runtime,
  UnitFacts,
} from './types.js';

/** The ladder's configuration in the form the decision needs (durations in ms), plus the operator pause. */
export interface LadderPolicy {
  mode: RemediationMode;
  graceMs: number;
  settleMs: number;
  triggers: readonly string[];
  steps: readonly StepName[];
  firstStep: Readonly<Record<string, StepName>>;
  restartsPerHour: number;
  rebootsPerDay: number;
  /** `reexec-systemd`'s own budget per rolling day (default 2). */
  reexecsPerDay?: number;
  allowRuntimeRestartWithoutLiveRestore: boolean;
  /** The systemd units the restart steps act on (from `checks.<id>.unit`). */
  units: { kubelet: string; docker: string; containerd: string };
  /** The operator's pause, if any (expired pauses may be passed; they are ignored). */
  pause: PauseState | null;
  /** Backoff of a refused step (`retryBackoff`): the first retry after `retryInitialMs`, doubling up to `retryMaxMs`. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /**
   * In [0, 1): spreads a retry over 50–150 % of its backoff, so that agents refused together (two
   * holders of two slots under a storm limit of one) do not retry in lockstep. The caller draws it;
   * `decide` stays pure. Default 0.5 (no spread).
   */
  retryJitter?: number;
  /** `mode: approve`: the steps that wait for a person (`remediation.approval.steps`). Default reexec-systemd and drain-reboot. */
  approvalSteps?: readonly StepName[];
  /** `mode: approve`: how long a proposal waits before it lapses. Default 1 h. */
  approvalExpiryMs?: number;
}

const DEFAULT_APPROVAL_STEPS: readonly StepName[] = ['reexec-systemd', 'drain-reboot'];
const DEFAULT_APPROVAL_EXPIRY_MS = 3_600_000;

const DEFAULT_RETRY_INITIAL_MS = 60_000;
const DEFAULT_RETRY_MAX_MS = 15 * 60_000;

/** The wait before retry number `n` (1-based) of a refused step. */
export function retryBackoffMs(n: number, p: Pick<LadderPolicy, 'retryInitialMs' | 'retryMaxMs' | 'retryJitter'>): number {
  const initial = p.retryInitialMs ?? DEFAULT_RETRY_INITIAL_MS;
  const max = Math.max(initial, p.retryMaxMs ?? DEFAULT_RETRY_MAX_MS);
  const base = Math.min(max, initial * 2 ** Math.min(30, Math.max(0, n - 1)));
  const j = Math.min(1, Math.max(0, p.retryJitter ?? 0.5));
  return Math.round(base * (0.5 + j));
}

/** What the agent observed: the latest check results and, on request, the state of units. */
export interface Observed {
  results: readonly CheckResult[];
  /**
   * `systemctl show` facts per unit, or why they could not be read. A unit absent from this map has
   * not been asked: `decide` answers `need` for it, and the caller asks and decides again.
   */
  units?: Readonly<Record<string, UnitFacts | { error: string }>>;
  /** A person's answer (`nodemedic approve`/`reject`, the Node annotation); counts only for the current proposal's id. */
  approval?: ApprovalAnswer | null;
}

/** What to do next. */
export type Next =
  /** Carry out `action` (its intent is already in `state`), then call `applyOutcome`. */
  | { kind: 'act'; action: ActionRecord }
  /** Nothing to do until `until` (ms), or until the next sweep when null. */
  | { kind: 'wait'; until: number | null; why: string }
  /** Nothing to do. */
  | { kind: 'none'; why: string }
  /** Read these units' facts and decide again; `state` must be discarded. */
  | { kind: 'need'; units: string[] }
  /**
   * `mode: approve`: `proposal` (already in `state`) is new: collect the evidence, show it on every
   * surface, and wait for an answer or its expiry.
   */
  | { kind: 'propose'; proposal: Proposal };

/** One log line per decision. */
export interface DecisionLog {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  episodeId?: string;
  step?: StepName;
  /** What happened in this decision besides `next`, in order (steps skipped, episode started/ended). */
  events: string[];
}

export interface Decision {
  next: Next;
  state: LadderState;
  log: DecisionLog;
  /** Actions completed by this decision without being carried out (skipped steps), for metrics. */
  recorded: ActionRecord[];
  /** Episodes this decision ended (recovered, exhausted, abandoned), for metrics. */
  ended: Episode[];
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
export const MAX_ACTIONS = 100;
/** Check reasons that mean "this component is not on this node" rather than "could not tell". */
const NOT_HERE = new Set(['NotInstalled', 'NotRunning']);

/**
 * The steps an episode walks from `firstIdx`: when the cause is PID 1, from `reexec-systemd` on (a
 * kubelet or runtime restart does not help); otherwise without it.
 */
function ladderFor(p: LadderPolicy, firstIdx: number, results: readonly CheckResult[]): StepName[] {
  const at = p.steps.indexOf('reexec-systemd');
  if (at >= 0 && pid1Cause(results)) return p.steps.slice(at);
  return p.steps.slice(firstIdx).filter((st) => st !== 'reexec-systemd');
}

export function emptyState(): LadderState {
  return {
    version: 1,
    seq: 0,
    problemSince: {},
    episode: null,
    latch: null,
    budgets: { restarts: {}, reboots: [], noRebootBefore: null },
    liveRestore: null,
    rebootRequest: null,
    actions: [],
  };
}

/** A pause counts while it has not lapsed. */
export function pauseActive(p: PauseState | null, now: number): boolean {
  return !!p && (p.until === null || now < p.until);
}

function compactTime(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function observedMs(r: CheckResult, fallback: number): number {
  const t = Date.parse(r.observedAt);
  return Number.isFinite(t) ? t : fallback;
}

/** The latest result per check id. */
function index(results: readonly CheckResult[]): Map<string, CheckResult> {
  const m = new Map<string, CheckResult>();
  for (const r of results) {
    const prev = m.get(r.check);
    if (!prev || observedMs(r, 0) >= observedMs(prev, 0)) m.set(r.check, r);
  }
  return m;
}

/** Whether a check result says its component runs on this node (a problem counts: it is there, broken). */
function present(r: CheckResult | undefined): boolean {
  return !!r && !(r.status === 'unknown' && NOT_HERE.has(r.reason));
}

/**
 * The runtime the `restart-runtime` step restarts: docker when the node runs it (the runbook's
 * step), containerd when it is the one in trouble while docker is fine or absent, else containerd
 * if present. Null when neither runs here.
 */
export function chooseRuntime(results: readonly CheckResult[]): Runtime | null {
  const m = index(results);
  const docker = m.get('docker');
  const containerd = m.get('containerd');
  if (containerd?.status === 'problem' && docker?.status !== 'problem') return 'containerd';
  if (present(docker)) return 'docker';
  if (present(containerd)) return 'containerd';
  return null;
}

// --- reexec-systemd (issue 15) -------------------------------------------------------------
/**
 * Why the trouble is PID 1's, or null: the `systemd` check finds PID 1 unresponsive, or PLEG is
 * unhealthy while runc piles up on a systemd known to carry the sd-bus cookie overflow. Restarting
 * kubelet or the runtime cures neither (opencontainers/runc#1959); a reexec of systemd does.
 */
export function pid1Cause(results: readonly CheckResult[]): string | null {
  const m = index(results);
  const sd = m.get('systemd');
  if (sd?.status === 'problem' && sd.reason === 'SystemdUnresponsive') return `systemd: ${sd.reason}`;
  const stuck = (sd?.evidence?.stuckRunc as { count?: number } | undefined)?.count ?? 0;
  const bug = (sd?.evidence?.bug as { status?: string } | undefined)?.status;
  if (m.get('pleg')?.status === 'problem' && stuck > 0 && bug === 'affected') {
    return `pleg: PLEGUnhealthy with ${stuck} stuck runc process(es) on a systemd known to carry the sd-bus cookie overflow`;
  }
  return null;
}

function resolveReexec(s: LadderState, observed: Observed, now: number, p: LadderPolicy): StepResolution {
  const cause = pid1Cause(observed.results);
  if (!cause) return { kind: 'skip', action: 'reexec_systemd', reason: 'PID 1 answers and no runc is stuck on an affected systemd: a reexec of systemd cures none of this' };
  const limit = p.reexecsPerDay ?? 2;
  const used = (s.budgets.reexecs ?? []).filter((t) => now - t < DAY).length;
  if (used >= limit) return { kind: 'skip', action: 'reexec_systemd', reason: `budget spent: ${used} of ${limit} re-executions of systemd in the last 24h` };
  return { kind: 'act', action: 'reexec_systemd', reason: cause };
}
// --- end reexec-systemd ---------------------------------------------------------------------

function actionFor(step: StepName, runtime: Runtime | null): ActionName | null {
  if (step === 'restart-kubelet') return 'restart_kubelet';
  if (step === 'drain-reboot') return 'reboot';
  return runtime === 'docker' ? 'restart_docker' : runtime === 'containerd' ? 'restart_containerd' : null;
}

type Judgment = { kind: 'recovered' } | { kind: 'failing'; why: string } | { kind: 'pending'; why: string };

/**
 * Judges an episode's triggers. Results older than `freshAfter` do not count (a sweep that began
 * before settle ended says nothing about the step). Any trigger in `problem` fails; otherwise every
 * trigger the episode involved must be `ok` (or absent from this node); an `unknown` one keeps the
 * ladder waiting, because `unknown` never advances it.
 */
function judge(ep: Episode, m: Map<string, CheckResult>, triggers: readonly string[], freshAfter: number): Judgment {
  for (const t of triggers) {
    const r = m.get(t);
    if (r && observedMs(r, 0) < freshAfter) return { kind: 'pending', why: `waiting for a ${t} result observed after ${iso(freshAfter)}` };
  }
  const failing = triggers.filter((t) => m.get(t)?.status === 'problem');
  if (failing.length) {
    return { kind: 'failing', why: failing.map((t) => `${t}: ${m.get(t)!.reason}`).join(', ') };
  }
  const unclear = ep.triggers.filter((t) => {
    const r = m.get(t);
    return r && r.status === 'unknown' && !NOT_HERE.has(r.reason);
  });
  if (unclear.length) {
    return { kind: 'pending', why: `${unclear.map((t) => `${t} is unknown (${m.get(t)!.reason})`).join(', ')}; unknown never advances the ladder` };
  }
  return { kind: 'recovered' };
}

function restartBudget(s: LadderState, unit: string, now: number, perHour: number): { spent: boolean; used: number } {
  const used = (s.budgets.restarts[unit] ?? []).filter((t) => now - t < HOUR).length;
  return { spent: used >= perHour, used };
}

function rebootBudget(s: LadderState, now: number, perDay: number): { spent: boolean; why: string } {
  if (s.budgets.noRebootBefore !== null && now < s.budgets.noRebootBefore) {
    return { spent: true, why: `no reboot request before ${iso(s.budgets.noRebootBefore)} (state was reset after corruption)` };
  }
  const used = s.budgets.reboots.filter((t) => now - t < DAY).length;
  return { spent: used >= perDay, why: `${used} of ${perDay} reboot requests used in the last 24h` };
}

/**
 * Drops budget entries out of their window, and entries dated in the future: the wall clock stepped
 * back since they were written, and an entry "from the future" would hold a budget for the size of
 * the step. They are ignored (dropped) and said in `events`.
 */
function prune(s: LadderState, now: number, events: string[] = []): void {
  const future = (t: number): boolean => t > now;
  for (const [unit, times] of Object.entries(s.budgets.restarts)) {
    const ahead = times.filter(future);
    if (ahead.length) events.push(`ignored ${ahead.length} restart budget entr${ahead.length === 1 ? 'y' : 'ies'} of ${unit} dated in the future (${ahead.map(iso).join(', ')}): the clock stepped back`);
    const kept = times.filter((t) => !future(t) && now - t < HOUR);
    if (kept.length) s.budgets.restarts[unit] = kept;
    else delete s.budgets.restarts[unit];
  }
  const aheadReboots = s.budgets.reboots.filter(future);
  if (aheadReboots.length) events.push(`ignored ${aheadReboots.length} reboot budget entr${aheadReboots.length === 1 ? 'y' : 'ies'} dated in the future (${aheadReboots.map(iso).join(', ')}): the clock stepped back`);
  s.budgets.reboots = s.budgets.reboots.filter((t) => !future(t) && now - t < DAY);
  if (s.budgets.reexecs) s.budgets.reexecs = s.budgets.reexecs.filter((t) => !future(t) && now - t < DAY);
  if (s.budgets.noRebootBefore !== null && now >= s.budgets.noRebootBefore) s.budgets.noRebootBefore = null;
}

function pushAction(s: LadderState, a: ActionRecord): void {
  s.actions.push(a);
  if (s.actions.length > MAX_ACTIONS) s.actions.splice(0, s.actions.length - MAX_ACTIONS);
}

function endEpisode(s: LadderState, ep: Episode, state: Episode['state'], now: number, why: string, ended: Episode[]): void {
  ended.push(ep);
  ep.state = state;
  ep.endedAt = now;
  ep.endReason = why;
  ep.judgeAt = null;
  if (state === 'exhausted') s.latch = { episodeId: ep.id, triggers: [...ep.triggers], since: now, mode: ep.mode };
  // A proposal lives only as long as its episode.
  if (s.proposal?.episodeId === ep.id) s.proposal = null;
}

type StepResolution =
  | { kind: 'act'; action: ActionName; unit?: string; reason: string }
  | { kind: 'skip'; action: ActionName | null; unit?: string; reason: string }
  /** Skipped because the unit keeps (re)starting by itself; judge once it has been up for settle. */
  | { kind: 'skip-settle'; action: ActionName; unit: string; reason: string; judgeAt: number }
  | { kind: 'defer'; unit: string; reason: string; until: number }
  | { kind: 'need'; unit: string };

function resolveRestart(
  s: LadderState,
  ep: Episode,
  step: StepName,
  action: ActionName,
  unit: string,
  observed: Observed,
  now: number,
  p: LadderPolicy,
): StepResolution {
  // Checked in dry-run too (only enforce consumes budget), so a dry run reports what enforce would do.
  const b = restartBudget(s, unit, now, p.restartsPerHour);
  if (b.spent) {
    return { kind: 'skip', action, unit, reason: `budget spent: ${b.used} of ${p.restartsPerHour} restarts of ${unit} in the last hour` };
  }
  const f = observed.units?.[unit];
  if (f === undefined) return { kind: 'need', unit };
  if ('error' in f) return { kind: 'skip', action, unit, reason: `cannot read the state of ${unit} (${f.error}); not restarting it blind` };
  if (f.loadState !== 'loaded') return { kind: 'skip', action, unit, reason: `unit ${unit} is ${f.loadState}` };
  if (f.lastStartMs !== null && now - f.lastStartMs < p.settleMs) {
    const upSince = `${unit} (re)started at ${iso(f.lastStartMs)}, less than settle ago`;
    const until = f.lastStartMs + p.settleMs;
    if (ep.deferred === step) {
      return { kind: 'skip-settle', action, unit, judgeAt: until, reason: `${upSince} again: it is being restarted by something else; not restarting it on top` };
    }
    return { kind: 'defer', unit, until, reason: `${upSince}; judging again at ${iso(until)}` };
  }
  return { kind: 'act', action, unit, reason: `${ep.trigger} still failing` };
}

function resolveStep(s: LadderState, ep: Episode, step: StepName, m: Map<string, CheckResult>, observed: Observed, now: number, p: LadderPolicy): StepResolution {
  if (step === 'restart-kubelet') return resolveRestart(s, ep, step, 'restart_kubelet', p.units.kubelet, observed, now, p);
  if (step === 'reexec-systemd') return resolveReexec(s, observed, now, p);
  if (step === 'restart-runtime') {
    const runtime = chooseRuntime(observed.results);
    if (!runtime) return { kind: 'skip', action: null, reason: 'no container runtime (docker or containerd) found on this node' };
    const action = actionFor(step, runtime)!;
    if (runtime === 'docker' && !p.allowRuntimeRestartWithoutLiveRestore) {
      const ev = m.get('docker')?.evidence?.liveRestoreEnabled;
      const known = typeof ev === 'boolean' ? ev : s.liveRestore?.enabled;
      if (known === false) {
        return { kind: 'skip', action, unit: p.units.docker, reason: 'docker reports LiveRestoreEnabled: false; restarting it would kill every container on the node' };
      }
      if (known === undefined) {
        return { kind: 'skip', action, unit: p.units.docker, reason: "docker's live-restore setting was never reported; not risking every container on the node" };
      }
    }
    return resolveRestart(s, ep, step, action, runtime === 'docker' ? p.units.docker : p.units.containerd, observed, now, p);
  }
  const b = rebootBudget(s, now, p.rebootsPerDay);
  if (b.spent) return { kind: 'skip', action: 'reboot', reason: `budget spent: ${b.why}` };
  return { kind: 'act', action: 'reboot', reason: `${ep.trigger} still failing after ${ep.stepIndex} step(s)` };
}

/**
 * `mode: approve`, a step that waits for a person. Returns what to do instead of acting, or null when
 * the step is approved and is to be carried out now (its reason then names who approved it). The
 * answer must name the current proposal's id and come before it lapses; a lapsed proposal is replaced
 * by a new one (new id), a rejected one ends the episode as exhausted (no new proposal until the
 * triggers are ok again). Approval changes nothing else: the step was resolved (budgets) as in
 * enforce, and a drain-reboot still runs every guard.
 */
function approvalGate(
  s: LadderState,
  ep: Episode,
  record: ActionRecord,
  answer: ApprovalAnswer | null,
  now: number,
  p: LadderPolicy,
  events: string[],
  recorded: ActionRecord[],
  ended: Episode[],
): { next: Next; level: DecisionLog['level']; msg: string } | null {
  const step = record.step;
  // Approved once in this episode: a retry after a refusal (slot busy, storm guard) needs no new answer.
  if (ep.approved?.step === step) {
    record.reason = `${record.reason}; approved by ${ep.approved.by} (proposal ${ep.approved.proposalId})`;
    return null;
  }
  const cur = s.proposal && s.proposal.episodeId === ep.id && s.proposal.step === step ? s.proposal : null;
  const live = cur && now < cur.expiresAt ? cur : null;
  const said = live && answer?.id === live.id ? answer : null;
  if (live && said?.decision === 'approve') {
    s.proposal = null;
    ep.approved = { step, by: said.by, proposalId: live.id };
    record.reason = `${record.reason}; approved by ${said.by} (proposal ${live.id})`;
    events.push(`proposal ${live.id} approved by ${said.by}`);
    return null;
  }
  if (live && said?.decision === 'reject') {
    record.outcome = { result: 'skipped', detail: `${step} rejected by ${said.by} (proposal ${live.id})`, at: now };
    pushAction(s, record);
    recorded.push(record);
    s.proposal = null;
    const why = `${step} rejected by ${said.by}; no action until ${ep.triggers.join(', ')} are ok again`;
    endEpisode(s, ep, 'exhausted', now, why, ended);
    events.push(`proposal ${live.id} rejected by ${said.by}`, `episode ${ep.id} exhausted: ${why}`);
    return { next: { kind: 'none', why }, level: 'warn', msg: `${step} rejected` };
  }
  ep.phase = 'awaiting-approval';
  if (live) {
    ep.judgeAt = live.expiresAt;
    return { next: { kind: 'wait', until: live.expiresAt, why: `waiting for approval of ${step} (proposal ${live.id}) until ${iso(live.expiresAt)}` }, level: 'debug', msg: 'awaiting approval' };
  }
  if (cur) events.push(`proposal ${cur.id} lapsed unanswered at ${iso(cur.expiresAt)}`);
  const n = cur ? Number(cur.id.split('/').at(-1)) + 1 || 1 : 1;
  const proposal: Proposal = {
    id: `${ep.id}/${step}/${n}`,
    episodeId: ep.id,
    step,
    action: record.action,
    ...(record.unit ? { unit: record.unit } : {}),
    reason: record.reason,
    proposedAt: now,
    expiresAt: now + (p.approvalExpiryMs ?? DEFAULT_APPROVAL_EXPIRY_MS),
  };
  s.proposal = proposal;
  ep.judgeAt = proposal.expiresAt;
  events.push(`${step} proposed as ${proposal.id}; waiting for approval until ${iso(proposal.expiresAt)}`);
  return { next: { kind: 'propose', proposal }, level: 'warn', msg: `${step} proposed; waiting for approval` };
}

/**
 * The ladder's decision: given the persisted state, what was observed, the time and the policy,
 * what to do next and the new state. Pure: no I/O, no clock, no randomness.
 */
export function decide(state: LadderState, observed: Observed, now: number, p: LadderPolicy): Decision {
  const s: LadderState = structuredClone(state);
  const events: string[] = [];
  const recorded: ActionRecord[] = [];
  const ended: Episode[] = [];
  const m = index(observed.results);
  const triggers = p.triggers.filter((t) => !NEVER_TRIGGERS.includes(t));
  const status = (t: string): CheckResult['status'] | undefined => m.get(t)?.status;

  for (const t of Object.keys(s.problemSince)) if (!triggers.includes(t) || !m.has(t)) delete s.problemSince[t];
  for (const t of triggers) {
    const r = m.get(t);
    if (r?.status === 'problem') s.problemSince[t] ??= observedMs(r, now);
    else if (r?.status === 'ok') delete s.problemSince[t];
    // `unknown` neither starts nor resets the grace period.
  }
  const lr = m.get('docker')?.evidence?.liveRestoreEnabled;
  if (typeof lr === 'boolean') s.liveRestore = { enabled: lr, observedAt: observedMs(m.get('docker')!, now) };
  prune(s, now, events);

  let ep = s.episode?.state === 'active' ? s.episode : null;
  if (s.proposal && s.proposal.episodeId !== ep?.id) s.proposal = null;
  // The episode this decision concerns, even after it ended here; its id goes into the log line.
  const logEpisode = (): Episode | null => ep ?? (s.episode && (s.episode.state === 'active' || s.episode.endedAt === now) ? s.episode : null);
  const out = (next: Next, level: DecisionLog['level'], msg: string): Decision => {
    const e = logEpisode();
    const step = e ? e.ladder[Math.min(e.stepIndex, e.ladder.length - 1)] : undefined;
    return { next, state: s, recorded, ended, log: { level, msg, events, ...(e ? { episodeId: e.id } : {}), ...(step ? { step } : {}) } };
  };

  if (p.mode === 'off') {
    if (ep) {
      endEpisode(s, ep, 'abandoned', now, 'remediation.mode is off', ended);
      events.push(`episode ${ep.id} abandoned: remediation.mode is off`);
      ep = null;
      return out({ kind: 'none', why: 'remediation.mode is off' }, 'warn', 'remediation off; episode abandoned');
    }
    return out({ kind: 'none', why: 'remediation.mode is off' }, 'debug', 'remediation off');
  }
  if (ep && ep.mode !== p.mode) {
    endEpisode(s, ep, 'abandoned', now, `remediation.mode changed from ${ep.mode} to ${p.mode}`, ended);
    events.push(`episode ${ep.id} abandoned: mode changed from ${ep.mode} to ${p.mode}`);
    ep = null;
  }

  const inFlight = s.actions.find((a) => !a.outcome);
  if (inFlight) return out({ kind: 'wait', until: null, why: `action ${inFlight.id} (${inFlight.step}) has no outcome yet` }, 'debug', 'waiting for an action in flight');

  if (s.latch?.mode && s.latch.mode !== p.mode) {
    // A dry run that ran out of steps must not hold back enforcement (nor the reverse).
    events.push(`exhausted ${s.latch.mode} episode ${s.latch.episodeId} does not hold the ladder in ${p.mode} mode`);
    s.latch = null;
  }
  if (s.latch) {
    const latch = s.latch;
    const stillBad = triggers.filter((t) => status(t) === 'problem');
    const notOk = latch.triggers.filter((t) => m.has(t) && status(t) !== 'ok' && !(status(t) === 'unknown' && NOT_HERE.has(m.get(t)!.reason)));
    if (stillBad.length || notOk.length) {
      return out(
        { kind: 'none', why: `episode ${latch.episodeId} is exhausted; no action until ${[...new Set([...latch.triggers, ...stillBad])].join(', ')} are ok again` },
        'debug',
        'exhausted; waiting for the triggers to be ok',
      );
    }
    s.latch = null;
    s.rebootRequest = null;
    events.push(`triggers ${latch.triggers.join(', ')} ok again after exhausted episode ${latch.episodeId}; the ladder is armed`);
  }

  if (!ep) {
    const problems = triggers.filter((t) => status(t) === 'problem');
    if (!problems.length && s.rebootRequest && triggers.every((t) => !m.has(t) || status(t) === 'ok' || NOT_HERE.has(m.get(t)!.reason))) {
      events.push(`reboot request of episode ${s.rebootRequest.episodeId} withdrawn: every trigger is ok`);
      s.rebootRequest = null;
    }
    if (!problems.length) return out({ kind: 'none', why: 'no trigger is a problem' }, events.length ? 'info' : 'debug', events.length ? 'ladder armed' : 'all triggers fine');
    const due = problems.filter((t) => now - s.problemSince[t]! >= p.graceMs);
    if (!due.length) {
      const until = Math.min(...problems.map((t) => s.problemSince[t]! + p.graceMs));
      return out({ kind: 'wait', until, why: `${problems.join(', ')} in problem for less than grace` }, 'debug', 'trigger in grace period');
    }
    // Several triggers due at once: start from the least disruptive of their first steps.
    const firstIdx = Math.min(...due.map((t) => Math.max(0, p.steps.indexOf(p.firstStep[t] ?? p.steps[0]!))));
    const trigger = due.find((t) => Math.max(0, p.steps.indexOf(p.firstStep[t] ?? p.steps[0]!)) === firstIdx)!;
    const r = m.get(trigger)!;
    s.seq += 1;
    ep = {
      id: `${compactTime(now)}-${s.seq}`,
      mode: p.mode,
      trigger,
      reason: `${r.reason}: ${r.message}`,
      triggers: [...problems],
      startedAt: now,
      ladder: ladderFor(p, firstIdx, observed.results),
      stepIndex: 0,
      phase: 'due',
      stepStartedAt: null,
      judgeAt: null,
      deferred: null,
      state: 'active',
    };
    s.episode = ep;
    events.push(`episode ${ep.id} started: ${trigger} ${r.reason} for ${Math.round((now - s.problemSince[trigger]!) / 1000)}s (grace ${Math.round(p.graceMs / 1000)}s); ladder ${ep.ladder.join(' -> ')}`);
  }

  for (const t of triggers) if (status(t) === 'problem' && !ep.triggers.includes(t)) ep.triggers.push(t);

  if (ep.phase === 'acting') {
    // The outcome was recorded but the phase not moved on (an older state file): settle from it.
    const last = s.actions.filter((a) => a.episodeId === ep!.id).at(-1);
    ep.phase = 'settling';
    ep.judgeAt = (last?.outcome?.at ?? now) + p.settleMs;
  }

  if (ep.phase === 'settling' || ep.phase === 'deferred' || ep.phase === 'retrying') {
    if (now < ep.judgeAt!) {
      const what = ep.phase === 'settling' ? 'settling after' : ep.phase === 'retrying' ? `retry ${ep.retries ?? 1} of` : 'deferred';
      return out({ kind: 'wait', until: ep.judgeAt, why: `${what} ${ep.ladder[ep.stepIndex]}` }, 'debug', ep.phase === 'retrying' ? 'retrying' : ep.phase === 'settling' ? 'settling' : 'deferred');
    }
    const j = judge(ep, m, triggers, ep.judgeAt!);
    if (j.kind === 'pending') return out({ kind: 'wait', until: null, why: j.why }, 'debug', 'judgment pending');
    if (j.kind === 'recovered') {
      const after = ep.phase === 'settling' ? `after ${ep.ladder[ep.stepIndex]}` : `while ${ep.ladder[ep.stepIndex]} was ${ep.phase === 'retrying' ? 'waiting to be retried' : 'deferred'}`;
      endEpisode(s, ep, 'recovered', now, `${ep.triggers.join(', ')} ok ${after}`, ended);
      events.push(`episode ${ep.id} recovered ${after}`);
      ep = null;
      return out({ kind: 'none', why: 'recovered' }, 'info', 'episode recovered');
    }
    if (ep.phase === 'retrying') events.push(`${ep.ladder[ep.stepIndex]} is retried (attempt ${(ep.retries ?? 1) + 1}): ${j.why}`);
    else events.push(`${ep.ladder[ep.stepIndex]} did not cure it (${j.why})`);
    if (ep.phase === 'settling') {
      ep.stepIndex += 1;
      ep.deferred = null;
      delete ep.retries;
    }
    ep.phase = 'due';
    ep.judgeAt = null;
  }

  // phase `due`: a problem that cleared by itself ends the episode; an unclear one waits.
  const j = judge(ep, m, triggers, 0);
  if (j.kind === 'recovered') {
    endEpisode(s, ep, 'recovered', now, `${ep.triggers.join(', ')} ok before ${ep.ladder[ep.stepIndex] ?? 'the next step'} was taken`, ended);
    events.push(`episode ${ep.id} recovered without a further step`);
    ep = null;
    return out({ kind: 'none', why: 'recovered' }, 'info', 'episode recovered');
  }
  if (j.kind === 'pending') return out({ kind: 'wait', until: null, why: j.why }, 'debug', 'judgment pending');
  if (pauseActive(p.pause, now)) {
    const pz = p.pause!;
    return out(
      { kind: 'wait', until: pz.until, why: `paused${pz.reason ? ` (${pz.reason})` : ''}${pz.until === null ? ' until resumed' : ` until ${iso(pz.until)}`}` },
      'info',
      `paused: not taking ${ep.ladder[ep.stepIndex] ?? 'the next step'}`,
    );
  }

  // PID 1 became the cause during an episode that started without it: reexec before what is left.
  if (ep.stepIndex < ep.ladder.length && !ep.ladder.includes('reexec-systemd') && p.steps.includes('reexec-systemd') && pid1Cause(observed.results)) {
    ep.ladder.splice(ep.stepIndex, 0, 'reexec-systemd');
    events.push(`reexec-systemd added before ${ep.ladder[ep.stepIndex + 1]}: ${pid1Cause(observed.results)}`);
  }
  for (;;) {
    const step = ep.ladder[ep.stepIndex];
    if (step === undefined) {
      endEpisode(s, ep, 'exhausted', now, `${ep.triggers.join(', ')} still failing after the last step; no action until they are ok again`, ended);
      events.push(`episode ${ep.id} exhausted`);
      ep = null;
      return out({ kind: 'none', why: 'exhausted' }, 'warn', 'episode exhausted: every step taken or skipped, still failing');
    }
    const res = resolveStep(s, ep, step, m, observed, now, p);
    if (res.kind === 'need') return { next: { kind: 'need', units: [res.unit] }, state, recorded: [], ended: [], log: { level: 'debug', msg: 'need unit facts', events: [] } };
    if (res.kind === 'defer') {
      ep.phase = 'deferred';
      ep.deferred = step;
      ep.judgeAt = res.until;
      events.push(`${step} deferred: ${res.reason}`);
      return out({ kind: 'wait', until: res.until, why: res.reason }, 'info', `${step} deferred`);
    }
    const seq = s.actions.filter((a) => a.episodeId === ep!.id).length + 1;
    const record: ActionRecord = {
      id: `${ep.id}/${seq}`,
      episodeId: ep.id,
      step,
      action: res.action,
      ...(res.unit ? { unit: res.unit } : {}),
      // An approved step is carried out like any in enforce mode (budgets, guards, the outcome's meaning).
      mode: ep.mode === 'dry-run' ? 'dry-run' : 'enforce',
      intentAt: now,
      reason: res.reason,
    };
    if (res.kind === 'skip' || res.kind === 'skip-settle') {
      // A step proposed earlier and now skipped (its budget ran out meanwhile) is no longer proposed.
      if (s.proposal?.episodeId === ep.id && s.proposal.step === step) s.proposal = null;
      record.outcome = { result: 'skipped', detail: res.reason, at: now };
      pushAction(s, record);
      recorded.push(record);
      events.push(`${step} skipped: ${res.reason}`);
      if (res.kind === 'skip-settle') {
        ep.phase = 'settling';
        ep.stepStartedAt = now;
        ep.judgeAt = res.judgeAt;
        ep.deferred = null;
        return out({ kind: 'wait', until: res.judgeAt, why: res.reason }, 'warn', `${step} skipped`);
      }
      ep.stepIndex += 1;
      ep.deferred = null;
      delete ep.retries;
      continue;
    }
    if (ep.mode === 'approve' && (p.approvalSteps ?? DEFAULT_APPROVAL_STEPS).includes(step)) {
      const gate = approvalGate(s, ep, record, observed.approval ?? null, now, p, events, recorded, ended);
      if (gate) return out(gate.next, gate.level, gate.msg);
    }
    pushAction(s, record);
    ep.phase = 'acting';
    ep.stepStartedAt = now;
    ep.judgeAt = null;
    // A restart is spent when ordered; a reboot only when it is issued (applyOutcome): a refused or
    // failed drain-reboot spends nothing.
    if (record.mode === 'enforce') {
      if (record.action === 'reexec_systemd') (s.budgets.reexecs ??= []).push(now);
      else if (record.action !== 'reboot' && record.unit) (s.budgets.restarts[record.unit] ??= []).push(now);
    }
    return out({ kind: 'act', action: record }, 'info', `${step}: ${record.action}${record.unit ? ` ${record.unit}` : ''}${ep.mode === 'dry-run' ? ' (dry-run)' : ''}`);
  }
}

/**
 * Records how an action ended and starts the settle period. Pure. An outcome for an action that is
 * not in the state (pruned) changes only the episode.
 */
export function applyOutcome(state: LadderState, actionId: string, outcome: ActionOutcome, p: Pick<LadderPolicy, 'settleMs' | 'retryInitialMs' | 'retryMaxMs' | 'retryJitter'>): LadderState {
  const s: LadderState = structuredClone(state);
  const a = s.actions.find((x) => x.id === actionId);
  if (!a) return s;
  a.outcome = outcome;
  const retry = !!outcome.retry && a.mode === 'enforce' && (outcome.result === 'skipped' || outcome.result === 'failure');
  if (a.mode === 'enforce') {
    // Only a reboot actually issued spends the reboot budget (an interrupted one is judged by the boot id).
    if (a.step === 'drain-reboot' && outcome.result === 'success') s.budgets.reboots.push(a.intentAt);
    // A restart refused before it was ordered (storm guard) gives its budget entry back.
    if (retry && a.unit && a.step !== 'drain-reboot') {
      const times = s.budgets.restarts[a.unit] ?? [];
      const i = times.lastIndexOf(a.intentAt);
      if (i >= 0) times.splice(i, 1);
      if (!times.length) delete s.budgets.restarts[a.unit];
    }
  }
  const ep = s.episode;
  if (ep && ep.id === a.episodeId && ep.state === 'active' && ep.phase === 'acting') {
    if (retry) {
      ep.retries = (ep.retries ?? 0) + 1;
      ep.phase = 'retrying';
      ep.judgeAt = outcome.at + retryBackoffMs(ep.retries, p);
    } else {
      ep.phase = 'settling';
      ep.judgeAt = outcome.at + p.settleMs;
      delete ep.retries;
    }
    ep.deferred = null;
  }
  if (a.step === 'drain-reboot' && a.mode === 'enforce') {
    // Kept while the reboot is still wanted; a reboot that happened clears it.
    s.rebootRequest =
      outcome.result === 'success' ? null : { episodeId: a.episodeId, at: a.intentAt, reason: a.reason, result: outcome.result, detail: outcome.detail };
  }
  return s;
}

/**
 * The outcome of an action whose intent was written but whose outcome was not (the agent crashed or
 * was killed in between). Never "retry": an interrupted step counts as taken.
 * - a restart succeeded if the unit entered `active` at or after the intent; otherwise it failed;
 * - a reboot happened if the boot id changed since the intent; otherwise it failed (a Kubernetes
 *   drain in progress is resumed or rolled back by the DrainRebooter's own state, not here);
 * - a dry-run action did nothing either way.
 */
export function judgeInterrupted(a: ActionRecord, facts: UnitFacts | { error: string } | undefined, bootId: string | undefined, now: number): ActionOutcome {
  const base = { at: now, inferred: true } as const;
  if (a.mode === 'dry-run') return { ...base, result: 'dry_run', detail: 'interrupted dry-run action; nothing was changed' };
  if (a.step === 'drain-reboot') {
    if (a.bootId && bootId && a.bootId !== bootId) return { ...base, result: 'success', detail: `the node rebooted (boot id ${a.bootId} -> ${bootId})` };
    return { ...base, result: 'failure', detail: 'the agent stopped before the drain-reboot request finished; the node did not reboot; not repeated' };
  }
  if (a.step === 'reexec-systemd') return { ...base, result: 'failure', detail: 'the agent stopped while re-executing systemd; not repeated (the systemd check tells whether PID 1 answers)' };
  if (!facts || 'error' in facts) {
    return { ...base, result: 'failure', detail: `the agent stopped during the restart of ${a.unit}, and its state cannot be read (${facts && 'error' in facts ? facts.error : 'not asked'}); not repeated` };
  }
  if (facts.lastStartMs !== null && facts.lastStartMs >= a.intentAt) {
    return { ...base, result: 'success', detail: `${a.unit} entered active at ${iso(facts.lastStartMs)}, after the restart was ordered` };
  }
  return { ...base, result: 'failure', detail: `the agent stopped before the restart of ${a.unit} took effect (it is ${facts.activeState}); not repeated` };
}
