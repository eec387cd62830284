import { describe, expect, it } from 'vitest';
import { FakeTimers } from '../test/fakes';
import { chunk, finalOf, history, message, recovery, welcome } from '../test/frames';
import { LinkStats, RATE_REFRESH_MS, RATE_WINDOW_MS } from './linkStats';

function setup() {
  const timers = new FakeTimers();
  const stats = new LinkStats(timers);
  let notified = 0;
  return {
    timers,
    stats,
    listen: () => stats.subscribe(() => (notified += 1)),
    get notified() {
      return notified;
    },
  };
}

/** Chunks 0..n-1 of `id`, one every `gap` ms (the first now). */
function stream(t: ReturnType<typeof setup>, id: string, n: number, gap: number, from = 0) {
  for (let i = from; i < from + n; i += 1) {
    if (i > from) t.timers.advance(gap);
    t.stats.frame(chunk(id, i, `w${i} `));
  }
}

describe('LinkStats', () => {
  it('keeps the node id of the last welcome and the last round trip', () => {
    const t = setup();
    expect(t.stats.getSnapshot()).toEqual({ nodeId: null, latencyMs: null, streamingId: null, chunkRate: null });
    t.stats.frame(welcome('ws-node-1'));
    t.stats.latency(12.5);
    t.stats.socketClosed();
    expect(t.stats.getSnapshot()).toMatchObject({ nodeId: 'ws-node-1', latencyMs: 12.5 });
    t.stats.frame(welcome('ws-node-3'));
    expect(t.stats.getSnapshot().nodeId).toBe('ws-node-3');
  });

  it('chunk rate: from the first chunk while the window is not full, then over the last 2 s', () => {
    const t = setup();
    expect(t.stats.chunkRate()).toBeNull();
    stream(t, 'a1', 11, 100); // 10 gaps of 100 ms
    expect(t.stats.chunkRate()).toBeCloseTo(10);
    t.timers.advance(50);
    stream(t, 'a1', 40, 50, 11); // now 20 chunks/s, for 2 s
    expect(t.stats.chunkRate()).toBeCloseTo(20);
  });

  it('chunk rate decays while the answer stalls, and is null once it ended', () => {
    const t = setup();
    stream(t, 'a1', 30, 100);
    expect(t.stats.chunkRate()).toBeCloseTo(10);
    t.timers.advance(RATE_WINDOW_MS / 2);
    expect(t.stats.chunkRate()).toBeCloseTo(5);
    t.timers.advance(RATE_WINDOW_MS);
    expect(t.stats.chunkRate()).toBe(0);
    t.stats.frame(message(finalOf('a1', 'done')));
    expect(t.stats.chunkRate()).toBeNull();
  });

  it('a chunk of another answer starts over; a close, an empty history or a COMPLETED recovery ends it', () => {
    const t = setup();
    stream(t, 'a1', 5, 100);
    t.stats.frame(chunk('a2', 0, 'x'));
    expect(t.stats.getSnapshot().streamingId).toBe('a2');
    t.stats.socketClosed();
    expect(t.stats.getSnapshot()).toMatchObject({ streamingId: null, chunkRate: null });
    t.stats.frame(history([], { messageId: 'a2', lastIndex: 0 }));
    expect(t.stats.getSnapshot()).toMatchObject({ streamingId: 'a2', chunkRate: 0 });
    t.stats.frame(history([]));
    expect(t.stats.getSnapshot().streamingId).toBeNull();
    stream(t, 'a3', 3, 100);
    t.stats.frame(recovery('COMPLETED', 'a3', [], finalOf('a3', 'x')));
    expect(t.stats.getSnapshot().streamingId).toBeNull();
  });

  it('tells listeners when an answer starts and then every 500 ms, never once per chunk', () => {
    const t = setup();
    const stop = t.listen();
    t.stats.frame(chunk('a1', 0, 'x'));
    expect(t.notified).toBe(1); // the answer started
    for (let i = 1; i <= 4; i += 1) {
      t.timers.advance(100);
      t.stats.frame(chunk('a1', i, 'x'));
    }
    expect(t.notified).toBe(1);
    t.timers.advance(RATE_REFRESH_MS - 400);
    expect(t.notified).toBe(2);
    expect(t.stats.getSnapshot().chunkRate).toBeCloseTo(4 / 0.5);
    stop();
    t.timers.advance(10 * RATE_REFRESH_MS);
    expect(t.notified).toBe(2);
    expect(t.timers.pendingTimeouts()).toEqual([]);
  });

  it('stops refreshing once nothing streams, and a new listener gets the rate of now', () => {
    const t = setup();
    stream(t, 'a1', 11, 100);
    // Nobody listened: the snapshot was not refreshed per chunk.
    expect(t.stats.getSnapshot().chunkRate).toBe(0);
    const stop = t.listen();
    expect(t.stats.getSnapshot().chunkRate).toBeCloseTo(10);
    t.stats.frame(message(finalOf('a1', 'done')));
    const after = t.notified;
    t.timers.advance(10 * RATE_REFRESH_MS);
    expect(t.notified).toBe(after);
    stop();
  });
});
