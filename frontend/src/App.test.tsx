// @vitest-environment jsdom
// The whole app over a fake server: GET /api/me and POST /api/cancel answered by a fake fetch,
// the socket by a FakeSocket, the reconnect timers by FakeTimers. What the user sees, and what
// goes on the wire, when the server asks for a token.
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import App from './App';
import { TOKEN_KEY } from './lib/auth';
import type { AppEnv } from './lib/env';
import { SESSION_KEY, USER_KEY } from './lib/session';
import { FakeTimers, fakeFetch, jsonResponse, memoryStorage, socketFactory, type FetchCall } from './test/fakes';
import { history, inFlight, SESSION, userMessage, welcome } from './test/frames';

afterEach(cleanup);

const API = 'http://gw.test/api';
const UNAUTHORIZED = { error: 'missing or invalid token', code: 'UNAUTHORIZED' };

/** /me of a server in required mode that knows one token, for alice. */
function requiredMe(call: FetchCall): Response {
  return call.headers.authorization === 'Bearer good-token'
    ? jsonResponse(200, { user_id: 'alice', auth_mode: 'required' })
    : jsonResponse(401, UNAUTHORIZED);
}

function devMe(): Response {
  return jsonResponse(200, { user_id: 'default_user', auth_mode: 'dev' });
}

function setup({
  me = requiredMe,
  cancel = () => jsonResponse(200, { status: 'cancelling' }),
  token,
}: {
  me?: (call: FetchCall) => Response;
  cancel?: (call: FetchCall) => Response;
  token?: string;
} = {}) {
  const factory = socketFactory();
  const timers = new FakeTimers();
  const idStore = memoryStorage({ [SESSION_KEY]: SESSION, [USER_KEY]: 'u-local' });
  const tokenStore = memoryStorage(token ? { [TOKEN_KEY]: token } : {});
  const server = fakeFetch((url, call) => (url === `${API}/me` ? me(call) : cancel(call)));
  const env: AppEnv = {
    endpoints: { wsUrl: 'ws://gw.test/ws/chat', apiUrl: API },
    idStore,
    tokenStore,
    fetch: server.fetch,
    createSocket: factory.create,
    timers,
  };
  render(<App env={env} />);
  return {
    factory,
    timers,
    idStore,
    tokenStore,
    server,
    /** Opens the current socket and plays the server's side of a handshake. */
    connect(frames = [welcome(), history([])]) {
      act(() => {
        factory.last.open();
        frames.forEach((f) => factory.last.receive(f));
      });
    },
    serverClose(code: number, reason = '') {
      act(() => factory.last.serverClose(code, reason));
    },
  };
}

async function signIn(token: string) {
  fireEvent.change(await screen.findByTestId('token-input'), { target: { value: token } });
  fireEvent.click(screen.getByTestId('sign-in-button'));
}

const noticeTexts = () => screen.queryAllByTestId('notice').map((n) => n.textContent);

describe('the app against a server that requires a token', () => {
  it('/me 401 at start shows the sign-in step and opens no socket', async () => {
    const app = setup();
    expect(await screen.findByRole('heading', { name: 'Sign in' })).toBeTruthy();
    expect(screen.queryByTestId('chat-input')).toBeNull();
    expect(app.factory.sockets).toHaveLength(0);
    expect(app.server.calls.map((c) => c.url)).toEqual([`${API}/me`]);
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

  it('close 4403 starts a new conversation and says why', async () => {
    const app = setup({ token: 'good-token' });
    await screen.findByTestId('chat-input');
    app.connect([welcome(), history([userMessage('u1', 'hi')])]);
    expect(screen.getAllByTestId('message')).toHaveLength(1);
    app.serverClose(4403, 'session belongs to another user');
    expect(noticeTexts()).toEqual([expect.stringContaining('This conversation belongs to another account')]);
    const newSession = app.idStore.data.get(SESSION_KEY)!;
    expect(newSession).not.toBe(SESSION);
    expect(screen.getByTestId('session-id').textContent).toContain(newSession);
    expect(screen.queryAllByTestId('message')).toHaveLength(0);
    // At once, a socket for the new conversation (no backoff wait), authenticated like the first.
    expect(app.factory.sockets).toHaveLength(2);
    expect(new URL(app.factory.last.url).searchParams.get('session_id')).toBe(newSession);
    app.connect([welcome('ws-node-1', newSession), history([], null, newSession)]);
    expect(app.factory.last.sent[0]).toEqual({ type: 'auth', token: 'good-token' });
    expect(noticeTexts()).toHaveLength(1);
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
