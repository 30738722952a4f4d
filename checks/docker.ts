import { unknown, type BaseCheckOptions, type CheckDefinition } from './types.js';

export interface DockerOptions extends BaseCheckOptions {
  socket: string;
  /** The systemd unit that runs dockerd; tells "down" (unit active, socket dead) from "not installed". */
  unit: string;
  timeout: string;
}

export const dockerCheck: CheckDefinition<DockerOptions> = {
  id: 'docker',
  defaults: { enabled: true, socket: '/var/run/docker.sock', unit: 'docker', timeout: '10s' },
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
  create: () => ({ id: 'docker', run: async () => unknown('NotImplemented', 'docker check is not implemented yet') }),
};
