import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, loadConfig, parseConfigText, resolveConfig } from '../agent/config.js';
import { ConfigError } from '../platform/errors.js';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  throw new Error('expected a ConfigError');
}

t.test('embedded defaults match docs/CONTRACT.md', async (t) => {
  const c = resolveConfig({});
  t.equal(c.http.listen, '0.0.0.0:20258');
  t.equal(c.schedule, '*/15 * * * * *');
  t.same(c.hostCommandPrefix, []);
  t.equal(c.remediation.mode, 'dry-run');
  t.equal(c.remediation.grace, '1m');
  t.equal(c.remediation.settle, '2m');
  t.same(c.checks.disk, {
    enabled: true,
    paths: ['/', '/var/lib/kubelet', '/var/lib/docker', '/var/lib/containerd'],
    maxUsedPercent: 90,
    maxInodesUsedPercent: 90,
    timeout: '5s',
  });
  t.match(c.checks.pleg, { enabled: true, source: 'journald', unit: 'kubelet', file: '', window: '5m', minOccurrences: 3 });
  t.match(c.checks.kubelet, { unit: 'kubelet', healthzUrl: 'http://127.0.0.1:10248/healthz', timeout: '10s' });
  t.match(c.checks.docker, { socket: '/var/run/docker.sock', timeout: '10s' });
  t.match(c.checks.containerd, { socket: '/run/containerd/containerd.sock', timeout: '10s' });
  t.match(c.checks['systemd-version'], { minimum: '219-67.el7' });
  t.equal(c.kubernetes.kubeconfig, '');
  t.ok(c.nodeName.length > 0, 'nodeName defaults to the host name');
});

t.test('user values merge over defaults; arrays replace', async (t) => {
  const c = parseConfigText('checks:\n  disk:\n    paths: [/data]\n    maxUsedPercent: 80\nremediation: { mode: enforce }\n', 'x.yaml');
  t.same(c.checks.disk!.paths, ['/data']);
  t.equal(c.checks.disk!.maxUsedPercent, 80);
  t.equal(c.checks.disk!.maxInodesUsedPercent, 90);
  t.equal(c.remediation.mode, 'enforce');
  t.equal(c.remediation.grace, '1m');
});

t.test('JSON is YAML', async (t) => {
  const c = parseConfigText('{"schedule": "*/5 * * * * *", "checks": {"load": {"maxLoadPerCpu": 2}}}', 'x.json');
  t.equal(c.schedule, '*/5 * * * * *');
  t.equal(c.checks.load!.maxLoadPerCpu, 2);
});

t.test('every problem is reported at once, each with its key path', async (t) => {
  const p = problems(() =>
    resolveConfig({
      checks: { disk: { maxUsedPercent: 101, timeout: '-5s', color: 'red' }, load: { maxLoadPerCpu: 'high' } },
      remediation: { mode: 'yolo', settle: '10' },
      http: { listen: 'nowhere' },
      schedule: 'every minute',
      bogus: 1,
    }),
  );
  const want = [
    /^checks\.disk\.maxUsedPercent: must be <= 100, got 101$/,
    /^checks\.disk\.timeout: must be a duration with a unit.*"-5s"/,
    /^checks\.disk\.color: unknown key$/,
    /^checks\.load\.maxLoadPerCpu: must be a number, got "high"$/,
    /^remediation\.mode: must be one of "off", "dry-run", "approve", "enforce", got "yolo"$/,
    /^remediation\.settle: must be a duration/,
    /^http\.listen: must be HOST:PORT/,
    /^schedule: not a valid cron expression "every minute"/,
    /^bogus: unknown key$/,
  ];
  for (const re of want) t.ok(p.some((x) => re.test(x)), `reports ${re}`);
  t.equal(p.length, want.length, `exactly these problems: ${p.join(' | ')}`);
});

