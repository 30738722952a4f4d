/**
 * The fleet with two reboot slots (issue 11): see test/harness/fleet-scenario.ts for what is judged.
 */
import t from 'tap';
import { runFleet } from './harness/fleet-scenario.js';

t.test('two slots: eight nodes healed two at a time', async (t) => {
  await runFleet(t, 2);
});
