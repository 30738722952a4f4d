import { existsSync, readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { validateDetailed } from 'node-cron';
import { parseDocument } from 'yaml';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import type { BaseCheckOptions } from '../checks/types.js';
import { remediationDefaults, remediationProblems, remediationSchema, type RemediationOptions } from '../remediations/config.js';
import { DURATION_PATTERN, parseDuration } from '../platform/duration.js';
import { ConfigError } from '../platform/errors.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** The effective configuration (defaults merged). Keys fixed by SPEC.md are marked there. */
export interface Config {
  /** The node the agent acts for; empty means `$NODEMEDIC_NODE_NAME`, else the host name. */
  nodeName: string;
  http: { listen: string };
  /** node-cron expression with a seconds field, for the check sweep. */
  schedule: string;
  /** argv prefix for commands that act on the node (systemctl, journalctl, rpm). */
  hostCommandPrefix: string[];
  stateDir: string;
  log: { level: (typeof LOG_LEVELS)[number] };
  checks: Record<string, BaseCheckOptions & Record<string, unknown>>;
  remediation: RemediationOptions;
  kubernetes: {
    /** A kubeconfig file; empty: in-cluster config when running in a pod, else no Kubernetes access. */
    kubeconfig: string;
    /** Node conditions are re-sent unchanged this often (else only on a status or reason change); 1m to 1h. */
    conditionHeartbeat: string;
  };
}

/** `/var/lib/nodemedic` for root; a per-user directory otherwise, so `npm start` works unprivileged. */
export function defaultStateDir(): string {
  if (process.getuid?.() === 0) return '/var/lib/nodemedic';
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'nodemedic');
}

export function defaultConfig(): Config {
  const checks: Config['checks'] = {};
  for (const def of CHECK_DEFINITIONS) checks[def.id] = structuredClone(def.defaults) as Config['checks'][string];
  return {
    nodeName: '',
    http: { listen: '0.0.0.0:20258' },
    schedule: '*/15 * * * * *',
    hostCommandPrefix: [],
    stateDir: defaultStateDir(),
    log: { level: 'info' },
    checks,
    remediation: structuredClone(remediationDefaults),
    kubernetes: { kubeconfig: '', conditionHeartbeat: '5m' },
  };
}

function rootSchema(): Record<string, unknown> {
  const checkProps: Record<string, unknown> = {};
  for (const def of CHECK_DEFINITIONS) checkProps[def.id] = def.schema;
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      nodeName: { type: 'string' },
      http: {
        type: 'object',
        additionalProperties: false,
        properties: { listen: { type: 'string', format: 'listen' } },
      },
      schedule: { type: 'string', format: 'cron' },
      hostCommandPrefix: { type: 'array', items: { type: 'string', minLength: 1 } },
      stateDir: { type: 'string', minLength: 1, pattern: '^/', description: 'an absolute path' },
      log: {
        type: 'object',
        additionalProperties: false,
        properties: { level: { enum: LOG_LEVELS } },
      },
      checks: { type: 'object', additionalProperties: false, properties: checkProps },
      remediation: remediationSchema,
      kubernetes: {
        type: 'object',
        additionalProperties: false,
        properties: { kubeconfig: { type: 'string' }, conditionHeartbeat: { type: 'string', format: 'duration' } },
      },
    },
  };
}

