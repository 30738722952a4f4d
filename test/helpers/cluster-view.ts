/**
 * Waiting for the agent's list-then-watch caches (platform/kube-watch.ts) to have seen what a test
 * just changed in the fake API server: a bookmark carries the server's latest resourceVersion to
 * every open watch, and the wait ends when each cache of that server has it. In-process checks only.
 */
import { clusterViewStatus } from '../../platform/kube-watch.js';
import type { FakeApiServer } from '../fake-apiserver/server.js';

export async function caughtUp(fake: FakeApiServer, ms = 10_000): Promise<void> {
  const target = fake.watches.latest;
  const end = Date.now() + ms;
  for (;;) {
    const mine = clusterViewStatus().filter((s) => s.server === fake.url);
    if (mine.every((s) => s.mode === 'poll' || (s.state === 'watching' && Number(s.resourceVersion) >= target))) return;
    if (Date.now() > end) throw new Error(`the caches did not reach resourceVersion ${target} within ${ms}ms: ${JSON.stringify(mine)}`);
    fake.watches.bookmarkNow();
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Waits until every cache of `fake` has noticed that its watch is gone (after `fake.watches.closeAll()`). */
export async function watchesLost(fake: FakeApiServer, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (clusterViewStatus().some((s) => s.server === fake.url && s.state === 'watching')) {
    if (Date.now() > end) throw new Error(`the caches still think they are watching after ${ms}ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
