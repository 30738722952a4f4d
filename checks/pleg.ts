import { unknown, type BaseCheckOptions, type CheckDefinition } from './types.js';

export interface PlegOptions extends BaseCheckOptions {
  /** Where kubelet's log comes from. */
  source: 'journald' | 'file';
  /** The systemd unit whose journal is followed (`source: journald`). */
  unit: string;
  /** The file followed like `tail -F` (`source: file`). */
  file: string;
  /** Unhealthy lines are counted over this sliding window. */
  window: string;
  /** This many unhealthy lines within `window` make a problem. */
  minOccurrences: number;
  /** `pleg has yet to be successful` is normal this long after kubelet starts. */
  startupGrace: string;
}

const duration = { type: 'string', format: 'duration' } as const;

// Contract only; the implementation is being written (issue 3).
export const plegCheck: CheckDefinition<PlegOptions> = {
  id: 'pleg',
  defaults: { enabled: true, source: 'journald', unit: 'kubelet', file: '', window: '5m', minOccurrences: 3, startupGrace: '5m' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      source: { enum: ['journald', 'file'] },
      unit: { type: 'string', minLength: 1 },
      file: { type: 'string' },
      window: duration,
      minOccurrences: { type: 'integer', minimum: 1 },
      startupGrace: duration,
    },
  },
  create: () => ({ id: 'pleg', run: async () => unknown('NotImplemented', 'pleg check is not implemented yet') }),
};
