import { beforeEach, describe, expect, it } from 'vitest';
import { FakeTimers, socketFactory } from '../test/fakes';
import { chunk, history, welcome } from '../test/frames';
import { reconnectsAfter } from './auth';
import { Connection, type ConnectionOptions, type ConnectionStatus } from './connection';
import type { ServerFrame } from './protocol';

const URL = 'ws://example.test/ws/chat?session_id=demo-1&user_id=alice';

function setup(random = () => 0.5, extra: Partial<ConnectionOptions> = {}) {
  const timers = new FakeTimers();
  const factory = socketFactory();
  const frames: ServerFrame[] = [];
  const statuses: ConnectionStatus[] = [];
  const closes: number[] = [];
  const conn = new Connection({
    url: URL,
    createSocket: factory.create,
    timers,
    random,
    onFrame: (f) => frames.push(f),
    onStatus: (s) => statuses.push(s),
    onClose: (c) => closes.push(c.code),
    ...extra,
  });
  return { conn, timers, factory, frames, statuses, closes };
}

/** Runs the clock until a new socket appears; returns how long that took. */
function timeToNextSocket(t: ReturnType<typeof setup>, limit = 60_000): number {
  const before = t.factory.sockets.length;
  for (let waited = 0; waited <= limit; waited += 10) {
    if (t.factory.sockets.length > before) return waited;
    t.timers.advance(10);
  }
  throw new Error('no reconnect within the limit');
}

