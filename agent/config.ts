import { existsSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { validateDetailed } from 'node-cron';
import { parseDocument } from 'yaml';
import { CHECK_DEFINITIONS } from '../checks/index.js';
import type { BaseCheckOptions } from '../checks/types.js';
import { remediationDefaults, remediationProblems, remediationSchema, type RemediationOptions } from '../remediations/config.js';
import { DURATION_PATTERN, formatDuration, parseDuration } from '../platform/duration.js';
import { ConfigError } from '../platform/errors.js';
import { readBoundedFile, readBoundedFileSync } from '../platform/host.js';

/**
 * A config file larger than this is refused before it is parsed. A full config with every key and
 * comments is under 10 KiB; 1 MiB leaves room for long comments while keeping a parse (which costs
 * about 60x the file's size in memory) far from hurting the node.
 */
export const CONFIG_MAX_BYTES = 1024 * 1024;
/** YAML aliases (`*a`) expanded per document; more is an alias bomb (yaml's own guard, made explicit). */
export const CONFIG_MAX_ALIASES = 100;
/** At most this many problems are listed; the rest are counted. */
const MAX_PROBLEMS = 30;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** The effective configuration (defaults merged). Keys fixed by docs/CONTRACT.md are marked there. */
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
      nodeName: { type: 'string', maxLength: 253 },
      http: {
        type: 'object',
        additionalProperties: false,
        properties: { listen: { type: 'string', format: 'listen' } },
      },
      schedule: { type: 'string', format: 'cron' },
      hostCommandPrefix: { type: 'array', items: { type: 'string', minLength: 1 } },
      stateDir: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^/', description: 'an absolute path' },
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
  const p = instancePath.replace(/^\//, '').split('/').filter(Boolean).map((s) => showKey(s.replace(/~1/g, '/').replace(/~0/g, '~')));
  return p.length ? p.join('.') : '(top level)';
}

/**
 * A value as quoted in an error: JSON, cut to a readable length (a 10 MB value is not echoed whole).
 */
export function showValue(value: unknown, max = 80): string {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  if (text.length <= max) return text;
  return `${text.slice(0, max - 20)}… (${text.length} characters)`;
}

/** A key as shown in a path: cut like a value, and quoted when it is not a plain word. */
function showKey(key: string): string {
  const cut = key.length > 60 ? `${key.slice(0, 40)}… (${key.length} characters)` : key;
  return /^[A-Za-z0-9_-]+$/.test(cut) ? cut : JSON.stringify(cut);
}

const DURATION_HINT = 'a duration with a unit, like 5s (500ms, 10s, 5m, 2h)';

function describe(e: ErrorObject, data: unknown): string {
  const at = keyPath(e.instancePath);
  const value = e.instancePath
    .split('/')
    .filter(Boolean)
    .map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((o, k) => (o && typeof o === 'object' && Object.hasOwn(o, k) ? (o as Record<string, unknown>)[k] : undefined), data);
  const parent = e.parentSchema as { format?: string; type?: string; description?: string } | undefined;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = showKey((e.params as { additionalProperty: string }).additionalProperty);
      return `${at === '(top level)' ? key : `${at}.${key}`}: unknown key`;
    }
    case 'type': {
      if (parent?.format === 'duration') return `${at}: must be ${DURATION_HINT}, got ${showValue(value)}`;
      const want = (e.params as { type: string | string[] }).type;
      const words: Record<string, string> = { string: 'a string', number: 'a number', integer: 'a whole number', boolean: 'true or false', object: 'a mapping of keys to values', array: 'a list' };
      const w = typeof value === 'number' && !Number.isFinite(value) ? 'a finite number' : (Array.isArray(want) ? want : [want]).map((x) => words[x] ?? x).join(' or ');
      return `${at}: must be ${w}, got ${showValue(value)}`;
    }
    case 'format': {
      const f = (e.params as { format: string }).format;
      const got = showValue(value);
      if (f === 'duration') return `${at}: must be ${DURATION_HINT}, got ${got}`;
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
      return `${at}: must be ${what ?? `of the form ${(e.params as { pattern: string }).pattern}`}, got ${showValue(value)}`;
    }
    case 'anyOf':
      return `${at}: must be a whole number >= 0 or a percentage like "10%", got ${showValue(value)}`;
    case 'enum':
      return `${at}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}, got ${showValue(value)}`;
    case 'minLength':
      return `${at}: must not be empty`;
    case 'maxLength':
      return `${at}: must be at most ${(e.params as { limit: number }).limit} characters, got ${typeof value === 'string' ? value.length : '?'}`;
    default:
      return `${at}: ${e.message ?? 'invalid'}${value !== undefined && typeof value !== 'object' ? `, got ${showValue(value)}` : ''}`;
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
    // defineProperty, not `out[k] =`: a `__proto__` key must stay a key (reported as unknown), not
    // become the object's prototype; Object.hasOwn, not `in`: `constructor` is no default.
    for (const [k, v] of Object.entries(over)) {
      Object.defineProperty(out, k, { value: Object.hasOwn(base, k) ? merge(base[k], v) : v, enumerable: true, writable: true, configurable: true });
    }
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
  const problems: string[] = [];
  if (!validate(merged)) {
    const errors = validate.errors ?? [];
    // An anyOf failure also reports each branch's own complaint; say it once, for the anyOf.
    const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
    problems.push(...new Set(errors.filter((e) => e.keyword === 'anyOf' || !anyOfPaths.has(e.instancePath)).map((e) => describe(e, merged))));
  }
  problems.push(...rangeProblems(rootSchema(), merged));
  if (problems.length) throw new ConfigError(source, capProblems(problems));
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

function capProblems(problems: readonly string[]): string[] {
  const unique = [...new Set(problems)];
  if (unique.length <= MAX_PROBLEMS) return unique;
  return [...unique.slice(0, MAX_PROBLEMS), `... and ${unique.length - MAX_PROBLEMS} more problems`];
}

// ---------------------------------------------------------------------------------------------
// Ranges: every configured duration and number has one

/**
 * The sane range of each duration key, by key path (`*` matches one key). A duration of 24.9 days or
 * more overflows Node's timers (they fire after 1 ms), and zero is nonsense for a timeout or a
 * window; a key not listed here gets DEFAULT_DURATION_RANGE.
 */
export const DURATION_RANGES: readonly (readonly [pattern: string, min: string, max: string])[] = [
  ['checks.*.timeout', '100ms', '5m'],
  ['checks.pleg.window', '1s', '24h'],
  ['checks.pleg.startupGrace', '0s', '24h'],
  ['checks.node-ready.notReadyFor', '0s', '24h'],
  ['checks.stuck-pods.stuckTerminatingAfter', '1s', '7d'],
  ['checks.stuck-pods.stuckStartingAfter', '1s', '7d'],
  ['remediation.grace', '0s', '24h'],
  ['remediation.settle', '1s', '24h'],
  ['remediation.commandTimeout', '1s', '1h'],
  ['remediation.leaseDuration', '1s', '24h'],
  ['remediation.drain.timeout', '1s', '24h'],
  ['remediation.recovery.timeout', '1s', '24h'],
  // The bundle delays the action by up to this.
  ['remediation.evidence.timeout', '1s', '2m'],
];
/** Below Node's timer limit of 2^31-1 ms (24.85 days). */
export const DEFAULT_DURATION_RANGE = ['1ms', '24d'] as const;

/**
 * The range of each number key the schema leaves open above (or below). `minOccurrences` is capped by
 * the timestamps the pleg check keeps per label (4096): a higher threshold could never be reached.
 */
export const NUMBER_RANGES: readonly (readonly [pattern: string, min: number, max: number])[] = [
  ['checks.load.maxLoadPerCpu', 0.01, 1000],
  ['checks.pleg.minOccurrences', 1, 4096],
  ['remediation.restartsPerHour', 0, 60],
  ['remediation.rebootsPerDay', 0, 24],
  ['remediation.maxUnhealthyNodes', 0, 100_000],
  ['remediation.maxConcurrentReboots', 1, 1000],
  ['remediation.drain.gracePeriodSeconds', -1, 86_400],
  ['remediation.evidence.journalLines', 1, 1_000_000],
];
/** Any other number: finite and of a size that means something in a config. */
export const DEFAULT_NUMBER_RANGE = [-1e9, 1e9] as const;

function matches(pattern: string, path: string): boolean {
  const p = pattern.split('.');
  const k = path.split('.');
  return p.length === k.length && p.every((x, i) => x === '*' || x === k[i]);
}

export function durationRange(path: string): readonly [string, string] {
  const r = DURATION_RANGES.find(([p]) => matches(p, path));
  return r ? [r[1], r[2]] : DEFAULT_DURATION_RANGE;
}

export function numberRange(path: string): readonly [number, number] {
  const r = NUMBER_RANGES.find(([p]) => matches(p, path));
  return r ? [r[1], r[2]] : DEFAULT_NUMBER_RANGE;
}

type SchemaNode = {
  type?: string | string[];
  format?: string;
  properties?: Record<string, SchemaNode>;
  anyOf?: SchemaNode[];
  minimum?: number;
  maximum?: number;
  then?: SchemaNode;
};

/**
 * Every duration string and number in `data` checked against its range, walking the schema beside it
 * (so a key added to any check's schema gets a range without a change here). Values of the wrong
 * type are left to the schema's own errors.
 */
function rangeProblems(schema: SchemaNode, data: unknown, path: string[] = []): string[] {
  const at = path.length ? path.join('.') : '(top level)';
  const out: string[] = [];
  if (schema.format === 'duration' && typeof data === 'string') {
    let ms: number;
    try {
      ms = parseDuration(data);
    } catch {
      return out; // the schema's format error says it
    }
    const [min, max] = durationRange(at);
    if (!(ms >= parseDuration(min) && ms <= parseDuration(max))) {
      out.push(`${at}: must be between ${min} and ${max}, got ${showValue(data)}${Number.isFinite(ms) && ms > 0 ? ` (${formatDuration(ms)})` : ''}`);
    }
    return out;
  }
  const numeric = (s: SchemaNode): boolean => [s.type].flat().some((t) => t === 'number' || t === 'integer');
  // A non-finite number is the schema's type error already.
  if (typeof data === 'number' && Number.isFinite(data) && (numeric(schema) || schema.anyOf?.some(numeric))) {
    const [min, max] = numberRange(at);
    if (!(data >= min && data <= max)) out.push(`${at}: must be between ${min} and ${max}, got ${showValue(data)}`);
    return out;
  }
  if (schema.properties && data && typeof data === 'object' && !Array.isArray(data)) {
    for (const [k, sub] of Object.entries(schema.properties)) {
      if (Object.hasOwn(data, k)) out.push(...rangeProblems(sub, (data as Record<string, unknown>)[k], [...path, k]));
    }
  }
  return out;
}

/** `Nested mappings are not allowed ... at line 1, column 4:` and its context lines, as one clean sentence. */
function yamlProblem(e: { message: string; linePos?: readonly { line: number; col: number }[] }): string {
  const first = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?\s*$/, '').replace(/:\s*$/, '');
  const pos = e.linePos?.[0];
  return `YAML syntax error${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}: ${first}`;
}

