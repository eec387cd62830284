// The whole app over a fake server, for the app's tests: GET /api/me, GET /api/sessions,
// DELETE /api/history and POST /api/cancel answered by a fake fetch, the socket by a FakeSocket,
// the reconnect timers by FakeTimers, the address bar by a memory router.
import { act, fireEvent, render, screen } from '@testing-library/react';
import App from '../App';
import { TOKEN_KEY } from '../lib/auth';
import type { AppEnv } from '../lib/env';
import { lastSessionKey, USER_KEY } from '../lib/session';
import { FakeTimers, fakeFetch, jsonResponse, memoryRouter, memoryStorage, socketFactory, type FetchCall } from './fakes';
import { history, SESSION, welcome } from './frames';

export const API = 'http://gw.test/api';
export const UNAUTHORIZED = { error: 'missing or invalid token', code: 'UNAUTHORIZED' };

/** /me of a server in required mode that knows one token, for alice. */
export function requiredMe(call: FetchCall): Response {
  return call.headers.authorization === 'Bearer good-token'
    ? jsonResponse(200, { user_id: 'alice', auth_mode: 'required' })
    : jsonResponse(401, UNAUTHORIZED);
}

export function devMe(): Response {
  return jsonResponse(200, { user_id: 'default_user', auth_mode: 'dev' });
}

/** A sessions list entry as the server sends it. */
export function listed(sessionId: string, title: string, lastActivity: number) {
  return { session_id: sessionId, title, last_activity_time: lastActivity, start_time: lastActivity - 1000 };
}

export function setup({
  me = requiredMe,
  cancel = () => jsonResponse(200, { status: 'cancelling' }),
  sessions = () => jsonResponse(200, { user_id: 'alice', sessions: [] }),
  remove = () => jsonResponse(200, { status: 'deleted' }),
  token,
  path = '/',
  store = {},
  frame,
}: {
  me?: (call: FetchCall) => Response;
  cancel?: (call: FetchCall) => Response;
  sessions?: (call: FetchCall) => Response;
  remove?: (call: FetchCall) => Response | Promise<Response>;
  token?: string;
  path?: string;
  store?: Record<string, string>;
  frame?: AppEnv['frame'];
} = {}) {
  const factory = socketFactory();
  const timers = new FakeTimers();
  // Both users of these tests had conversation SESSION open last.
  const idStore = memoryStorage({
    [lastSessionKey('u-local')]: SESSION,
    [lastSessionKey('alice')]: SESSION,
    [USER_KEY]: 'u-local',
    ...store,
  });
  const tokenStore = memoryStorage(token ? { [TOKEN_KEY]: token } : {});
  const router = memoryRouter(path);
  const server = fakeFetch((url, call) => {
    if (url === `${API}/me`) return me(call);
    if (url.startsWith(`${API}/sessions`)) return sessions(call);
    if (url.startsWith(`${API}/history/`) && call.method === 'DELETE') return remove(call);
    return cancel(call);
  });
  const env: AppEnv = {
    endpoints: { wsUrl: 'ws://gw.test/ws/chat', apiUrl: API },
    idStore,
    tokenStore,
    fetch: server.fetch,
    createSocket: factory.create,
    timers,
    router,
    ...(frame ? { frame } : {}),
  };
  render(<App env={env} />);
  return {
    factory,
    timers,
    idStore,
    tokenStore,
    server,
    router,
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

export async function signIn(token: string) {
  fireEvent.change(await screen.findByTestId('token-input'), { target: { value: token } });
  fireEvent.click(screen.getByTestId('sign-in-button'));
}

export const noticeTexts = () => screen.queryAllByTestId('notice').map((n) => n.textContent);

