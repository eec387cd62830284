// Test doubles: a WebSocket the test drives by hand, and timers advanced by hand.

import type { SocketLike, Timers } from '../lib/connection';
import type { ServerFrame } from '../lib/protocol';
import type { Router } from '../lib/route';

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

/** A Storage (localStorage, sessionStorage) kept in a Map. */
export function memoryStorage(initial: Record<string, string> = {}) {
  const data = new Map(Object.entries(initial));
  return {
    data,
    getItem: (k: string) => data.get(k) ?? null,
    setItem: (k: string, v: string) => void data.set(k, String(v)),
    removeItem: (k: string) => void data.delete(k),
  };
}

/** A JSON response, as the gateway sends them. */
export function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

export interface FetchCall {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string | undefined;
}

/**
 * A fetch that records each request and answers with `answer(url, call)`; an answer that is an
 * Error rejects, as fetch does when the request cannot be made.
 */
export function fakeFetch(answer: (url: string, call: FetchCall) => Response | Error | Promise<Response>) {
  const calls: FetchCall[] = [];
  const fetch = async (url: string, init: RequestInit = {}): Promise<Response> => {
    const call: FetchCall = {
      url,
      method: init.method ?? 'GET',
      headers: Object.fromEntries(new Headers(init.headers).entries()),
      body: typeof init.body === 'string' ? init.body : undefined,
    };
    calls.push(call);
    const result = await answer(url, call);
    if (result instanceof Error) throw result;
    return result;
  };
  return { fetch, calls };
}

/** A router over an in-memory history, for tests. */
export function memoryRouter(initial = '/') {
  const entries = [initial];
  let at = 0;
  const listeners = new Set<() => void>();
  const router: Router & { entries: string[]; back: () => void } = {
    entries,
    path: () => entries[at]!,
    go: (path, { replace = false } = {}) => {
      if (entries[at] === path) return;
      if (replace) entries[at] = path;
      else {
        entries.splice(at + 1);
        entries.push(path);
        at += 1;
      }
    },
    listen: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    back: () => {
      if (at === 0) return;
      at -= 1;
      listeners.forEach((l) => l());
    },
  };
  return router;
}
