import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { overcommitSamples } from '../checks/node-overcommit.js';
import { CHECK_STATUSES, type CheckResult } from '../checks/types.js';
import type { ActionName, ActionResult } from '../remediations/types.js';
import { VERSION } from './version.js';

const ACTIONS: readonly ActionName[] = ['restart_kubelet', 'restart_docker', 'restart_containerd', 'cordon', 'drain', 'reboot', 'uncordon'];
const RESULTS: readonly ActionResult[] = ['success', 'failure', 'dry_run', 'skipped'];
/** How often the event loop's delay is sampled for nodejs_eventloop_lag_*. */
const EVENT_LOOP_SAMPLE_MS = 1000;

/** The agent's metrics, in a registry of its own so that several agents can live in one process (tests). */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly checkStatus: Gauge<'check' | 'status'>;
  private readonly checkDuration: Gauge<'check'>;
  private readonly actions: Counter<'action' | 'result'>;
  private readonly lastSweep: Gauge;
  private readonly sweeps: Counter;
  private readonly reloads: Counter<'result'>;
  private readonly remediators: Gauge;
  private readonly overcommit: Gauge<'resource' | 'kind'>;

  constructor() {
    const registers = [this.registry];
    // prom-client samples the event loop's delay with a 10 ms timer by default: 100 wake-ups a
    // second, which was most of an idle agent's CPU (an agent with every check off used 0.7-1 % of a
    // core, bare Node.js 0.02 %). A lag worth knowing about in an agent that sweeps every 15 s is
    // hundreds of milliseconds; a 1 s sampling timer still records it, at one wake-up a second.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    // prom-client's gauges named *_total break Prometheus naming rules (promtool flags them); the same
    // counts stay available, per type, as nodejs_active_handles / _requests / _resources.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
    new Gauge({ name: 'nodemedic_build_info', help: 'Always 1; the version label says which nodemedic is running.', labelNames: ['version'], registers }).set(
      { version: VERSION },
      1,
    );
    this.checkStatus = new Gauge({
      name: 'nodemedic_check_status',
      help: "1 for the check's current status (ok, problem or unknown), 0 for the other two.",
      labelNames: ['check', 'status'],
      registers,
    });
    this.checkDuration = new Gauge({
      name: 'nodemedic_check_duration_seconds',
      help: 'How long the last run of the check took.',
      labelNames: ['check'],
      registers,
    });
    this.actions = new Counter({
      name: 'nodemedic_remediation_actions_total',
      help: 'Remediation actions decided, by action and result (dry_run: decided but not carried out).',
      labelNames: ['action', 'result'],
      registers,
    });
    for (const action of ACTIONS) for (const result of RESULTS) this.actions.inc({ action, result }, 0);
    this.lastSweep = new Gauge({
      name: 'nodemedic_last_sweep_timestamp_seconds',
      help: 'Unix time the last complete check sweep finished.',
      registers,
    });
    this.sweeps = new Counter({ name: 'nodemedic_sweeps_total', help: 'Check sweeps completed.', registers });
    this.reloads = new Counter({
      name: 'nodemedic_config_reloads_total',
      help: 'Configuration reloads (SIGHUP), by result: applied, or rejected with the running config kept whole.',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['applied', 'rejected']) this.reloads.inc({ result }, 0);
    this.remediators = new Gauge({
      name: 'nodemedic_remediators',
      help: 'Remediation components started and not yet stopped; 1 in a running agent (more would act twice).',
      registers,
    });
    this.overcommit = new Gauge({
      name: 'nodemedic_node_overcommit_ratio',
      help: "The node's pods' summed CPU or memory requests or limits over the Node's allocatable (the overcommit check); limits count only what is set.",
      labelNames: ['resource', 'kind'],
      registers,
    });
  }

  reloaded(result: 'applied' | 'rejected'): void {
    this.reloads.inc({ result });
  }

  setRemediators(n: number): void {
    this.remediators.set(n);
  }

  private rendered: { at: number; text: Promise<string> } | undefined;

  /**
   * The exposition text, rendered at most once per `maxAgeMs`. Rendering costs ~2 ms of CPU (mostly
   * prom-client's process metrics); scrapers hitting the agent in a loop would otherwise take a core
   * from the node we are trying to heal. Concurrent scrapes share one rendering.
   */
  render(maxAgeMs = 1000): Promise<string> {
    const now = performance.now();
    if (!this.rendered || now - this.rendered.at >= maxAgeMs) {
      const text = this.registry.metrics();
      this.rendered = { at: now, text };
      // A failed rendering is not kept for the next scraper.
      text.catch(() => {
        if (this.rendered?.text === text) this.rendered = undefined;
      });
    }
    return this.rendered.text;
  }

  observe(r: CheckResult): void {
    for (const status of CHECK_STATUSES) this.checkStatus.set({ check: r.check, status }, r.status === status ? 1 : 0);
    this.checkDuration.set({ check: r.check }, r.durationSeconds);
    // Figures that could not be had (`unknown`) are no figures: the series go rather than stay stale.
    if (r.check === 'overcommit') {
      this.overcommit.reset();
      for (const { resource, kind, value } of overcommitSamples(r)) this.overcommit.set({ resource, kind }, value);
    }
  }

  /** Drops series of checks that are no longer configured (after a reload). */
  forget(check: string): void {
    for (const status of CHECK_STATUSES) this.checkStatus.remove({ check, status });
    this.checkDuration.remove({ check });
    if (check === 'overcommit') this.overcommit.reset();
  }

  sweepFinished(atMs: number): void {
    this.lastSweep.set(atMs / 1000);
    this.sweeps.inc();
  }

  recordAction = (action: ActionName, result: ActionResult): void => {
    this.actions.inc({ action, result });
  };
}
