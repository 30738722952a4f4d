import { unknown, type BaseCheckOptions, type CheckDefinition } from './types.js';

export interface ContainerdOptions extends BaseCheckOptions {
  socket: string;
  unit: string;
  timeout: string;
}

export const containerdCheck: CheckDefinition<ContainerdOptions> = {
  id: 'containerd',
  defaults: { enabled: true, socket: '/run/containerd/containerd.sock', unit: 'containerd', timeout: '10s' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      socket: { type: 'string', pattern: '^/' },
      unit: { type: 'string', minLength: 1 },
      timeout: { type: 'string', format: 'duration' },
    },
  },
  create: () => ({ id: 'containerd', run: async () => unknown('NotImplemented', 'containerd check is not implemented yet') }),
};
