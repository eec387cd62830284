// One conversation's WebSocket, kept open: opens it, reconnects after every close with the
// backoff schedule (at once after a gateway's own "going away" / "service restart" close of a
// socket that was serving), pings every 30 s, measures each ping's round trip, and closes a
// socket that stops answering. It knows nothing about chat state: parsed frames go to
// `onFrame`, and the chat reducer decides what they mean.
// When the server requires a token, the first frame on every socket is `auth` (`authToken`);
// closes that retrying cannot fix (a refused token) end the attempts (`reconnectAfter`).
//
// The socket factory and the timers are injectable so the whole life cycle can be driven by a
// fake socket and fake timers in unit tests.

import { reconnectDelay } from './backoff';
import { parseServerFrame, type ClientFrame, type ServerFrame } from './protocol';

/** The part of the browser's WebSocket this class uses. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type SocketFactory = (url: string) => SocketLike;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  /** Wall clock, ms since the epoch (`retryAt`). */
  now(): number;
  /**
   * A monotonic clock in ms (performance.now()) for round trips and chunk rates. Optional:
   * without it `now()` is used.
   */
  monotonicNow?(): number;
}

export const browserTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
  setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
  clearInterval: (h) => globalThis.clearInterval(h as ReturnType<typeof setInterval>),
  now: () => Date.now(),
  monotonicNow: () => performance.now(),
};

/** WebSocket.OPEN; the constant is not on SocketLike because fakes do not have it. */
const OPEN = 1;

export const PING_INTERVAL_MS = 30_000;
/** A socket that sends nothing for this long after a ping is considered dead and replaced. */
export const PONG_TIMEOUT_MS = 10_000;

/**
 * Closes after which the next socket opens at once, without the backoff wait, when the closed
 * socket had got its `welcome`: the gateway is going away on purpose (1001 "going away", 1012
 * "service restart", sent by a gateway draining on SIGTERM) and NGINX sends the next socket to
 * another node. The new socket resumes as any reconnect does (`welcome`, a fresh `history`).
 * The same close on a socket that never got its `welcome` goes through the backoff, so a node
 * that keeps refusing cannot make the client spin.
 */
export const RECONNECT_AT_ONCE_CODES: ReadonlySet<number> = new Set([1001, 1012]);

/** Pings whose round trip is still being timed, per socket (the oldest are dropped). */
const MAX_PINGS_IN_FLIGHT = 8;

/**
 * - `connecting`: the first socket is opening (nothing was ever received);
 * - `connected`: the server sent `welcome` on the current socket;
 * - `reconnecting`: the socket closed; waiting for the next attempt, or attempting;
 * - `disconnected`: stopped, or the browser is offline (no attempts until it is back).
 */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

export interface ConnectionStatus {
  state: ConnectionState;
  /** The serving gateway's id, from the current socket's `welcome` (null before it). */
  nodeId: string | null;
  /** Consecutive attempts that ended without a `welcome`. */
  failures: number;
  /** When the next attempt starts (ms since the epoch), while waiting for it. */
  retryAt: number | null;
  /** Code and reason of the last close. */
  lastClose: { code: number; reason: string } | null;
}

export interface ConnectionOptions {
  /** Full WebSocket URL, query included. */
  url: string;
  onFrame: (frame: ServerFrame) => void;
  onStatus?: (status: ConnectionStatus) => void;
  /** Called once for every socket that is gone (closed by the server, the network or us). */
  onClose?: (info: { code: number; reason: string }) => void;
  /** The round trip of a `ping`, in ms (monotonic clock), when its `pong` arrives. */
  onLatency?: (ms: number) => void;
  /**
   * Read when a socket opens: a token to send as its first frame (`{"type":"auth","token"}`),
   * or null to send none. The token never goes in the URL (URLs end up in proxy logs).
   */
  authToken?: () => string | null;
  /**
   * Whether to try again after the server closed the socket with this code (default: always).
   * False stops the attempts: the state becomes `disconnected` until `reconnectNow()`.
   */
  reconnectAfter?: (close: { code: number; reason: string }) => boolean;
  createSocket?: SocketFactory;
  timers?: Timers;
  random?: () => number;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
}

