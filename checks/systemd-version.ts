import { unknown, type BaseCheckOptions, type CheckDefinition } from './types.js';

export interface SystemdVersionOptions extends BaseCheckOptions {
  /** On `.el7` releases, a systemd below this version-release is a problem (sd-bus cookie overflow, PLEG). */
  minimum: string;
}

export const systemdVersionCheck: CheckDefinition<SystemdVersionOptions> = {
  id: 'systemd-version',
  defaults: { enabled: true, minimum: '219-67.el7' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      minimum: { type: 'string', minLength: 1 },
    },
  },
  create: () => ({ id: 'systemd-version', run: async () => unknown('NotImplemented', 'not implemented yet') }),
};