t.test('maxUnhealthyNodes takes a count or a percentage, with one clear error otherwise', async (t) => {
  t.equal(resolveConfig({ remediation: { maxUnhealthyNodes: 2 } }).remediation.maxUnhealthyNodes, 2);
  t.equal(resolveConfig({ remediation: { maxUnhealthyNodes: '25%' } }).remediation.maxUnhealthyNodes, '25%');
  t.same(problems(() => resolveConfig({ remediation: { maxUnhealthyNodes: '250%' } })), [
    'remediation.maxUnhealthyNodes: must be a whole number >= 0 or a percentage like "10%", got "250%"',
  ]);
});

t.test('bad YAML names the line', async (t) => {
  const p = problems(() => parseConfigText('checks:\n  disk: {\n', 'bad.yaml'));
  t.match(p[0], /^YAML syntax error at line 3/);
  t.match(problems(() => parseConfigText('a: 1\na: 2\n', 'dup.yaml'))[0], /YAML syntax error.*unique/i);
});

t.test('a top level that is not a mapping is rejected', async (t) => {
  t.same(problems(() => parseConfigText('- a\n- b\n', 'list.yaml')), ['(top level): must be a mapping of keys to values']);
});

t.test('an empty file means defaults', async (t) => {
  t.same({ ...parseConfigText('', 'empty.yaml'), nodeName: '' }, { ...defaultConfig(), nodeName: '' });
});

t.test('lookup order: --config, then $NODEMEDIC_CONFIG, then defaults', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = join(dir, 'a.yaml');
  const b = join(dir, 'b.yaml');
  writeFileSync(a, 'nodeName: from-flag\n');
  writeFileSync(b, 'nodeName: from-env\n');
  t.equal(loadConfig(a, { NODEMEDIC_CONFIG: b }).config.nodeName, 'from-flag');
  t.equal(loadConfig(undefined, { NODEMEDIC_CONFIG: b }).config.nodeName, 'from-env');
  t.match(problems(() => loadConfig(join(dir, 'missing.yaml'), {}))[0], /cannot read the config: .*missing\.yaml does not exist \(ENOENT\)/);
});

t.test('a pattern error says what form is expected, not the regex', async (t) => {
  t.same(problems(() => resolveConfig({ checks: { 'systemd-version': { minimum: '219_78.el7_9.9' } } })), [
    'checks.systemd-version.minimum: must be an rpm [epoch:]version[-release] such as 219-67.el7, got "219_78.el7_9.9"',
  ]);
  t.same(problems(() => resolveConfig({ checks: { disk: { paths: ['/', 'var/lib'] } } })), [
    'checks.disk.paths.1: must be an absolute path, got "var/lib"',
  ]);
});

t.test('cross-key rules of the remediation section are validated too', async (t) => {
  t.same(problems(() => resolveConfig({ remediation: { triggers: ['pleg', 'disk', 'nope'] } })), [
    'remediation.triggers.1: "disk" cannot be a trigger (a restart cures none of disk, load, resources, kernel, systemd-version, network, overcommit)',
    `remediation.triggers.2: no check named "nope" (checks: ${defaultConfig().checks ? Object.keys(defaultConfig().checks).join(', ') : ''})`,
  ]);
});

t.test('an empty nodeName comes from $NODEMEDIC_NODE_NAME (downward API), else the host name', async (t) => {
  const saved = process.env.NODEMEDIC_NODE_NAME;
  t.teardown(() => {
    if (saved === undefined) delete process.env.NODEMEDIC_NODE_NAME;
    else process.env.NODEMEDIC_NODE_NAME = saved;
  });
  process.env.NODEMEDIC_NODE_NAME = 'ip-10-0-0-1.ec2.internal';
  t.equal(resolveConfig({}).nodeName, 'ip-10-0-0-1.ec2.internal');
  t.equal(resolveConfig({ nodeName: 'explicit' }).nodeName, 'explicit', 'the config wins');
});
