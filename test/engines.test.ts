/**
 * The dependency tree is honest about Node.js (issue 12): `engines.node` is a floor every production
 * dependency really supports, and nothing installed refuses the Node.js this runs on, so `npm ci`
 * prints no EBADENGINE. Read from package-lock.json, which records each package's own `engines`.
 *
 * light-my-request (fastify's `inject`) is pinned to 6.6.0 in `overrides`: 6.8 needs cookie 2, which
 * requires Node.js >= 22.
 */
import { readFileSync } from 'node:fs';
import semver from 'semver';
import t from 'tap';

const root = new URL('../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as {
  packages: Record<string, { dev?: boolean; optional?: boolean; engines?: Record<string, string> | string[] }>;
};

function nodeRange(e: Record<string, string> | string[] | undefined): string | undefined {
  return e && !Array.isArray(e) ? e.node : undefined;
}

const floor = semver.minVersion(pkg.engines.node)?.version;

t.test('engines.node is a floor every production dependency supports', async (t) => {
  t.ok(floor, `engines.node ${pkg.engines.node} has a lowest version`);
  t.ok(semver.gte(floor!, '20.0.0') && semver.lt(floor!, '21.0.0'), 'the floor is a Node.js 20 release (the README promises 20)');
  const refuse = Object.entries(lock.packages)
    .filter(([name, p]) => name && !p.dev && nodeRange(p.engines))
    .filter(([, p]) => !semver.satisfies(floor!, nodeRange(p.engines)!))
    .map(([name, p]) => `${name} needs node ${nodeRange(p.engines)}`);
  t.same(refuse, [], `every production package admits Node.js ${floor}`);
});

t.test('nothing installed refuses the Node.js running the tests (npm ci warns nothing)', async (t) => {
  const refuse = Object.entries(lock.packages)
    .filter(([name, p]) => name && nodeRange(p.engines) && !semver.satisfies(process.versions.node, nodeRange(p.engines)!))
    .map(([name, p]) => `${name} needs node ${nodeRange(p.engines)}`);
  t.same(refuse, [], `every package admits Node.js ${process.versions.node}`);
  t.ok(semver.satisfies(process.versions.node, pkg.engines.node), 'and so does nodemedic itself');
});
