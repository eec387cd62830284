// Test doubles: a WebSocket the test drives by hand, and timers advanced by hand.

import type { SocketLike, Timers } from '../lib/connection';
import type { ServerFrame } from '../lib/protocol';

export class FakeSocket implements SocketLike {
  readyState = 0; // CONNECTING
  onopen: SocketLike['onopen'] = null;
  onclose: SocketLike['onclose'] = null;
  onmessage: SocketLike['onmessage'] = null;
  onerror: SocketLike['onerror'] = null;
  /** Frames the client sent, parsed. */
  sent: unknown[] = [];
  closedByClient: { code?: number; reason?: string } | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }

  // Server side.
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: ServerFrame | string): void {
    this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
  }

  serverClose(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code, reason });
  }
}

/** Collects every socket a Connection creates. */
export function socketFactory() {
  const sockets: FakeSocket[] = [];
  const create = (url: string) => {
    const s = new FakeSocket(url);
    sockets.push(s);
    return s;
  };
  return {
    sockets,
    create,
    get last(): FakeSocket {
      const s = sockets[sockets.length - 1];
      if (!s) throw new Error('no socket was opened');
      return s;
    },
  };
}

interface Task {
  id: number;
  at: number;
  fn: () => void;
  every: number | null;
}

export class FakeTimers implements Timers {
  private time = 1_000_000;
  private nextId = 1;
  private tasks = new Map<number, Task>();

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    return this.add(fn, ms, null);
  }

  setInterval(fn: () => void, ms: number): unknown {
    return this.add(fn, ms, ms);
  }

  clearTimeout(handle: unknown): void {
    this.tasks.delete(handle as number);
  }

  clearInterval(handle: unknown): void {
    this.tasks.delete(handle as number);
  }

  /** Pending one-shot timers, as delays from now. */
  pendingTimeouts(): number[] {
    return [...this.tasks.values()].filter((t) => t.every === null).map((t) => t.at - this.time);
  }

  /** Moves the clock forward, running every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let next: Task | undefined;
      for (const t of this.tasks.values()) if (t.at <= end && (!next || t.at < next.at)) next = t;
      if (!next) break;
      this.time = next.at;
      if (next.every !== null) next.at += next.every;
      else this.tasks.delete(next.id);
      next.fn();
    }
    this.time = end;
  }

  private add(fn: () => void, ms: number, every: number | null): number {
    const id = this.nextId++;
    this.tasks.set(id, { id, at: this.time + ms, fn, every });
    return id;
  }
}
