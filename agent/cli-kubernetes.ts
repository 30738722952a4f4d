/**
 * The runbook's node operations as commands: `nodemedic cordon|uncordon|drain|reboot`. They act on
 * this node (`nodeName`) unless `--node` names another (except `reboot`, which can only reboot the
 * machine it runs on). Each prints what it does, pod by pod, and a summary; exit 0 when done, 1 when
 * refused or failed, 64 usage, 69 Kubernetes access not configured, 78 invalid config (an unreadable kubeconfig too).
 */
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import type { Logger } from 'pino';
import { systemClock } from '../platform/clock.js';
import { configOption, type CommandIO, type CommandSpec, type ParsedArgs } from './cli-types.js';
import { loadConfig, type Config } from './config.js';
import { formatDuration, parseDuration } from '../platform/duration.js';
import { ConfigError, EXIT, NotConfiguredError, UsageError } from '../platform/errors.js';
import { RealHost } from '../platform/host.js';
import { createLogger } from './logger.js';
import { connectKubernetes, type KubeAccess, type KubeApi } from '../platform/kube-client.js';
import { cordon, cordonedBy, uncordon } from '../remediations/kubernetes/cordon.js';
import { drainPods, type DrainProgress } from '../remediations/kubernetes/drain.js';
import { EventRecorder } from '../remediations/kubernetes/events.js';
import { publishMaintenanceCondition } from '../remediations/kubernetes/maintenance.js';
import { PlanStore } from '../remediations/kubernetes/plan.js';
import { describeBlocked, planPods, type DrainPodPlan } from '../remediations/kubernetes/pods.js';
import { DrainRebootController } from '../remediations/kubernetes/rebooter.js';

interface Ctx {
  config: Config;
  source: string;
  node: string;
  api: KubeApi;
  logger: Logger;
  events: EventRecorder;
  operator: string;
}

/** `operator/<user>`: who runs an operator command (the sudo user when run with sudo), for marks and Events. */
export function operatorName(env: NodeJS.ProcessEnv): string {
  let user = env.SUDO_USER || env.USER || '';
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = 'unknown';
    }
  }
  return `operator/${user}`;
}

/**
 * Kubernetes access for a command that drains this node (`reboot`, `maintain`): a ConfigError for an
 * unreadable kubeconfig, a NotConfiguredError (exit 69) when there is none.
 */
export async function drainingAccess(config: Config, source: string, io: CommandIO, command: string): Promise<KubeAccess> {
  let kube;
  try {
    kube = await connectKubernetes(config.kubernetes.kubeconfig, { env: io.env });
  } catch (e) {
    throw new ConfigError(source, [(e as Error).message]);
  }
  if (!kube) throw new NotConfiguredError(`Kubernetes access is not configured (${source}: kubernetes.kubeconfig is empty and this is not a pod); \`nodemedic ${command}\` drains first and needs it: set kubernetes.kubeconfig in the config`);
  return kube;
}

