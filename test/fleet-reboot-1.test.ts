/**
 * The fleet with one reboot slot (issue 11): see test/harness/fleet-scenario.ts for what is judged.
 * Also: the API answering 503 right after a node's boot for twice `recovery.timeout` (that node is
 * uncordoned once the API is back, no `recovery-failed`), and a 500 on one eviction (retried).
 */
import t from 'tap';
import { runFleet } from './harness/fleet-scenario.js';

t.test('one slot: eight nodes healed one at a time, through a 503 outage after a boot and a failed eviction', async (t) => {
  await runFleet(t, 1, { outageAfterFirstBoot: true, failOneEviction: true });
});