describe('Connection', () => {
  let t: ReturnType<typeof setup>;
  beforeEach(() => {
    t = setup();
  });

  it('opens the URL, reports connecting, then connected with the node id from welcome', () => {
    t.conn.start();
    expect(t.factory.last.url).toBe(URL);
    expect(t.conn.status.state).toBe('connecting');
    t.factory.last.open();
    expect(t.conn.status.state).toBe('connecting');
    t.factory.last.receive(welcome('ws-node-2'));
    expect(t.conn.status).toMatchObject({ state: 'connected', nodeId: 'ws-node-2', failures: 0 });
    t.factory.last.receive(history([]));
    expect(t.frames.map((f) => f.type)).toEqual(['welcome', 'history']);
  });

  it('reconnects after failures at 2, 4, 8, 16, 32, 32 s', () => {
    t.conn.start();
    const waits: number[] = [];
    for (let i = 0; i < 6; i += 1) {
      t.factory.last.serverClose(1006);
      expect(t.conn.status.state).toBe('reconnecting');
      waits.push(timeToNextSocket(t));
    }
    expect(waits).toEqual([2000, 4000, 8000, 16000, 32000, 32000]);
  });

  it('jitters each delay within its bounds', () => {
    const draws = [0, 0.999999, 0.3];
    let i = 0;
    t = setup(() => draws[i++ % draws.length]!);
    t.conn.start();
    const waits: number[] = [];
    for (let n = 0; n < 6; n += 1) {
      t.factory.last.serverClose(1006);
      const retryIn = t.conn.status.retryAt! - t.timers.now();
      waits.push(retryIn);
      t.timers.advance(retryIn);
    }
    expect(waits).toEqual([1500, 5000, 7200, 12000, 32000, 28800]);
    expect(t.factory.sockets).toHaveLength(7);
  });

  it('starts over at 2 s once a socket got its welcome', () => {
    t.conn.start();
    t.factory.last.serverClose(1006);
    t.timers.advance(2000);
    t.factory.last.serverClose(1006);
    t.timers.advance(4000);
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.factory.last.serverClose(1011, 'storage unavailable');
    expect(t.closes).toEqual([1006, 1006, 1011]);
    expect(timeToNextSocket(t)).toBe(2000);
    expect(t.conn.status.state).toBe('reconnecting');
    expect(t.conn.status.nodeId).toBeNull();
  });

  it('reconnects on every close code, including clean ones', () => {
    t.conn.start();
    for (const code of [1000, 1011, 1013, 4000]) {
      t.factory.last.open();
      t.factory.last.receive(welcome());
      t.factory.last.serverClose(code);
      expect(t.conn.status.lastClose?.code).toBe(code);
      expect(timeToNextSocket(t)).toBe(2000);
    }
  });

  it('1012 (service restart) and 1001 (going away) after a welcome: the next socket opens at once', () => {
    t.conn.start();
    for (const [code, reason] of [
      [1012, 'service restart'],
      [1001, 'server shutting down'],
    ] as const) {
      const before = t.factory.sockets.length;
      const old = t.factory.last;
      old.open();
      old.receive(welcome('ws-node-1'));
      old.serverClose(code, reason);
      // No backoff wait: the new socket exists before any timer ran.
      expect(t.factory.sockets).toHaveLength(before + 1);
      expect(t.timers.pendingTimeouts()).toEqual([]);
      expect(t.conn.status).toMatchObject({
        state: 'reconnecting',
        nodeId: null,
        failures: 0,
        retryAt: null,
        lastClose: { code, reason },
      });
      // It resumes as any reconnect: welcome, then a fresh history.
      t.factory.last.open();
      t.factory.last.receive(welcome('ws-node-2'));
      t.factory.last.receive(history([]));
      expect(t.conn.status).toMatchObject({ state: 'connected', nodeId: 'ws-node-2' });
    }
    expect(t.closes).toEqual([1012, 1001]);
    expect(t.frames.map((f) => f.type)).toEqual(['welcome', 'welcome', 'history', 'welcome', 'welcome', 'history']);
  });

  it('1012 on a socket that never got its welcome waits for the backoff (no tight loop)', () => {
    t.conn.start();
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.factory.last.serverClose(1012, 'service restart');
    expect(t.factory.sockets).toHaveLength(2);
    // The node the new socket reached is draining too and refuses before its welcome.
    t.factory.last.open();
    t.factory.last.serverClose(1012, 'service restart');
    expect(t.factory.sockets).toHaveLength(2);
    expect(timeToNextSocket(t)).toBe(2000);
    t.factory.last.serverClose(1012, 'service restart');
    expect(timeToNextSocket(t)).toBe(4000);
  });

  it('1012 while the browser is offline waits for it to be back online', () => {
    t.conn.start();
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.conn.setOnline(false);
    t.factory.last.serverClose(1012, 'service restart');
    expect(t.factory.sockets).toHaveLength(1);
    expect(t.conn.status.state).toBe('disconnected');
    t.conn.setOnline(true);
    expect(t.factory.sockets).toHaveLength(2);
  });

  it('a 1012 that reconnectAfter refuses is not retried at all', () => {
    t = setup(() => 0.5, { reconnectAfter: () => false });
    t.conn.start();
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.factory.last.serverClose(1012);
    t.timers.advance(120_000);
    expect(t.factory.sockets).toHaveLength(1);
    expect(t.conn.status.state).toBe('disconnected');
  });

  it('measures the round trip of each ping from its pong (oldest ping first)', () => {
    const latencies: number[] = [];
    t = setup(() => 0.5, { onLatency: (ms) => latencies.push(ms) });
    t.conn.start();
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.timers.advance(30_000); // the keepalive ping
    t.timers.advance(40);
    expect(t.conn.pingNow()).toBe(true); // a second one, before the first is answered
    t.timers.advance(10);
    t.factory.last.receive({ type: 'pong', timestamp: 1 });
    t.timers.advance(5);
    t.factory.last.receive({ type: 'pong', timestamp: 2 });
    expect(latencies).toEqual([50, 15]);
    // An unsolicited pong (nothing in flight) reports nothing.
    t.factory.last.receive({ type: 'pong', timestamp: 3 });
    expect(latencies).toEqual([50, 15]);
    expect(t.frames.filter((f) => f.type === 'pong')).toHaveLength(3);
  });

  it('pingNow() sends only on a connected socket, and a new socket forgets the old pings', () => {
    const latencies: number[] = [];
    t = setup(() => 0.5, { onLatency: (ms) => latencies.push(ms) });
    t.conn.start();
    expect(t.conn.pingNow()).toBe(false);
    t.factory.last.open();
    expect(t.conn.pingNow()).toBe(false); // open, but no welcome yet
    t.factory.last.receive(welcome());
    expect(t.conn.pingNow()).toBe(true);
    expect(t.factory.last.sent).toEqual([{ type: 'ping' }]);
    t.factory.last.serverClose(1006);
    t.timers.advance(2000);
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.factory.last.receive({ type: 'pong', timestamp: 1 });
    expect(latencies).toEqual([]);
  });

  it('pings every 30 s while open', () => {
    t.conn.start();
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.timers.advance(29_999);
    expect(t.factory.last.sent).toEqual([]);
    t.timers.advance(1);
    expect(t.factory.last.sent).toEqual([{ type: 'ping' }]);
    t.factory.last.receive({ type: 'pong', timestamp: 1 });
    t.timers.advance(30_000);
    expect(t.factory.last.sent).toEqual([{ type: 'ping' }, { type: 'ping' }]);
    expect(t.factory.sockets).toHaveLength(1);
  });

  it('replaces a socket that does not answer a ping within 10 s', () => {
    t.conn.start();
    const first = t.factory.last;
    first.open();
    first.receive(welcome());
    t.timers.advance(30_000 + 9_999);
    expect(t.conn.status.state).toBe('connected');
    t.timers.advance(1);
    expect(first.closedByClient).not.toBeNull();
    expect(t.conn.status.state).toBe('reconnecting');
    expect(timeToNextSocket(t)).toBe(2000);
  });

  it('stop() closes the socket and never reconnects', () => {
    t.conn.start();
    const s = t.factory.last;
    s.open();
    s.receive(welcome());
    t.conn.stop();
    expect(s.closedByClient?.code).toBe(1000);
    expect(t.conn.status.state).toBe('disconnected');
    s.serverClose(1006); // handlers are detached: nothing happens
    t.timers.advance(120_000);
    expect(t.factory.sockets).toHaveLength(1);
  });

  it('reconnectNow() replaces the socket at once and ignores the old one afterwards', () => {
    t.conn.start();
    const old = t.factory.last;
    old.open();
    old.receive(welcome('ws-node-1'));
    t.conn.reconnectNow();
    expect(t.factory.sockets).toHaveLength(2);
    expect(old.closedByClient).not.toBeNull();
    old.receive(chunk('m1', 0, 'stale')); // late frame from the old socket
    expect(t.frames.map((f) => f.type)).toEqual(['welcome']);
    expect(t.conn.status.state).toBe('reconnecting');
    t.factory.last.open();
    t.factory.last.receive(welcome('ws-node-3'));
    expect(t.conn.status).toMatchObject({ state: 'connected', nodeId: 'ws-node-3' });
  });

  it('reconnectNow() skips the remaining backoff wait', () => {
    t.conn.start();
    t.factory.last.serverClose(1006);
    t.conn.reconnectNow();
    expect(t.factory.sockets).toHaveLength(2);
    expect(t.timers.pendingTimeouts()).toEqual([]);
  });

  it('waits while offline and tries at once when the browser is back online', () => {
    t.conn.start();
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.conn.setOnline(false);
    t.factory.last.serverClose(1006);
    expect(t.conn.status.state).toBe('disconnected');
    t.timers.advance(120_000);
    expect(t.factory.sockets).toHaveLength(1);
    t.conn.setOnline(true);
    expect(t.factory.sockets).toHaveLength(2);
  });

  it('send() is false without an open socket and true once open', () => {
    t.conn.start();
    expect(t.conn.send({ type: 'ping' })).toBe(false);
    t.factory.last.open();
    expect(t.conn.send({ type: 'chat', message: 'hi' })).toBe(true);
    expect(t.factory.last.sent).toEqual([{ type: 'chat', message: 'hi' }]);
  });

  it('drops frames that are not valid JSON frames', () => {
    t.conn.start();
    t.factory.last.open();
    for (const bad of ['not json', '42', '{"type":"dance"}', '{"type":"message","data":{}}', 'null']) {
      t.factory.last.receive(bad);
    }
    expect(t.frames).toEqual([]);
    expect(t.factory.sockets).toHaveLength(1);
  });

  it('counts a socket that cannot even be created as a failed attempt', () => {
    let calls = 0;
    const timers = new FakeTimers();
    const conn = new Connection({
      url: 'bad',
      timers,
      random: () => 0.5,
      onFrame: () => {},
      createSocket: () => {
        calls += 1;
        throw new SyntaxError('bad URL');
      },
    });
    conn.start();
    expect(conn.status.state).toBe('reconnecting');
    timers.advance(2000);
    expect(calls).toBe(2);
    timers.advance(4000);
    expect(calls).toBe(3);
  });
});

