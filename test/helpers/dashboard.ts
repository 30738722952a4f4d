import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './built.js';

export const DASHBOARD = join(REPO_ROOT, 'monitoring', 'dashboard.json');

export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Array<{ refId: string; expr: string; datasource?: { type?: string; uid?: string } }>;
}

export interface Dashboard {
  uid: string;
  title: string;
  templating: { list: Array<{ name: string; type: string; query: unknown; datasource?: { uid?: string } }> };
  panels: DashboardPanel[];
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
}

/**
 * A panel query with Grafana's variables replaced the way Grafana would for a job named `job`
 * and all nodes, so that Prometheus (or promtool) can evaluate it.
 */
export function concreteQuery(expr: string, job = 'nodemedic'): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__range', '1h')
    .replaceAll('$__interval', '1m')
    .replaceAll('$job', job)
    .replaceAll('$instance', '.*');
}

/** Every target of every panel, as `{ panel, refId, expr }` with variables substituted. */
export function dashboardQueries(d: Dashboard = loadDashboard(), job = 'nodemedic'): Array<{ panel: string; refId: string; expr: string }> {
  return d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, refId: t.refId, expr: concreteQuery(t.expr, job) })));
}