/** Parses YAML (JSON is YAML) and resolves it; syntax errors carry line and column. */
export function parseConfigText(text: string, source: string): Config {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length) throw new ConfigError(source, capProblems(doc.errors.map(yamlProblem)));
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: CONFIG_MAX_ALIASES });
  } catch (e) {
    // yaml's guard against alias bombs (a few lines expanding to billions of nodes) throws.
    const msg = (e as Error).message;
    if (/alias/i.test(msg)) {
      throw new ConfigError(source, [`YAML: aliases (*name) expand too much (more than the limit of ${CONFIG_MAX_ALIASES}; an "alias bomb"?): ${msg}`]);
    }
    throw new ConfigError(source, [`YAML: cannot build the document: ${msg.split('\n')[0]}`]);
  }
  return resolveConfig(data, source);
}

export interface ConfigSource {
  /** A path, or `(embedded defaults)`. */
  source: string;
  config: Config;
}

/** docs/CONTRACT.md's lookup: `--config FILE`, else `$NODEMEDIC_CONFIG`, else /etc/nodemedic/config.yaml if it exists, else ''. */
function configPath(explicit: string | undefined, env: NodeJS.ProcessEnv): string {
  return explicit || env.NODEMEDIC_CONFIG || (existsSync('/etc/nodemedic/config.yaml') ? '/etc/nodemedic/config.yaml' : '');
}