describe('Connection with authentication', () => {
  it('sends the auth frame first on every open socket, before pings and chats, never in the URL', () => {
    let token: string | null = 'jwt-1';
    const t = setup(() => 0.5, { authToken: () => token });
    t.conn.start();
    expect(t.factory.last.url).toBe(URL);
    expect(t.factory.last.url).not.toContain('jwt');
    t.factory.last.open();
    expect(t.factory.last.sent).toEqual([{ type: 'auth', token: 'jwt-1' }]);
    t.factory.last.receive(welcome());
    t.conn.send({ type: 'chat', message: 'hi' });
    t.timers.advance(30_000);
    expect(t.factory.last.sent).toEqual([
      { type: 'auth', token: 'jwt-1' },
      { type: 'chat', message: 'hi' },
      { type: 'ping' },
    ]);
    // The token is read again for the next socket.
    token = 'jwt-2';
    t.factory.last.serverClose(1001);
    t.timers.advance(2000);
    t.factory.last.open();
    expect(t.factory.last.sent).toEqual([{ type: 'auth', token: 'jwt-2' }]);
  });

  it('sends no auth frame when there is no token to send (dev mode)', () => {
    const t = setup(() => 0.5, { authToken: () => null });
    t.conn.start();
    t.factory.last.open();
    t.factory.last.receive(welcome());
    t.conn.send({ type: 'chat', message: 'hi' });
    expect(t.factory.last.sent).toEqual([{ type: 'chat', message: 'hi' }]);
  });

  it('4401: reports the close and stops trying (the token is no good)', () => {
    const t = setup(() => 0.5, { authToken: () => 'bad', reconnectAfter: ({ code }) => reconnectsAfter(code) });
    t.conn.start();
    t.factory.last.open();
    t.factory.last.serverClose(4401, 'invalid token');
    expect(t.closes).toEqual([4401]);
    expect(t.conn.status).toMatchObject({ state: 'disconnected', retryAt: null, lastClose: { code: 4401 } });
    t.timers.advance(120_000);
    expect(t.factory.sockets).toHaveLength(1);
    // reconnectNow() still works (after a new sign-in, say).
    t.conn.reconnectNow();
    expect(t.factory.sockets).toHaveLength(2);
  });

  it('4403: stops trying this session', () => {
    const t = setup(() => 0.5, { reconnectAfter: ({ code }) => reconnectsAfter(code) });
    t.conn.start();
    t.factory.last.open();
    t.factory.last.serverClose(4403, 'session belongs to another user');
    expect(t.conn.status.state).toBe('disconnected');
    t.timers.advance(120_000);
    expect(t.factory.sockets).toHaveLength(1);
  });

  it('4429: keeps reconnecting with the normal backoff', () => {
    const t = setup(() => 0.5, { reconnectAfter: ({ code }) => reconnectsAfter(code) });
    t.conn.start();
    const waits: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      t.factory.last.open();
      t.factory.last.serverClose(4429, 'too many sockets');
      expect(t.conn.status.state).toBe('reconnecting');
      waits.push(timeToNextSocket(t));
    }
    expect(waits).toEqual([2000, 4000, 8000, 16000]);
    expect(t.closes).toEqual([4429, 4429, 4429, 4429]);
  });

  it('1001, 1011, 1012 and 1013 keep reconnecting with the auth close codes in place', () => {
    const t = setup(() => 0.5, { reconnectAfter: ({ code }) => reconnectsAfter(code) });
    t.conn.start();
    for (const [code, wait] of [
      [1001, 0],
      [1011, 2000],
      [1012, 0],
      [1013, 2000],
    ] as const) {
      t.factory.last.open();
      t.factory.last.receive(welcome());
      const before = t.factory.sockets.length;
      t.factory.last.serverClose(code);
      if (wait === 0) expect(t.factory.sockets).toHaveLength(before + 1);
      else expect(timeToNextSocket(t)).toBe(wait);
    }
  });
});