/** Whether `pid` runs on this machine (signal 0 tests it); a plan without one counts as alive. */
function processAlive(pid: number | undefined): boolean {
  if (!pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function context(args: ParsedArgs, io: CommandIO): Promise<Ctx> {
  const { config, source } = loadConfig(args.values.config as string | undefined, io.env);
  const node = (args.values.node as string | undefined) ?? config.nodeName;
  let access;
  try {
    access = await connectKubernetes(config.kubernetes.kubeconfig, { env: io.env });
  } catch (e) {
    throw new ConfigError(source, [(e as Error).message]);
  }
  if (!access) {
    throw new NotConfiguredError(`Kubernetes access is not configured (${source}: kubernetes.kubeconfig is empty and this is not a pod); this command needs it: set kubernetes.kubeconfig in the config`);
  }
  const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level, 'stderr');
  return {
    config,
    source,
    node,
    api: access.api,
    logger,
    events: new EventRecorder(access.api, { name: node }, systemClock, logger, 'nodemedic-cli'),
    operator: operatorName(io.env),
  };
}

/** Prints a drain's progress pod by pod, and step messages, as the operator commands show them. */
export function progressPrinter(io: CommandIO, retryMs: number): (p: DrainProgress | { type: 'step'; message: string }) => void {
  return (p) => {
    switch (p.type) {
      case 'step':
        io.out(`${p.message}\n`);
        break;
      case 'keep':
        io.out(`keeping pod ${p.pod}: ${p.why}\n`);
        break;
      case 'evict':
        io.out(`evicting pod ${p.pod}${p.note ? ` (${p.note})` : ''}\n`);
        break;
      case 'delete':
        io.out(`deleting finished pod ${p.pod}\n`);
        break;
      case 'blocked':
        io.out(`pod ${p.pod}: eviction refused (${p.detail}); retrying in ${formatDuration(retryMs)} (attempt ${p.attempt})\n`);
        break;
      case 'retry':
        io.out(`pod ${p.pod}: ${p.detail}; retrying in ${formatDuration(retryMs)}\n`);
        break;
      case 'gone':
        io.out(`pod ${p.pod} ${p.how}\n`);
        break;
      case 'failed':
        io.out(`pod ${p.pod}: FAILED: ${p.detail}\n`);
        break;
    }
  };
}

function printPlan(io: CommandIO, plan: DrainPodPlan): void {
  for (const k of plan.keep) io.out(`would keep pod ${k.id} (${k.disposition.action === 'keep' && k.disposition.why === 'daemonset' ? 'DaemonSet' : 'mirror'} pod)\n`);
  for (const d of plan.delete) io.out(`would delete finished pod ${d.id}\n`);
  for (const e of plan.evict) io.out(`would evict pod ${e.id}${e.disposition.action === 'evict' && e.disposition.note ? ` (${e.disposition.note})` : ''}\n`);
  for (const b of plan.blocked) io.out(`cannot evict pod ${b.id} (${b.disposition.action === 'block' && b.disposition.why === 'emptydir' ? 'emptyDir volume' : 'no controller'})\n`);
}

async function failWith(io: CommandIO, ctx: Ctx, message: string): Promise<number> {
  io.err(`nodemedic: ${message}\n`);
  return EXIT.problem;
}

const nodeOption = { node: { type: 'string', short: 'n' } } as const;

export const cordonCommand: CommandSpec = {
  name: 'cordon',
  summary: 'mark a node unschedulable, with a nodemedic.io/ mark saying who and why',
  usage: 'nodemedic cordon [--config F] [--node N] [--reason TEXT]',
  options: { ...configOption, ...nodeOption, reason: { type: 'string' } },
  async run(args, io) {
    const ctx = await context(args, io);
    const reason = (args.values.reason as string | undefined) ?? 'cordoned with nodemedic cordon';
    io.out(`cordoning node ${ctx.node}\n`);
    let c;
    try {
      // An operator's cordon of a cordoned node changes nothing, even one of their own: adopting a mark
      // with the same owner is for the agent's lost plans, not for a second command.
      c = await cordon(ctx.api, ctx.node, { by: ctx.operator, token: randomUUID(), reason, at: new Date().toISOString() }, { adoptOwnMark: false });
    } catch (e) {
      return failWith(io, ctx, `cannot cordon ${ctx.node}: ${(e as Error).message}`);
    }
    if (c.state === 'cordoned') {
      await ctx.events.record({ reason: 'NodemedicCordon', type: 'Normal', message: `${ctx.operator} cordoned ${ctx.node}: ${reason}` });
      io.out(`node/${ctx.node} cordoned (by ${ctx.operator}: ${reason})\n`);
    } else {
      io.out(`node/${ctx.node} was already cordoned by ${c.state === 'already-cordoned' ? c.by : 'this mark'}; nothing changed\n`);
    }
    return EXIT.ok;
  },
};

export const uncordonCommand: CommandSpec = {
  name: 'uncordon',
  summary: 'make a node schedulable again (whoever cordoned it) and clear the nodemedic.io/ mark',
  usage: 'nodemedic uncordon [--config F] [--node N]',
  options: { ...configOption, ...nodeOption },
  async run(args, io) {
    const ctx = await context(args, io);
    const store = new PlanStore(ctx.config.stateDir);
    const local = ctx.node === ctx.config.nodeName;
    let plan;
    try {
      plan = local ? await store.read() : undefined;
    } catch (e) {
      io.err(`nodemedic: warning: ${(e as Error).message}\n`);
    }
    // The operator takes over from a plan that ended badly, or whose `nodemedic maintain` is gone (SIGKILL).
    const over = !!plan && (plan.phase === 'recovery-failed' || plan.phase === 'recovering' || plan.phase === 'maintenance-failed' || (plan.phase === 'maintaining' && !processAlive(plan.maintenance?.pid)));
    if (plan && !over) {
      io.err(`nodemedic: warning: a drain-reboot is in flight on this node (episode ${plan.episodeId}, phase ${plan.phase}); uncordoning anyway\n`);
    }
    let node;
    try {
      node = await ctx.api.getNode(ctx.node);
    } catch (e) {
      return failWith(io, ctx, `cannot read node ${ctx.node}: ${(e as Error).message}`);
    }
    const was = node.spec?.unschedulable ? cordonedBy(node) : undefined;
    io.out(`uncordoning node ${ctx.node}${was ? ` (cordoned by ${was})` : ''}\n`);
    let u;
    try {
      u = await uncordon(ctx.api, ctx.node, undefined);
    } catch (e) {
      return failWith(io, ctx, `cannot uncordon ${ctx.node}: ${(e as Error).message}`);
    }
    if (plan && over) {
      // The operator takes over: the agent may act on this node again (its ladder too, after a maintenance).
      await store.remove();
      io.out(`cleared the drain-reboot plan of episode ${plan.episodeId} (${plan.phase})\n`);
      if (plan.maintenance) {
        await publishMaintenanceCondition(ctx.api, ctx.node, systemClock, ctx.logger, { status: 'False', reason: 'MaintenanceCleared', message: `${ctx.operator} ended the maintenance (${plan.maintenance.work}; ${plan.maintenance.reason}) with nodemedic uncordon` });
      }
    }
    if (u === 'uncordoned') {
      await ctx.events.record({ reason: 'NodemedicUncordon', type: 'Normal', message: `${ctx.operator} uncordoned ${ctx.node}${was ? ` (it was cordoned by ${was})` : ''}` });
      io.out(`node/${ctx.node} uncordoned\n`);
    } else {
      io.out(`node/${ctx.node} was not cordoned; nothing changed\n`);
    }
    return EXIT.ok;
  },
};

export const drainCommand: CommandSpec = {
  name: 'drain',
  summary: 'cordon a node, then evict its pods (DaemonSet and mirror pods stay), like kubectl drain',
  usage: 'nodemedic drain [--config F] [--node N] [--dry-run] [--timeout D]',
  options: { ...configOption, ...nodeOption, 'dry-run': { type: 'boolean' }, timeout: { type: 'string' } },
  async run(args, io) {
    let timeoutMs: number | undefined;
    if (typeof args.values.timeout === 'string') {
      try {
        timeoutMs = parseDuration(args.values.timeout);
      } catch {
        throw new UsageError(`--timeout: must be a duration with a unit (500ms, 10s, 5m, 2h), got ${JSON.stringify(args.values.timeout)}`);
      }
    }
    const ctx = await context(args, io);
    const drainCfg = ctx.config.remediation.drain;
    timeoutMs ??= parseDuration(drainCfg.timeout);
    let plan: DrainPodPlan;
    try {
      plan = planPods(await ctx.api.listPods(`spec.nodeName=${ctx.node}`), drainCfg);
    } catch (e) {
      return failWith(io, ctx, `cannot list the pods of ${ctx.node}: ${(e as Error).message}`);
    }
    if (args.values['dry-run']) {
      io.out(`dry run: would cordon node ${ctx.node}\n`);
      printPlan(io, plan);
      io.out(`dry run summary: would evict ${plan.evict.length}, delete ${plan.delete.length} finished, keep ${plan.keep.length}${plan.blocked.length ? `; ${describeBlocked(plan.blocked)}` : ''}\n`);
      return plan.blocked.length ? EXIT.problem : EXIT.ok;
    }
    if (plan.blocked.length) {
      printPlan(io, { evict: [], delete: [], keep: [], blocked: plan.blocked });
      return failWith(io, ctx, `${describeBlocked(plan.blocked)}; nothing was changed`);
    }
    try {
      const c = await cordon(ctx.api, ctx.node, { by: ctx.operator, token: randomUUID(), reason: 'nodemedic drain', at: new Date().toISOString() });
      if (c.state === 'cordoned') {
        await ctx.events.record({ reason: 'NodemedicCordon', type: 'Normal', message: `${ctx.operator} cordoned ${ctx.node} to drain it` });
        io.out(`node/${ctx.node} cordoned\n`);
      } else io.out(`node/${ctx.node} already cordoned by ${c.state === 'already-cordoned' ? c.by : 'this mark'}\n`);
      // Listed again after the cordon, as the scheduler may have placed pods meanwhile.
      plan = planPods(await ctx.api.listPods(`spec.nodeName=${ctx.node}`), drainCfg);
    } catch (e) {
      return failWith(io, ctx, `cannot cordon ${ctx.node}: ${(e as Error).message}`);
    }
    if (plan.blocked.length) return failWith(io, ctx, `${describeBlocked(plan.blocked)}; the node stays cordoned`);
    await ctx.events.record({ reason: 'NodemedicDrainStarted', type: 'Normal', message: `${ctx.operator} is draining ${ctx.node}: ${plan.evict.length} pods to evict, ${plan.delete.length} finished pods to delete` });
    const retryMs = 5000;
    const abort = new AbortController();
    const onSignal = (): void => abort.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.once('SIGHUP', onSignal);
    let out;
    try {
      out = await drainPods({
        api: ctx.api,
        plan,
        clock: systemClock,
        signal: abort.signal,
        settings: { timeoutMs, gracePeriodSeconds: drainCfg.gracePeriodSeconds, evictionRetryMs: retryMs },
        onProgress: progressPrinter(io, retryMs),
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onSignal);
    }
    await ctx.events.record({ reason: out.ok ? 'NodemedicDrainSucceeded' : 'NodemedicDrainFailed', type: out.ok ? 'Normal' : 'Warning', message: `${ctx.operator}: ${out.summary}` });
    io.out(`summary: ${out.summary}; node/${ctx.node} stays cordoned (nodemedic uncordon to undo)\n`);
    return out.ok ? EXIT.ok : EXIT.problem;
  },
};

export const rebootCommand: CommandSpec = {
  name: 'reboot',
  summary: 'guards, reboot lease, cordon, drain and reboot this node; the agent uncordons it once healthy after the boot',
  usage: 'nodemedic reboot [--config F] [--reason TEXT] [--dry-run]',
  options: { ...configOption, ...nodeOption, reason: { type: 'string' }, 'dry-run': { type: 'boolean' } },
  async run(args, io) {
    const { config, source } = loadConfig(args.values.config as string | undefined, io.env);
    const node = args.values.node as string | undefined;
    if (node !== undefined && node !== config.nodeName) {
      throw new UsageError(`--node: reboot acts on the machine it runs on (${config.nodeName}); run it on ${node} instead`);
    }
    const kube = await drainingAccess(config, source, io, 'reboot');
    const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level, 'stderr');
    const host = new RealHost({ commandPrefix: config.hostCommandPrefix });
    const controller = new DrainRebootController({
      config,
      host,
      logger,
      clock: systemClock,
      recordAction: () => {},
      kube,
      component: 'nodemedic-cli',
    });
    const reason = (args.values.reason as string | undefined) ?? `requested by ${operatorName(io.env)} with nodemedic reboot`;
    const episodeId = `cli-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
    // SIGHUP (the SSH session that ran it went away) ends it like SIGINT and SIGTERM: the drain is
    // aborted and rolled back (uncordon if ours, slot released, plan removed), never left half done.
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const onSignal = (sig: NodeJS.Signals): void => {
      io.err(`nodemedic: ${sig}: stopping; rolling back the drain unless the reboot was already issued\n`);
      void controller.stop();
    };
    for (const sig of signals) process.once(sig, onSignal);
    let r;
    try {
      r = await controller.run({ episodeId, reason, dryRun: !!args.values['dry-run'], origin: 'cli', onProgress: progressPrinter(io, 5000) });
    } finally {
      for (const sig of signals) process.off(sig, onSignal);
      await controller.stop();
    }
    io.out(`summary: ${r.result}: ${r.detail}\n`);
    if (r.result === 'success') io.out('the agent uncordons the node and releases the lease once it is healthy after the boot\n');
    return r.result === 'success' || r.result === 'dry_run' ? EXIT.ok : EXIT.problem;
  },
};

/** Listed in agent/cli.ts's command table. */
export const KUBERNETES_COMMANDS: readonly CommandSpec[] = [cordonCommand, uncordonCommand, drainCommand, rebootCommand];
