import { STEP_NAMES } from './config.js';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LadderPolicy } from './decide.js';
import type { Episode, EpisodeState, LadderState } from './types.js';

const EPISODE_STATES: readonly EpisodeState[] = ['active', 'recovered', 'exhausted', 'abandoned'];
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const EPISODE_STATE = 'nodemedic_remediation_episode_state';
const EPISODES_TOTAL = 'nodemedic_remediation_episodes_total';
const BUDGET_REMAINING = 'nodemedic_remediation_budget_remaining';

/** What the gauges read at scrape time. */
export interface LadderView {
  state(): LadderState;
  policy(): LadderPolicy;
  now(): number;
  /** Why remediation waits without progress (`retrying`, `recovery-unknown`). */
  waiting?(): string[];
}

const WAITING = 'nodemedic_remediation_waiting';
const PENDING_APPROVAL = 'nodemedic_remediation_pending_approval';
const WAITING_REASONS = ['retrying', 'recovery-unknown'] as const;

/** The step an ended episode stopped at: the last step it took or skipped, `none` before any. */
export function endStep(s: LadderState, ep: Episode): string {
  return s.actions.filter((a) => a.episodeId === ep.id).at(-1)?.step ?? 'none';
}

/**
 * The ladder's own series (beyond SPEC's `nodemedic_remediation_actions_total`), used by
 * monitoring/alerts.yaml and the dashboard:
 * - `nodemedic_remediation_episode_state{state}`: 1 for the state of the current (or last) episode;
 * - `nodemedic_remediation_episodes_total{result,step}`: episodes ended, by result and last step;
 * - `nodemedic_remediation_budget_remaining{kind,unit}`: restarts (per unit) and reboot requests
 *   left in their rolling windows.
 * Gauges are computed at scrape time (budgets free up by themselves as time passes). Registered in
 * the agent's registry; a config reload replaces the gauges and keeps the counter.
 */
export class LadderMetrics {
  private readonly episodes: Counter<'result' | 'step'>;

  constructor(
    private readonly registry: Registry,
    view: LadderView,
  ) {
    for (const name of [EPISODE_STATE, BUDGET_REMAINING, WAITING, PENDING_APPROVAL]) registry.removeSingleMetric(name);
    const registers = [registry];
    new Gauge({
      name: PENDING_APPROVAL,
      help: 'remediation.mode approve: 1 for the step proposed and waiting for a person (nodemedic approve / reject), 0 for the others.',
      labelNames: ['step'],
      registers,
      collect() {
        const pending = view.state().proposal?.step;
        for (const step of STEP_NAMES) this.set({ step }, pending === step ? 1 : 0);
      },
    });
    new Gauge({
      name: WAITING,
      help: 'Remediation waiting without progress: reason="retrying" (a refused drain-reboot or runtime restart backing off), reason="recovery-unknown" (after a reboot, the API or the checks cannot tell yet; recovery.timeout not running).',
      labelNames: ['reason'],
      registers,
      collect() {
        const now = view.waiting?.() ?? [];
        for (const reason of WAITING_REASONS) this.set({ reason }, now.includes(reason) ? 1 : 0);
      },
    });
    new Gauge({
      name: EPISODE_STATE,
      help: 'Remediation episode: 1 for the state (active, recovered, exhausted, abandoned) of the current or last episode, 0 for the others.',
      labelNames: ['state'],
      registers,
      collect() {
        const current = view.state().episode?.state;
        for (const state of EPISODE_STATES) this.set({ state }, current === state ? 1 : 0);
      },
    });
    new Gauge({
      name: BUDGET_REMAINING,
      help: 'Remediation actions left in their rolling budget: kind="restart" per unit (per hour), kind="reboot" (reboot requests per day).',
      labelNames: ['kind', 'unit'],
      registers,
      collect() {
        const s = view.state();
        const p = view.policy();
        const now = view.now();
        this.reset();
        for (const unit of new Set([p.units.kubelet, p.units.docker, p.units.containerd])) {
          const used = (s.budgets.restarts[unit] ?? []).filter((t) => now - t < HOUR).length;
          this.set({ kind: 'restart', unit }, Math.max(0, p.restartsPerHour - used));
        }
        const held = s.budgets.noRebootBefore !== null && now < s.budgets.noRebootBefore;
        const used = s.budgets.reboots.filter((t) => now - t < DAY).length;
        this.set({ kind: 'reboot' }, held ? 0 : Math.max(0, p.rebootsPerDay - used));
      },
    });
    const existing = registry.getSingleMetric(EPISODES_TOTAL) as Counter<'result' | 'step'> | undefined;
    if (existing) this.episodes = existing;
    else {
      this.episodes = new Counter({ name: EPISODES_TOTAL, help: 'Remediation episodes ended, by result (recovered, exhausted, abandoned) and the last step taken.', labelNames: ['result', 'step'], registers });
      // Every series from 0, so that increase() sees the first episode after an agent (re)start.
      for (const result of ['recovered', 'exhausted', 'abandoned']) for (const step of [...STEP_NAMES, 'none']) this.episodes.inc({ result, step }, 0);
    }
  }

  episodeEnded(s: LadderState, ep: Episode): void {
    this.episodes.inc({ result: ep.state, step: endStep(s, ep) });
  }

  /** Drops the gauges (they read this remediator's state); the counter stays for the next one. */
  close(): void {
    for (const name of [EPISODE_STATE, BUDGET_REMAINING, WAITING, PENDING_APPROVAL]) this.registry.removeSingleMetric(name);
  }
}
