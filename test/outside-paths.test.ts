/**
 * The repository stands on its own (issue 12): no code, test, benchmark, script or doc names a path
 * outside the checkout. The rules live in scripts/outside-paths.mjs; here they run on the real tree,
 * and on made-up text to show each rule catches what it is for and lets the product's own host paths be.
 */
import t from 'tap';
import { codeFiles, findOutsidePaths, scanRepository } from '../scripts/outside-paths.mjs';

t.test('nothing in the checkout names a path outside it', async (t) => {
  const files = codeFiles();
  // A scan of nothing would pass vacuously: make sure it sees the kinds of files it is about.
  for (const f of ['.ci/run', 'bench/lib.ts', 'test/harness/fake-kubelet.ts', 'agent/version.ts', 'scripts/test-setup.sh', 'README.md']) {
    t.ok(files.includes(f), `${f} is scanned`);
  }
  t.notOk(files.some((f) => f.startsWith('test/fixtures/corpus/')), 'data is not code');
  const found = scanRepository();
  t.same(found.map((f) => `${f.file}:${f.line}: ${f.path} (${f.why})`), [], 'no outside paths');
});

t.test('each rule catches what it is for', async (t) => {
  const none = (): boolean => false;
  const paths = (rel: string, text: string): string[] => findOutsidePaths(rel, text, none).map((f: { path: string }) => f.path);
  // The bugs issue 12 found, as they were written.
  t.same(paths('test/pleg-classify.test.ts', "new URL('../../shared/corpus/kubelet/', import.meta.url)"), ['../../shared/corpus/kubelet/']);
  t.same(paths('test/harness/fake-kubelet.ts', "resolve(here, '../../../shared/corpus/kubelet/kubelet-pleg.tsv')"), ['../../../shared/corpus/kubelet/kubelet-pleg.tsv']);
  t.same(paths('bench/lib.ts', "resolve(REPO_ROOT, '../shared/corpus')"), ['../shared/corpus']);
  t.same(paths('.ci/run', 'cat ' + '/wo' + 'rk/shared/corpus/x.tsv'), ['/' + 'work/shared/corpus/x.tsv']);
  t.same(paths('test/x.test.ts', "const home = '" + '/ho' + "me/dev/nodemedic/fixture'"), ['/' + 'home/dev/nodemedic/fixture']);
  t.same(paths('remediations/README.md', 'the runbook (`../shared/docs/RUNBOOK-zh.txt`)'), ['../shared/docs/RUNBOOK-zh.txt']);
  t.same(paths('agent/x.ts', "join(dir, '..', '..', '..')"), [], 'separate segments are not one path (and are rare enough to review)');
});

t.test('what stays allowed', async (t) => {
  const all = (): boolean => true;
  const paths = (rel: string, text: string): string[] => findOutsidePaths(rel, text, all).map((f: { path: string }) => f.path);
  t.same(paths('agent/version.ts', "for (const rel of ['../package.json', '../../package.json'])"), [], 'compiled code resolves from dist/agent');
  t.same(paths('test/helpers/cli.ts', "new URL('../../dist/agent/cli.js', import.meta.url)"), []);
  t.same(paths('deploy/daemonset.yaml', 'paths: ["/proc/1/root/", "/proc/1/root/var/lib/kubelet"]'), [], "the node's paths are the product");
  t.same(paths('test/unit-file.test.ts', 'const bin = `/proc/${pid}/root/opt/nodemedic/bin`;'), []);
  t.same(paths('agent/x.ts', 'const xs = [...a, ...b]; for (let i = 1; i < 3; i++) r = `1..3`;'), [], 'spreads and ranges are not paths');
  t.same(paths('.ci/run', 'cd "$(dirname "$0")/.."'), []);
  t.same(paths('systemd-units/kubernetes/README.md', 'a systemd service (../nodemedic.service)'), []);
  t.same(findOutsidePaths('docs/x.md', 'see ../gone.md', () => false).map((f: { why: string }) => f.why), ['names nothing in the checkout']);
});
