/**
 * The layers (issue 12), checked by dependency-cruiser with the rules in .dependency-cruiser.cjs, so a
 * wrong import fails `npm test` and CI. The second test runs the same rules on a tiny made-up tree
 * with one wrong import per rule: a rule that matches nothing would let the first test pass forever.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

function cruise(cwd: string, dirs: string[]): Promise<{ violations: Violation[]; modules: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, '--config', CONFIG, '--output-type', 'json', ...dirs],
      { cwd, maxBuffer: 256 * 1024 * 1024 },
      (err, stdout, stderr) => {
        // depcruise exits non-zero when it finds violations; the JSON says which.
        try {
          const out = JSON.parse(stdout) as { summary: { violations: Violation[]; totalCruised: number } };
          resolve({ violations: out.summary.violations, modules: out.summary.totalCruised });
        } catch {
          reject(new Error(`dependency-cruiser failed (${err?.message ?? 'no output'}): ${stderr}`));
        }
      },
    );
  });
}

t.test('the tree keeps its layers', async (t) => {
  const { violations, modules } = await cruise(ROOT, ['platform', 'agent', 'checks', 'remediations', 'bench', 'test']);
  t.ok(modules > 100, `the whole tree was read (${modules} modules)`);
  t.same(violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`), [], 'no import crosses a layer the wrong way');
});

t.test('each rule catches a wrong import', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nodemedic-layers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files: Record<string, string> = {
    'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', rootDir: '.' }, include: ['**/*.ts'] }),
    'platform/host.ts': "import type { Check } from '../checks/types.js';\nexport type H = Check;\n",
    'checks/types.ts': 'export interface Check { id: string }\n',
    'checks/disk.ts': "import { ladder } from '../remediations/decide.js';\nimport type { Config } from '../agent/config.js';\nexport const d = [ladder] as unknown as Config;\n",
    'remediations/decide.ts': "import type { Config } from '../agent/config.js';\nimport type { Check } from '../checks/types.js';\nexport const ladder = (c: Config, k: Check) => [c, k];\n",
    'agent/config.ts': 'export interface Config { nodeName: string }\n',
    'agent/agent.ts': "import type { Config } from './config.js';\nexport const a = (c: Config) => c;\n",
    'agent/server.ts': "import { a } from './agent.js';\nimport { helper } from '../test/h.js';\nexport const s = [a, helper];\n",
    'agent/cli.ts': "import { a } from './agent.js';\nimport { s } from './server.js';\nexport const c = [a, s];\n",
    'test/h.ts': "import { c } from '../agent/cli.js';\nexport const helper = c;\n",
  };
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(join(dir, dirname(f)), { recursive: true });
    writeFileSync(join(dir, f), text);
  }
  const { violations } = await cruise(dir, ['platform', 'agent', 'checks', 'remediations', 'test']);
  t.same(
    violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`).sort(),
    [
      'checks-use-only-platform: checks/disk.ts -> agent/config.ts',
      'checks-use-only-platform: checks/disk.ts -> remediations/decide.ts',
      'nothing-imports-the-cli-or-composition: agent/server.ts -> agent/agent.ts',
      'platform-is-the-bottom: platform/host.ts -> checks/types.ts',
      'product-never-imports-tests: agent/server.ts -> test/h.ts',
      'remediations-below-the-agent: remediations/decide.ts -> agent/config.ts',
    ],
    'exactly the wrong imports, type-only ones included; the CLI importing the agent and tests importing the CLI are fine',
  );
});
