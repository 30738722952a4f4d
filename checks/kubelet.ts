import { unknown, type BaseCheckOptions, type CheckDefinition } from './types.js';

export interface KubeletOptions extends BaseCheckOptions {
  unit: string;
  healthzUrl: string;
  timeout: string;
}

export const kubeletCheck: CheckDefinition<KubeletOptions> = {
  id: 'kubelet',
  defaults: { enabled: true, unit: 'kubelet', healthzUrl: 'http://127.0.0.1:10248/healthz', timeout: '10s' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      unit: { type: 'string', minLength: 1 },
      healthzUrl: { type: 'string', pattern: '^https?://' },
      timeout: { type: 'string', format: 'duration' },
    },
  },
  create: () => ({ id: 'kubelet', run: async () => unknown('NotImplemented', 'kubelet check is not implemented yet') }),
};
