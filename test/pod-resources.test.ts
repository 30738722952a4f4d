/**
 * A pod's requests and limits as the scheduler and `kubectl describe node` count them
 * (platform/pod-resources.ts), with quantities as the Kubernetes documentation writes them.
 */
import t from 'tap';
import { allocatableOf, podResources, type PodSpecLike } from '../platform/pod-resources.js';

type C = { name?: string; restartPolicy?: string; resources?: { requests?: Record<string, string>; limits?: Record<string, string> } };
const pod = (containers: C[], init: C[] = [], extra: Record<string, unknown> = {}): PodSpecLike => ({ spec: { containers, initContainers: init, ...extra } });
const c = (requests?: Record<string, string>, limits?: Record<string, string>, restartPolicy?: string): C => ({
  resources: { ...(requests ? { requests } : {}), ...(limits ? { limits } : {}) },
  ...(restartPolicy ? { restartPolicy } : {}),
});
const MI = 2 ** 20;

t.test('the documentation\'s spellings of about 129 MB give the bytes they mean', async (t) => {
  // https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/#meaning-of-memory
  const mem = (q: string): number => podResources(pod([c({ memory: q })])).requests.memory;
  t.equal(mem('128974848'), 128974848);
  t.equal(mem('129e6'), 129_000_000);
  t.equal(mem('129M'), 129_000_000);
  t.equal(mem('128974848000m'), 128974848);
  t.equal(mem('123Mi'), 128974848);
  t.equal(mem('1Gi'), 2 ** 30);
  // CPU in millicores, rounded up as Quantity.MilliValue() does.
  const cpu = (q: string): number => podResources(pod([c({ cpu: q })])).requests.cpu;
  t.equal(cpu('250m'), 250);
  t.equal(cpu('0.5'), 500);
  t.equal(cpu('2'), 2000);
  t.equal(cpu('100u'), 1, 'a fraction of a millicore counts as one');
  t.throws(() => podResources(pod([c({ cpu: '1 core' })])), /not a Kubernetes quantity/);
});

t.test('app containers add up; the largest init container counts if larger; overhead is added', async (t) => {
  // The init-containers page's example shape: init 200Mi and 150Mi, app 120Mi and 140Mi → 260Mi.
  const a = podResources(pod([c({ memory: '120Mi' }), c({ memory: '140Mi' })], [c({ memory: '200Mi' }), c({ memory: '150Mi' })]));
  t.equal(a.requests.memory, 260 * MI);
  const b = podResources(pod([c({ cpu: '250m' }), c({ cpu: '250m' })], [c({ cpu: '2' })], { overhead: { cpu: '100m', memory: '64Mi' } }));
  t.equal(b.requests.cpu, 2100, 'init 2 cores > app 500m, plus 100m overhead');
  t.equal(b.requests.memory, 64 * MI, 'overhead alone where nothing requests memory');
});

t.test('a sidecar (restartPolicy: Always) adds to the app containers and to every init container after it', async (t) => {
  const r = podResources(pod([c({ cpu: '500m' })], [c({ cpu: '1' }), c({ cpu: '200m' }, undefined, 'Always'), c({ cpu: '1' })]));
  // app 500m + sidecar 200m = 700m; init phases: 1000m, 200m, 1000m + 200m = 1200m → 1200m.
  t.equal(r.requests.cpu, 1200);
  const s = podResources(pod([c({ cpu: '2' })], [c({ cpu: '1' }), c({ cpu: '300m' }, undefined, 'Always')]));
  t.equal(s.requests.cpu, 2300, 'app 2 + sidecar 300m beats every init phase');
});

t.test('limits: summed like requests; a container without one makes the pod unbounded for that resource', async (t) => {
  const both = podResources(pod([c({ cpu: '250m', memory: '64Mi' }, { cpu: '500m', memory: '128Mi' }), c(undefined, { cpu: '1', memory: '1Gi' })]));
  t.same(both.limits, { cpu: 1500, memory: 128 * MI + 2 ** 30 });
  t.same(both.unlimited, { cpu: false, memory: false });
  const partial = podResources(pod([c(undefined, { memory: '128Mi' }), c(undefined, { cpu: '1', memory: '64Mi' })]));
  t.same(partial.limits, { cpu: 1000, memory: 192 * MI }, 'what is set still counts');
  t.same(partial.unlimited, { cpu: true, memory: false }, 'the first container has no cpu limit');
  const initOnly = podResources(pod([c(undefined, { memory: '64Mi' })], [c()]));
  t.equal(initOnly.unlimited.memory, true, 'an init container without a limit is unbounded while it runs');
  const bestEffort = podResources(pod([c()], [], { overhead: { memory: '64Mi' } }));
  t.same(bestEffort.limits, { cpu: 0, memory: 0 }, 'overhead is added only to a limit the pod has');
  t.same(bestEffort.requests, { cpu: 0, memory: 64 * MI });
  const withOverhead = podResources(pod([c(undefined, { memory: '128Mi' })], [], { overhead: { memory: '64Mi' } }));
  t.equal(withOverhead.limits.memory, 192 * MI);
});

t.test('pod-level resources replace the containers\' sum', async (t) => {
  const r = podResources(pod([c({ cpu: '100m' }), c()], [], { resources: { requests: { cpu: '1' }, limits: { cpu: '2' } } }));
  t.equal(r.requests.cpu, 1000);
  t.equal(r.limits.cpu, 2000);
  t.equal(r.unlimited.cpu, false, 'the pod-level limit bounds containers without their own');
  t.equal(r.unlimited.memory, true);
});

t.test('allocatable of a Node', async (t) => {
  t.same(allocatableOf({ status: { allocatable: { cpu: '3920m', memory: '15Gi', pods: '110' } } }), { cpu: 3920, memory: 15 * 2 ** 30 });
  t.same(allocatableOf({ status: {} }), { cpu: 0, memory: 0 });
});