const LISTEN = /^(?:\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/;

let compiled: ReturnType<Ajv['compile']> | undefined;
function validator(): ReturnType<Ajv['compile']> {
  if (compiled) return compiled;
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
  ajv.addFormat('duration', new RegExp(DURATION_PATTERN));
  ajv.addFormat('cron', (s: string) => validateDetailed(s).valid);
  ajv.addFormat('listen', (s: string) => {
    const m = LISTEN.exec(s);
    return !!m && Number(m[1]) <= 65535;
  });
  compiled = ajv.compile(rootSchema());
  return compiled;
}

function keyPath(instancePath: string): string {
  const p = instancePath.replace(/^\//, '').split('/').filter(Boolean).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  return p.length ? p.join('.') : '(top level)';
}

function describe(e: ErrorObject, data: unknown): string {
  const at = keyPath(e.instancePath);
  const value = e.instancePath
    .split('/')
    .filter(Boolean)
    .reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), data);
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      return `${at === '(top level)' ? key : `${at}.${key}`}: unknown key`;
    }
    case 'format': {
      const f = (e.params as { format: string }).format;
      const got = JSON.stringify(value);
      if (f === 'duration') return `${at}: must be a duration with a unit (500ms, 10s, 5m, 2h), got ${got}`;
      if (f === 'cron') {
        const errs = typeof value === 'string' ? validateDetailed(value).errors.map((x) => x.message) : [];
        return `${at}: not a valid cron expression ${got}${errs.length ? ` (${errs.join('; ')})` : ''}`;
      }
      if (f === 'listen') return `${at}: must be HOST:PORT (e.g. 0.0.0.0:20258 or [::1]:20258), got ${got}`;
      return `${at}: ${e.message ?? 'invalid'}`;
    }
    case 'pattern': {
      // A schema says what its pattern means in `description`; a raw regex is no help to an operator.
      const what = (e.parentSchema as { description?: string } | undefined)?.description;
      return `${at}: must be ${what ?? `of the form ${(e.params as { pattern: string }).pattern}`}, got ${JSON.stringify(value)}`;
    }
    case 'anyOf':
      return `${at}: must be a whole number >= 0 or a percentage like "10%", got ${JSON.stringify(value)}`;
    case 'enum':
      return `${at}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(value)}`;
    default:
      return `${at}: ${e.message ?? 'invalid'}`;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Defaults overlaid with the user's values; arrays and scalars replace, objects merge key by key. */
function merge(base: unknown, over: unknown): unknown {
  if (over === undefined) return structuredClone(base);
  if (isPlainObject(base) && isPlainObject(over)) {
    const out: Record<string, unknown> = structuredClone(base);
    for (const [k, v] of Object.entries(over)) out[k] = k in base ? merge(base[k], v) : v;
    return out;
  }
  return over;
}

/**
 * Validates a user config (already parsed) merged over the defaults. Throws a ConfigError listing every
 * problem at once, each with its key path.
 */
export function resolveConfig(user: unknown, source = '(inline)'): Config {
  if (user === null || user === undefined) user = {};
  if (!isPlainObject(user)) throw new ConfigError(source, ['(top level): must be a mapping of keys to values']);
  const merged = merge(defaultConfig(), user);
  const validate = validator();
  if (!validate(merged)) {
    const errors = validate.errors ?? [];
    // An anyOf failure also reports each branch's own complaint; say it once, for the anyOf.
    const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
    const problems = [
      ...new Set(errors.filter((e) => e.keyword === 'anyOf' || !anyOfPaths.has(e.instancePath)).map((e) => describe(e, merged))),
    ];
    throw new ConfigError(source, problems);
  }
  const cfg = merged as Config;
  // Rules across keys, which a schema cannot say (a trigger must be a check that a restart can cure).
  const crossKey = remediationProblems(cfg.remediation, CHECK_DEFINITIONS.map((d) => d.id));
  // The heartbeat's range: under a minute is the write-every-sweep load it exists to avoid; over an hour, a
  // stale condition looks alive for too long.
  const hb = parseDuration(cfg.kubernetes.conditionHeartbeat);
  if (hb < 60_000 || hb > 3_600_000) crossKey.push(`kubernetes.conditionHeartbeat: must be between 1m and 1h, got ${JSON.stringify(cfg.kubernetes.conditionHeartbeat)}`);
  if (crossKey.length) throw new ConfigError(source, crossKey);
  // In a DaemonSet the downward API's spec.nodeName is the truth; the host name may differ from the Node's name.
  if (!cfg.nodeName) cfg.nodeName = process.env.NODEMEDIC_NODE_NAME || hostname();
  return cfg;
}

/** Parses YAML (JSON is YAML) and resolves it; syntax errors carry line and column. */
export function parseConfigText(text: string, source: string): Config {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => `YAML syntax: ${e.message.split('\n')[0]}`),
    );
  }
  return resolveConfig(doc.toJS(), source);
}

export interface ConfigSource {
  /** A path, or `(embedded defaults)`. */
  source: string;
  config: Config;
}

/** SPEC.md's lookup: `--config FILE`, else `$NODEMEDIC_CONFIG`, else /etc/nodemedic/config.yaml if it exists, else defaults. */
export function loadConfig(explicit?: string, env: NodeJS.ProcessEnv = process.env): ConfigSource {
  const path = explicit || env.NODEMEDIC_CONFIG || (existsSync('/etc/nodemedic/config.yaml') ? '/etc/nodemedic/config.yaml' : '');
  if (!path) return { source: '(embedded defaults)', config: resolveConfig({}, '(embedded defaults)') };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(path, [`cannot read: ${(e as Error).message}`]);
  }
  return { source: path, config: parseConfigText(text, path) };
}
