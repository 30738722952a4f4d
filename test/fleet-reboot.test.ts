/**
 * The fleet (issue 11): see test/harness/fleet-scenario.ts for what is judged. One slot, then two, in
 * one file so that the two fleets never run side by side (tap runs two files at once).
 * With one slot also: the API answering 503 right after a node's boot for twice `recovery.timeout` (that
 * node is uncordoned once the API is back, no `recovery-failed`), and a 500 on one eviction (retried).
 */
import t from 'tap';
import { runFleet } from './harness/fleet-scenario.js';

t.test('one slot: every node healed one at a time, through a 503 outage after a boot and a failed eviction', async (t) => {
  await runFleet(t, 1, { outageAfterFirstBoot: true, failOneEviction: true });
});

t.test('two slots: every node healed two at a time', async (t) => {
  await runFleet(t, 2);
});