export class Connection {
  private readonly opts: Required<Omit<ConnectionOptions, 'onStatus' | 'onClose' | 'onLatency'>> &
    Pick<ConnectionOptions, 'onStatus' | 'onClose' | 'onLatency'>;
  private socket: SocketLike | null = null;
  private started = false;
  private stopped = false;
  private offline = false;
  private everConnected = false;
  private retryTimer: unknown = null;
  private pingTimer: unknown = null;
  private pongTimer: unknown = null;
  private lastReceivedAt = 0;
  /** When each unanswered ping of the current socket was sent (monotonic ms), oldest first. */
  private pingsInFlight: number[] = [];
  private current: ConnectionStatus = {
    state: 'connecting',
    nodeId: null,
    failures: 0,
    retryAt: null,
    lastClose: null,
  };

  constructor(options: ConnectionOptions) {
    this.opts = {
      createSocket: (url) => new WebSocket(url) as unknown as SocketLike,
      timers: browserTimers,
      random: Math.random,
      pingIntervalMs: PING_INTERVAL_MS,
      pongTimeoutMs: PONG_TIMEOUT_MS,
      authToken: () => null,
      reconnectAfter: () => true,
      ...options,
    };
  }

  get status(): ConnectionStatus {
    return this.current;
  }

  /** Opens the first socket. Calling it again does nothing. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.open();
  }

  /** Closes the socket for good; no reconnect follows. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.clearRetry();
    this.dropSocket('client closed');
    this.setStatus({ state: 'disconnected', nodeId: null, retryAt: null });
  }

  /** Sends a frame on the open socket. False when there is none (nothing is queued). */
  send(frame: ClientFrame): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    try {
      socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Sends a `ping` now (its round trip goes to `onLatency`), if the socket is connected (got
   * its `welcome`). False when it was not sent.
   */
  pingNow(): boolean {
    if (this.current.state !== 'connected') return false;
    return this.ping();
  }

  /**
   * Replaces the socket at once, without waiting for the backoff: used by "retry now" and when
   * the client must reload the conversation (a `recovery` of EXPIRED or NOT_FOUND). The new
   * socket starts with a fresh `history`.
   */
  reconnectNow(): void {
    if (!this.started || this.stopped || this.offline) return;
    this.clearRetry();
    if (this.socket) this.lose(4000, 'client reconnect', 'none');
    this.open();
  }

  /** Follows the browser's online/offline events: no attempts while offline, one at once when back. */
  setOnline(online: boolean): void {
    if (this.stopped || online === !this.offline) return;
    this.offline = !online;
    if (this.offline) {
      if (!this.socket) {
        this.clearRetry();
        this.setStatus({ state: 'disconnected', retryAt: null });
      }
      // An open socket may still work (a local server); it is replaced when it closes.
    } else if (!this.socket && this.started) {
      this.clearRetry();
      this.open();
    }
  }

  private open(patch: Partial<ConnectionStatus> = {}): void {
    this.setStatus({
      state: this.everConnected || this.current.failures > 0 ? 'reconnecting' : 'connecting',
      nodeId: null,
      retryAt: null,
      ...patch,
    });
    let socket: SocketLike;
    try {
      socket = this.opts.createSocket(this.opts.url);
    } catch {
      // An unusable URL: count it as a failed attempt so the backoff still applies.
      this.afterClose({ code: 1006, reason: 'could not open socket' });
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.lastReceivedAt = this.opts.timers.now();
      // Before anything else: until the server accepts it, it reads no other frame.
      const token = this.opts.authToken();
      if (token) this.send({ type: 'auth', token });
      this.pingTimer = this.opts.timers.setInterval(() => this.ping(), this.opts.pingIntervalMs);
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.lastReceivedAt = this.opts.timers.now();
      this.clearPongTimer();
      if (typeof event.data !== 'string') return;
      const frame = parseServerFrame(event.data);
      if (!frame) return;
      if (frame.type === 'pong') {
        // A socket answers in order, so a pong answers the oldest ping still unanswered.
        const sentAt = this.pingsInFlight.shift();
        if (sentAt !== undefined) this.opts.onLatency?.(Math.max(0, this.clock() - sentAt));
      }
      if (frame.type === 'welcome') {
        this.everConnected = true;
        this.setStatus({ state: 'connected', nodeId: frame.nodeId, failures: 0, retryAt: null });
      }
      this.opts.onFrame(frame);
    };
    socket.onerror = () => {
      // A close event always follows; that is where the reconnect is scheduled.
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      const close = { code: event.code, reason: event.reason };
      let then: 'retry' | 'atOnce' | 'halt' = 'halt';
      if (this.opts.reconnectAfter(close)) then = RECONNECT_AT_ONCE_CODES.has(close.code) ? 'atOnce' : 'retry';
      this.lose(close.code, close.reason, then);
    };
  }

  private clock(): number {
    const timers = this.opts.timers;
    return timers.monotonicNow ? timers.monotonicNow() : timers.now();
  }

  private ping(): boolean {
    if (!this.send({ type: 'ping' })) return false;
    this.pingsInFlight.push(this.clock());
    if (this.pingsInFlight.length > MAX_PINGS_IN_FLIGHT) this.pingsInFlight.shift();
    const sentAt = this.opts.timers.now();
    this.clearPongTimer();
    this.pongTimer = this.opts.timers.setTimeout(() => {
      this.pongTimer = null;
      if (this.lastReceivedAt < sentAt) this.lose(4001, 'no answer to ping', 'retry');
    }, this.opts.pongTimeoutMs);
    return true;
  }

  /**
   * The current socket is gone (closed by the server, the network, or us). Then: `retry` with
   * the backoff, `atOnce` (a new socket now, if this one had its `welcome`; else as `retry`),
   * `none` (the caller opens the next socket), or `halt` (a close that retrying cannot fix: no
   * more attempts until reconnectNow()).
   */
  private lose(code: number, reason: string, then: 'retry' | 'atOnce' | 'none' | 'halt'): void {
    const socket = this.socket;
    const wasConnected = this.current.state === 'connected';
    this.dropSocket(reason);
    if (then === 'halt' && !this.stopped) {
      this.setStatus({ state: 'disconnected', nodeId: null, retryAt: null, lastClose: { code, reason } });
    }
    if (socket) this.opts.onClose?.({ code, reason });
    if (then === 'atOnce' && wasConnected && !this.offline && !this.stopped && !this.socket) {
      // onClose may have replaced (a new session) or stopped the connection: checked above.
      this.open({ failures: 0, lastClose: { code, reason } });
    } else if (then === 'retry' || then === 'atOnce') {
      this.afterClose({ code, reason }, wasConnected);
    }
  }

  /** Schedules the next attempt (or waits for `online`). */
  private afterClose(close: { code: number; reason: string }, wasConnected = false): void {
    if (this.stopped) return;
    // A socket that got its `welcome` resets the count; the first retry after it waits 2 s.
    const failures = wasConnected ? 0 : this.current.failures;
    if (this.offline) {
      this.setStatus({ state: 'disconnected', nodeId: null, failures, retryAt: null, lastClose: close });
      return;
    }
    const delay = reconnectDelay(failures, this.opts.random);
    this.setStatus({
      state: 'reconnecting',
      nodeId: null,
      failures: failures + 1,
      retryAt: this.opts.timers.now() + delay,
      lastClose: close,
    });
    this.retryTimer = this.opts.timers.setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, delay);
  }

  /** Detaches and closes the current socket, and stops its ping. */
  private dropSocket(reason: string): void {
    const socket = this.socket;
    this.socket = null;
    if (this.pingTimer !== null) this.opts.timers.clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.clearPongTimer();
    this.pingsInFlight = [];
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
    try {
      socket.close(1000, reason);
    } catch {
      // Already closed, or a code the browser refuses: nothing more to do.
    }
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) this.opts.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private clearPongTimer(): void {
    if (this.pongTimer !== null) this.opts.timers.clearTimeout(this.pongTimer);
    this.pongTimer = null;
  }

  private setStatus(patch: Partial<ConnectionStatus>): void {
    this.current = { ...this.current, ...patch };
    this.opts.onStatus?.(this.current);
  }
}
