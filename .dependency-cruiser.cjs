/**
 * The layers of nodemedic, enforced (issue 12). `npm run lint:layers` prints violations;
 * test/layers.test.ts runs the same rules in `npm test`, so a wrong import fails CI.
 *
 *   agent/          composition (agent.ts), CLI (cli*.ts), config, server, metrics: may use everything
 *     remediations/ the ladder and its Kubernetes side: platform/, checks/ (types, registry), itself
 *     checks/       one file per check and the registry: platform/ and itself
 *       platform/   the boundaries to the node and the cluster (host, clock, Kubernetes access): itself only
 *
 * Type-only imports count (tsPreCompilationDeps): a type is a dependency of the design as much as a call.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'platform-is-the-bottom',
      comment: 'platform/ is the boundary to the node and the cluster; it knows nothing of checks, remediation or the agent.',
      severity: 'error',
      from: { path: '^platform/' },
      to: { path: '^(agent|checks|remediations|bench|test)/' },
    },
    {
      name: 'checks-use-only-platform',
      comment: 'A check observes; it never imports remediation (which acts) or the agent (which composes).',
      severity: 'error',
      from: { path: '^checks/' },
      to: { path: '^(agent|remediations|bench|test)/' },
    },
    {
      name: 'remediations-below-the-agent',
      comment: 'Remediation uses platform/ and the checks (their types and registry), never the agent.',
      severity: 'error',
      from: { path: '^remediations/' },
      to: { path: '^(agent|bench|test)/' },
    },
    {
      name: 'nothing-imports-the-cli-or-composition',
      comment: 'agent/agent.ts and agent/cli*.ts are the top: only the CLI itself, the executable (agent/main.ts) and tests, benchmarks import them.',
      severity: 'error',
      from: { path: '^(platform|checks|remediations|agent)/', pathNot: '^agent/(cli[^/]*|main)\\.ts$' },
      to: { path: '^agent/(agent|cli[^/]*)\\.ts$' },
    },
    {
      name: 'product-never-imports-tests',
      comment: 'What ships (dist/platform, agent, checks, remediations) must not need test or benchmark code.',
      severity: 'error',
      from: { path: '^(platform|checks|remediations|agent)/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-unresolvable-imports',
      comment: 'An import the rules cannot resolve is an import they cannot judge.',
      severity: 'error',
      from: { path: '^(platform|checks|remediations|agent)/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|dist)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.mts', '.js', '.mjs', '.cjs', '.json', '.d.ts'],
    },
  },
};
