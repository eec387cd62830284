// @vitest-environment jsdom
// The whole app over a fake server: GET /api/me, GET /api/sessions, DELETE /api/history and
// POST /api/cancel answered by a fake fetch, the socket by a FakeSocket, the reconnect timers by
// FakeTimers, the address bar by a memory router. What the user sees, and what goes on the wire.
import { act, cleanup, fireEvent, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { TOKEN_KEY } from './lib/auth';
import { jsonResponse } from './test/fakes';
import { API, devMe, noticeTexts, setup, signIn, UNAUTHORIZED } from './test/appHarness';
import { chunk, finalOf, history, inFlight, message, SESSION, userMessage, welcome } from './test/frames';

afterEach(cleanup);

describe('the app against a server that requires a token', () => {
  it('/me 401 at start shows the sign-in step and opens no socket', async () => {
    const app = setup();
    expect(await screen.findByRole('heading', { name: 'Sign in' })).toBeTruthy();
    expect(screen.queryByTestId('chat-input')).toBeNull();
    expect(app.factory.sockets).toHaveLength(0);
    expect(app.server.calls.map((c) => c.url)).toEqual([`${API}/me`]);
    expect(app.router.path()).toBe('/');
  });

  it('signing in keeps the token in sessionStorage, opens the chat as alice, and sends the auth frame first', async () => {
    const app = setup();
    await signIn('good-token');
    await screen.findByTestId('chat-input');
    expect(app.tokenStore.data.get(TOKEN_KEY)).toBe('good-token');
    expect(app.server.calls.at(-1)!.headers.authorization).toBe('Bearer good-token');
    // The token never goes in the URL; the query still names the user (the subject).
    const url = new URL(app.factory.last.url);
    expect(Object.fromEntries(url.searchParams)).toEqual({ session_id: SESSION, user_id: 'alice' });
    expect(app.factory.last.url).not.toContain('good-token');
    app.connect();
    expect(app.factory.last.sent[0]).toEqual({ type: 'auth', token: 'good-token' });
    fireEvent.change(screen.getByTestId('chat-input'), { target: { value: 'hello' } });
    fireEvent.click(screen.getByTestId('send-button'));
    expect(app.factory.last.sent).toEqual([
      { type: 'auth', token: 'good-token' },
      { type: 'chat', message: 'hello' },
    ]);
    expect(screen.getByTestId('sign-out-button')).toBeTruthy();
  });

  it('a refused token shows the error and is not kept', async () => {
    const app = setup();
    await signIn('wrong-token');
    expect((await screen.findByTestId('sign-in-error')).textContent).toMatch(/refused/);
    expect(app.tokenStore.data.has(TOKEN_KEY)).toBe(false);
    expect(app.factory.sockets).toHaveLength(0);
    await signIn('good-token');
    await screen.findByTestId('chat-input');
  });

  it('a stored token goes straight to the chat', async () => {
    const app = setup({ token: 'good-token' });
    await screen.findByTestId('chat-input');
    app.connect();
    expect(app.factory.last.sent[0]).toEqual({ type: 'auth', token: 'good-token' });
  });

  it('Sign out forgets the token and shows the sign-in step', async () => {
    const app = setup({ token: 'good-token' });
    fireEvent.click(await screen.findByTestId('sign-out-button'));
    expect(await screen.findByTestId('token-input')).toBeTruthy();
    expect(app.tokenStore.data.has(TOKEN_KEY)).toBe(false);
    expect(app.factory.last.closedByClient).not.toBeNull();
  });

  it('close 4401 forgets the token and returns to the sign-in step, without reconnecting', async () => {
    const app = setup({ token: 'good-token' });
    await screen.findByTestId('chat-input');
    app.connect();
    app.serverClose(4401, 'token expired');
    expect(await screen.findByTestId('sign-in-error')).toBeTruthy();
    expect(app.tokenStore.data.has(TOKEN_KEY)).toBe(false);
    act(() => app.timers.advance(120_000));
    expect(app.factory.sockets).toHaveLength(1);
  });

  it('close 4403 shows "not found or not yours", none of the conversation, and does not reconnect', async () => {
    const app = setup({ token: 'good-token', path: '/c/bobs-session' });
    await screen.findByTestId('chat-input');
    expect(new URL(app.factory.last.url).searchParams.get('session_id')).toBe('bobs-session');
    app.factory.last.open();
    app.serverClose(4403, 'session belongs to another user');
    expect(screen.getByTestId('conversation-not-found').textContent).toContain('not yours');
    expect(screen.queryAllByTestId('message')).toHaveLength(0);
    expect(screen.queryByTestId('chat-input')).toBeNull();
    act(() => app.timers.advance(120_000));
    expect(app.factory.sockets).toHaveLength(1);
    // Its button opens a new conversation, at a new address.
    fireEvent.click(screen.getByRole('button', { name: 'Start a new chat' }));
    const fresh = new URL(app.factory.last.url).searchParams.get('session_id')!;
    expect(fresh).not.toBe('bobs-session');
    expect(app.router.path()).toBe(`/c/${fresh}`);
    app.connect([welcome('ws-node-1', fresh), history([], null, fresh)]);
    expect(app.factory.last.sent[0]).toEqual({ type: 'auth', token: 'good-token' });
  });

  it('a token is dropped when it expires: the sign-in step comes back by itself', async () => {
    // A JWT-shaped token whose exp is 30 s after the fake clock's start (1,000,000 ms).
    const b64 = (v: object) => btoa(JSON.stringify(v)).replace(/=+$/, '');
    const token = `${b64({ alg: 'HS256' })}.${b64({ sub: 'alice', exp: 1030 })}.sig`;
    const app = setup({
      token,
      me: (call) =>
        call.headers.authorization === `Bearer ${token}`
          ? jsonResponse(200, { user_id: 'alice', auth_mode: 'required' })
          : jsonResponse(401, UNAUTHORIZED),
    });
    await screen.findByTestId('chat-input');
    app.connect();
    act(() => app.timers.advance(29_000));
    expect(screen.queryByTestId('token-input')).toBeNull();
    act(() => app.timers.advance(1_000));
    expect(await screen.findByTestId('sign-in-error')).toBeTruthy();
    expect(app.tokenStore.data.has(TOKEN_KEY)).toBe(false);
  });

  it('close 4429 shows a notice and keeps reconnecting with the backoff', async () => {
    const app = setup({ token: 'good-token' });
    await screen.findByTestId('chat-input');
    app.connect();
    app.serverClose(4429, 'too many sockets');
    expect(noticeTexts()).toEqual([expect.stringContaining('Too many open tabs; close some and retry')]);
    expect(screen.getByTestId('connection-indicator').dataset.state).toBe('reconnecting');
    // The backoff, jitter included: 2 s ± 25 %, then 4 s ± 25 % (the welcome never came).
    act(() => app.timers.advance(2500));
    expect(app.factory.sockets).toHaveLength(2);
    act(() => app.factory.last.open());
    app.serverClose(4429, 'too many sockets');
    expect(noticeTexts()).toHaveLength(1); // the same notice, not a pile of them
    act(() => app.timers.advance(2500));
    expect(app.factory.sockets).toHaveLength(2);
    act(() => app.timers.advance(2500));
    expect(app.factory.sockets).toHaveLength(3);
    app.connect();
    expect(screen.getByTestId('connection-indicator').dataset.state).toBe('connected');
  });

  it('Stop while the socket is down: POST /api/cancel carries the token', async () => {
    const app = setup({ token: 'good-token' });
    await screen.findByTestId('chat-input');
    app.connect([welcome(), history([userMessage('u1', 'hi'), inFlight('a1', 'Hel')], { messageId: 'a1', lastIndex: 0 })]);
    app.serverClose(1006);
    fireEvent.click(screen.getByTestId('stop-button'));
    const cancel = app.server.calls.at(-1)!;
    expect(cancel).toMatchObject({ url: `${API}/cancel`, method: 'POST' });
    expect(cancel.headers.authorization).toBe('Bearer good-token');
  });

  it('a REST 401 returns to the sign-in step', async () => {
    const app = setup({ token: 'good-token', cancel: () => jsonResponse(401, UNAUTHORIZED) });
    await screen.findByTestId('chat-input');
    app.connect([welcome(), history([inFlight('a1', 'Hel')], { messageId: 'a1', lastIndex: 0 })]);
    app.serverClose(1006);
    fireEvent.click(screen.getByTestId('stop-button'));
    expect(await screen.findByTestId('token-input')).toBeTruthy();
    expect(app.tokenStore.data.has(TOKEN_KEY)).toBe(false);
  });

  it('a REST 429 shows how long to wait', async () => {
    const app = setup({
      token: 'good-token',
      cancel: () => jsonResponse(429, { error: 'rate limited', code: 'RATE_LIMITED' }, { 'retry-after': '30' }),
    });
    await screen.findByTestId('chat-input');
    app.connect([welcome(), history([inFlight('a1', 'Hel')], { messageId: 'a1', lastIndex: 0 })]);
    app.serverClose(1006);
    fireEvent.click(screen.getByTestId('stop-button'));
    expect((await screen.findByTestId('notice')).textContent).toContain('Wait 30 s before trying again.');
    expect(screen.getByTestId('notice').dataset.code).toBe('RATE_LIMITED');
  });
});

describe('the app against a dev server', () => {
  it('goes straight to the chat with its own user id, sends no auth frame, offers no Sign out', async () => {
    const app = setup({ me: devMe });
    await screen.findByTestId('chat-input');
    expect(app.server.calls[0]!.headers.authorization).toBeUndefined();
    expect(new URL(app.factory.last.url).searchParams.get('user_id')).toBe('u-local');
    app.connect();
    expect(app.factory.last.sent).toEqual([]);
    expect(screen.queryByTestId('sign-out-button')).toBeNull();
  });

  it('works as before against a server without /me (404)', async () => {
    const app = setup({ me: () => new Response('not found', { status: 404 }) });
    await screen.findByTestId('chat-input');
    app.connect();
    expect(app.factory.last.sent).toEqual([]);
    expect(screen.getByTestId('connection-indicator').dataset.state).toBe('connected');
  });
});

describe('the app when its gateway restarts or goes away', () => {
  for (const [code, reason] of [
    [1012, 'service restart'],
    [1001, 'server shutting down'],
  ] as const) {
    it(`close ${code} reconnects at once and resumes with a fresh welcome and history`, async () => {
      const app = setup({ token: 'good-token' });
      await screen.findByTestId('chat-input');
      app.connect([
        welcome('ws-node-1'),
        history([userMessage('u1', 'hi'), inFlight('a1', 'Hel')], { messageId: 'a1', lastIndex: 0 }),
      ]);
      app.serverClose(code, reason);
      // At once: a socket for the same conversation, with no backoff wait and no countdown.
      expect(app.factory.sockets).toHaveLength(2);
      expect(app.timers.pendingTimeouts()).toEqual([]);
      expect(new URL(app.factory.last.url).searchParams.get('session_id')).toBe(SESSION);
      const indicator = screen.getByTestId('connection-indicator');
      expect(indicator.dataset.state).toBe('reconnecting');
      expect(screen.queryByRole('button', { name: 'Retry now' })).toBeNull();
      expect(screen.getAllByTestId('message')[1]!.textContent).toContain('Hel');
      expect(noticeTexts()).toEqual([]);
      // The new socket resumes as any reconnect: auth frame first, welcome, a fresh history.
      app.connect([
        welcome('ws-node-2'),
        history([userMessage('u1', 'hi'), inFlight('a1', 'Hello wor')], { messageId: 'a1', lastIndex: 2 }),
      ]);
      expect(app.factory.last.sent[0]).toEqual({ type: 'auth', token: 'good-token' });
      expect(indicator.dataset).toMatchObject({ state: 'connected', nodeId: 'ws-node-2' });
      act(() => app.factory.last.receive(chunk('a1', 3, 'ld')));
      const answer = screen.getAllByTestId('message')[1]!;
      expect(answer.textContent).toContain('Hello world');
      expect(answer.dataset.status).toBe('streaming');
    });
  }

  it('a close 1012 before the welcome waits for the backoff', async () => {
    const app = setup({ me: devMe });
    await screen.findByTestId('chat-input');
    app.connect();
    app.serverClose(1012, 'service restart');
    expect(app.factory.sockets).toHaveLength(2);
    act(() => app.factory.last.open());
    app.serverClose(1012, 'service restart');
    expect(app.factory.sockets).toHaveLength(2);
    expect(screen.getByRole('button', { name: 'Retry now' })).toBeTruthy();
    act(() => app.timers.advance(2500));
    expect(app.factory.sockets).toHaveLength(3);
  });
});

describe('the connection status panel', () => {
  async function chatWithPanel() {
    const app = setup({ me: devMe });
    await screen.findByTestId('chat-input');
    const toggle = screen.getByRole('button', { name: 'Connection status' });
    const field = (name: string) => screen.getByTestId(`status-${name}`);
    return { ...app, toggle, field, open: () => fireEvent.click(toggle) };
  }

  it('is closed by default, and the "Connection status" button opens and closes it', async () => {
    const app = await chatWithPanel();
    expect(app.toggle.getAttribute('aria-expanded')).toBe('false');
    expect(screen.queryByTestId('status-panel')).toBeNull();
    app.open();
    expect(app.toggle.getAttribute('aria-expanded')).toBe('true');
    const panel = screen.getByRole('region', { name: 'Connection details' });
    expect(app.toggle.getAttribute('aria-controls')).toBe(panel.id);
    expect(app.field('node').textContent).toBe('–');
    expect(app.field('latency').textContent).toBe('–');
    expect(app.field('rate').textContent).toBe('–');
    fireEvent.click(app.toggle);
    expect(app.toggle.getAttribute('aria-expanded')).toBe('false');
    expect(screen.queryByTestId('status-panel')).toBeNull();
  });

  it('shows the gateway node id from the last welcome', async () => {
    const app = await chatWithPanel();
    app.connect([welcome('ws-node-7'), history([])]);
    app.open();
    expect(app.field('node').textContent).toBe('ws-node-7');
    app.serverClose(1012, 'service restart');
    expect(app.field('node').textContent).toBe('ws-node-7'); // the last one, until the next welcome
    app.connect([welcome('ws-node-2'), history([])]);
    expect(app.field('node').textContent).toBe('ws-node-2');
  });

  it('pings once when opened and shows the round trip when the pong arrives, then after each keepalive ping', async () => {
    const app = await chatWithPanel();
    app.connect();
    expect(app.factory.last.sent).toEqual([]);
    app.open();
    expect(app.factory.last.sent).toEqual([{ type: 'ping' }]);
    expect(app.field('latency').textContent).toBe('–');
    act(() => app.timers.advance(42));
    act(() => app.factory.last.receive({ type: 'pong', timestamp: 1 }));
    expect(app.field('latency').textContent).toBe('42 ms');
    // The keepalive ping (every 30 s) keeps it current; no extra pings of the panel's own.
    act(() => app.timers.advance(30_000 - 42));
    expect(app.factory.last.sent).toEqual([{ type: 'ping' }, { type: 'ping' }]);
    act(() => app.timers.advance(8));
    act(() => app.factory.last.receive({ type: 'pong', timestamp: 2 }));
    expect(app.field('latency').textContent).toBe('8.0 ms');
  });

  it('opened before the welcome, sends no ping', async () => {
    const app = await chatWithPanel();
    act(() => app.factory.last.open());
    app.open();
    expect(app.factory.last.sent).toEqual([]);
  });

  it('shows chunks/s while chunks arrive, and – when nothing streams', async () => {
    const app = await chatWithPanel();
    app.connect([welcome(), history([userMessage('u1', 'hi')])]);
    app.open();
    expect(app.field('rate').textContent).toBe('–');
    // 38 chunks, 80 ms apart (12.5 chunks/s), the last 2960 ms after the first.
    for (let i = 0; i < 38; i += 1) {
      if (i > 0) act(() => app.timers.advance(80));
      act(() => app.factory.last.receive(chunk('a1', i, `w${i} `)));
    }
    expect(screen.getAllByTestId('message')[1]!.dataset.status).toBe('streaming');
    // The panel refreshes every 500 ms from the first chunk on: at 3000 ms, the last 2 s.
    act(() => app.timers.advance(40));
    expect(app.field('rate').textContent).toBe('12.5 chunks/s');
    // The answer stalls: at 4000 ms, 12 chunks in the last 2 s.
    act(() => app.timers.advance(1000));
    expect(app.field('rate').textContent).toBe('6.0 chunks/s');
    act(() => app.factory.last.receive(message(finalOf('a1', 'done'))));
    expect(app.field('rate').textContent).toBe('–');
  });

  it('follows the connection state', async () => {
    const app = await chatWithPanel();
    app.open();
    expect(app.field('state').textContent).toBe('connecting');
    app.connect();
    expect(app.field('state').textContent).toBe('open');
    app.serverClose(1006);
    expect(app.field('state').textContent).toBe('reconnecting · 1 failed');
    expect(app.field('last-close').textContent).toBe('1006 connection lost');
    act(() => app.timers.advance(2500));
    app.connect();
    expect(app.field('state').textContent).toBe('open');
    act(() => void window.dispatchEvent(new Event('offline')));
    app.serverClose(1001, 'server shutting down');
    expect(app.field('state').textContent).toBe('closed');
    expect(app.field('last-close').textContent).toBe('1001 going away (server shutting down)');
    act(() => void window.dispatchEvent(new Event('online')));
    expect(app.field('state').textContent).toBe('reconnecting');
  });
});
