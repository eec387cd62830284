import { describe, expect, it } from 'vitest';
import { BACKOFF_JITTER, BACKOFF_MAX_MS, baseDelay, reconnectDelay } from './backoff';

describe('reconnect backoff', () => {
  it('starts at 2 s, doubles, and stays at 32 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 50].map(baseDelay)).toEqual([
      2000, 4000, 8000, 16000, 32000, 32000, 32000, 32000,
    ]);
  });

  it('adds at most 25 % jitter either way and never exceeds 32 s', () => {
    const bounds = [
      [1500, 2500],
      [3000, 5000],
      [6000, 10000],
      [12000, 20000],
      [24000, 32000],
      [24000, 32000],
    ];
    bounds.forEach(([low, high], attempt) => {
      expect(reconnectDelay(attempt, () => 0)).toBe(low);
      expect(reconnectDelay(attempt, () => 0.999999)).toBe(high);
      for (let i = 0; i < 200; i += 1) {
        const d = reconnectDelay(attempt);
        expect(d).toBeGreaterThanOrEqual(low!);
        expect(d).toBeLessThanOrEqual(high!);
      }
    });
    expect(BACKOFF_JITTER).toBe(0.25);
    expect(BACKOFF_MAX_MS).toBe(32000);
  });

  it('spreads clients out: different random draws give different delays', () => {
    expect(reconnectDelay(0, () => 0.1)).not.toBe(reconnectDelay(0, () => 0.9));
  });
});