const EMBEDDED = '(embedded defaults)';

/** docs/CONTRACT.md's lookup (see `configPath`), read synchronously: for one-shot CLI commands. */
export function loadConfig(explicit?: string, env: NodeJS.ProcessEnv = process.env): ConfigSource {
  const path = configPath(explicit, env);
  if (!path) return { source: EMBEDDED, config: resolveConfig({}, EMBEDDED) };
  let text: string;
  try {
    // A FIFO or /dev/zero as config must not block or fill memory: refused before a byte is read.
    text = readBoundedFileSync(path, { maxBytes: CONFIG_MAX_BYTES });
  } catch (e) {
    throw new ConfigError(path, [`cannot read the config: ${(e as Error).message}`]);
  }
  return { source: path, config: parseConfigText(text, path) };
}

/** How long the running agent waits for its config file (a config on a hung mount must not wedge a reload). */
export const CONFIG_READ_TIMEOUT_MS = 5000;

/** `loadConfig`, bounded in time as well: the running agent's start and every SIGHUP reload. */
export async function loadConfigBounded(explicit?: string, env: NodeJS.ProcessEnv = process.env, timeoutMs = CONFIG_READ_TIMEOUT_MS): Promise<ConfigSource> {
  const path = configPath(explicit, env);
  if (!path) return { source: EMBEDDED, config: resolveConfig({}, EMBEDDED) };
  let text: string;
  try {
    text = await readBoundedFile(path, { maxBytes: CONFIG_MAX_BYTES, timeoutMs });
  } catch (e) {
    throw new ConfigError(path, [`cannot read the config: ${(e as Error).message}`]);
  }
  return { source: path, config: parseConfigText(text, path) };
}
