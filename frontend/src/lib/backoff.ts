// Reconnect schedule (docs/PROTOCOL.md section 7.5): 2 s, doubling, capped at 32 s, with jitter
// so that the thousands of browsers a dead gateway drops do not all come back in the same
// instant.

export const BACKOFF_INITIAL_MS = 2_000;
export const BACKOFF_MAX_MS = 32_000;
/** Each delay is drawn from [base * (1 - JITTER), base * (1 + JITTER)], then capped. */
export const BACKOFF_JITTER = 0.25;

/** The delay before reconnect attempt `attempt` (0 = the first retry), without jitter. */
export function baseDelay(attempt: number): number {
  const exponent = Math.max(0, Math.min(attempt, 30));
  return Math.min(BACKOFF_INITIAL_MS * 2 ** exponent, BACKOFF_MAX_MS);
}

/**
 * The delay before reconnect attempt `attempt`, with jitter. `random` returns a number in
 * [0, 1) like Math.random (injectable for tests). Never above BACKOFF_MAX_MS.
 */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const base = baseDelay(attempt);
  const factor = 1 - BACKOFF_JITTER + 2 * BACKOFF_JITTER * random();
  return Math.round(Math.min(base * factor, BACKOFF_MAX_MS));
}
