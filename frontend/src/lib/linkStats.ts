// What the developer status panel shows about the socket, gathered as frames arrive: the gateway
// of the last `welcome`, the last ping's round trip, and the chunk rate of the answer streaming
// now. It is an external store (subscribe / getSnapshot, for useSyncExternalStore) kept apart
// from the chat state, so that showing it costs nothing per chunk: a chunk only appends its
// arrival time; listeners are told of a new node, a new round trip, an answer starting or
// ending, and, while an answer streams and somebody listens, of the rate every REFRESH_MS.
//
// The chunk rate uses only the arrival times of chunk frames already received on the socket.

import { browserTimers, type Timers } from './connection';
import { isChunk, type ServerFrame } from './protocol';

/** The chunk rate counts the chunks of the last RATE_WINDOW_MS. */
export const RATE_WINDOW_MS = 2_000;
/** How often listeners get a fresh chunk rate while an answer streams. */
export const RATE_REFRESH_MS = 500;

export interface LinkSnapshot {
  /** The gateway node id of the last `welcome` (kept across reconnects until the next one). */
  nodeId: string | null;
  /** Round trip of the last answered ping, in ms. */
  latencyMs: number | null;
  /** The answer streaming now (from its chunks), if any. */
  streamingId: string | null;
  /** Chunks per second of that answer; null when none streams. */
  chunkRate: number | null;
}

export class LinkStats {
  private snapshot: LinkSnapshot = { nodeId: null, latencyMs: null, streamingId: null, chunkRate: null };
  private readonly listeners = new Set<() => void>();
  private streamingId: string | null = null;
  /** Arrival times (monotonic ms) of the streaming answer's chunks in the window, oldest first. */
  private arrivals: number[] = [];
  /** Whether a chunk of the streaming answer arrived before the window (it is full of the answer). */
  private olderArrival = false;
  private ticker: unknown = null;

  constructor(private readonly timers: Timers = browserTimers) {}

  // -- the store (stable functions, for useSyncExternalStore) --

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    // A listener that comes mid-answer gets the rate of now, not of the last refresh.
    this.refresh();
    this.updateTicker();
    return () => {
      this.listeners.delete(listener);
      this.updateTicker();
    };
  };

  readonly getSnapshot = (): LinkSnapshot => this.snapshot;

  // -- inputs --

  /** One frame received on the socket. */
  frame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'welcome':
        this.set({ nodeId: frame.nodeId });
        break;
      case 'history':
        // What streams according to the fresh state (its rate starts over with its chunks).
        if (frame.streaming) this.startStream(frame.streaming.messageId);
        else this.endStream();
        break;
      case 'message': {
        const m = frame.data;
        if (isChunk(m)) this.chunk(m.messageId);
        else if (m.isComplete && m.messageId === this.streamingId) this.endStream();
        break;
      }
      case 'recovery':
        if (frame.status === 'COMPLETED' && frame.messageId === this.streamingId) this.endStream();
        break;
      default:
        break;
    }
  }

  /** A ping's round trip. */
  latency(ms: number): void {
    this.set({ latencyMs: ms });
  }

  /** The socket closed: nothing streams on it any more (the next `history` says what does). */
  socketClosed(): void {
    this.endStream();
  }

  // -- the chunk rate --

  /** Chunks per second of the streaming answer at `now`; null when none streams. */
  chunkRate(now: number = this.now()): number | null {
    if (this.streamingId === null) return null;
    this.trim(now);
    let count: number;
    let span: number;
    if (this.olderArrival) {
      // The whole window lies within the answer.
      count = this.arrivals.length;
      span = RATE_WINDOW_MS;
    } else {
      // The answer's first chunk (as seen here) is in the window: time from it on.
      const first = this.arrivals[0];
      if (first === undefined) return 0;
      count = this.arrivals.length - 1;
      span = now - first;
    }
    return span > 0 ? (count * 1000) / span : 0;
  }

  private chunk(messageId: string): void {
    const now = this.now();
    const started = messageId !== this.streamingId;
    if (started) this.resetStream(messageId);
    this.arrivals.push(now);
    this.trim(now);
    if (started) {
      this.refresh();
      this.updateTicker();
    }
  }

  private startStream(messageId: string): void {
    if (messageId === this.streamingId) return;
    this.resetStream(messageId);
    this.refresh();
    this.updateTicker();
  }

  private endStream(): void {
    if (this.streamingId === null) return;
    this.resetStream(null);
    this.refresh();
    this.updateTicker();
  }

  private resetStream(messageId: string | null): void {
    this.streamingId = messageId;
    this.arrivals = [];
    this.olderArrival = false;
  }

  private trim(now: number): void {
    const from = now - RATE_WINDOW_MS;
    let drop = 0;
    while (drop < this.arrivals.length && this.arrivals[drop]! <= from) drop += 1;
    if (drop > 0) {
      this.arrivals.splice(0, drop);
      this.olderArrival = true;
    }
  }

  // -- notifying --

  private now(): number {
    return this.timers.monotonicNow ? this.timers.monotonicNow() : this.timers.now();
  }

  /** Recomputes the streaming part of the snapshot. */
  private refresh(): void {
    this.set({ streamingId: this.streamingId, chunkRate: this.chunkRate() });
  }

  /** Applies `patch`; tells the listeners when something changed (then only). */
  private set(patch: Partial<LinkSnapshot>): void {
    const next = { ...this.snapshot, ...patch };
    const keys = Object.keys(next) as (keyof LinkSnapshot)[];
    if (keys.every((k) => next[k] === this.snapshot[k])) return;
    this.snapshot = next;
    this.listeners.forEach((listener) => listener());
  }

  /** Runs the rate refresh only while an answer streams and somebody listens. */
  private updateTicker(): void {
    const wanted = this.streamingId !== null && this.listeners.size > 0;
    if (wanted && this.ticker === null) {
      this.ticker = this.timers.setInterval(() => this.refresh(), RATE_REFRESH_MS);
    } else if (!wanted && this.ticker !== null) {
      this.timers.clearInterval(this.ticker);
      this.ticker = null;
    }
  }
}
