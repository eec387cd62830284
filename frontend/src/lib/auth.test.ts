import { afterEach, describe, expect, it, vi } from 'vitest';
import { fakeFetch, jsonResponse, memoryStorage, type FetchCall } from '../test/fakes';
import {
  tokenExpiresAt,
  AuthSession,
  browserTokenStore,
  clearToken,
  closeAction,
  effectiveUserId,
  EXPIRED_TEXT,
  fetchMe,
  loadToken,
  reconnectsAfter,
  saveToken,
  socketAuthToken,
  TOKEN_KEY,
  TOO_MANY_TABS,
  type AuthView,
} from './auth';

const API = 'http://gw.test/api';
const ALICE = { user_id: 'alice', auth_mode: 'required' };
const UNAUTHORIZED = { error: 'missing or invalid token', code: 'UNAUTHORIZED' };

/** A server whose /me accepts exactly the tokens in `valid` (required mode). */
function requiredServer(valid: Record<string, string> = { 'good-token': 'alice' }) {
  return fakeFetch((url, call: FetchCall) => {
    expect(url).toBe(`${API}/me`);
    const token = call.headers.authorization?.replace(/^Bearer /, '');
    const user = token ? valid[token] : undefined;
    return user ? jsonResponse(200, { user_id: user, auth_mode: 'required' }) : jsonResponse(401, UNAUTHORIZED);
  });
}

describe('token storage', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('keeps the token under chat.token, trimmed, and forgets it', () => {
    const store = memoryStorage();
    expect(loadToken(store)).toBeNull();
    saveToken(store, 'abc');
    expect(store.data.get(TOKEN_KEY)).toBe('abc');
    expect(loadToken(store)).toBe('abc');
    store.data.set(TOKEN_KEY, '  ');
    expect(loadToken(store)).toBeNull();
    clearToken(store);
    expect(store.data.has(TOKEN_KEY)).toBe(false);
  });

  it('lives in sessionStorage (this tab only), never in localStorage', () => {
    const session = memoryStorage();
    const local = memoryStorage();
    vi.stubGlobal('sessionStorage', session);
    vi.stubGlobal('localStorage', local);
    saveToken(browserTokenStore(), 'tab-token');
    expect(session.data.get(TOKEN_KEY)).toBe('tab-token');
    expect(local.data.size).toBe(0);
  });

  it('survives a storage that throws', () => {
    const broken = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('denied');
      },
      removeItem: () => {
        throw new Error('denied');
      },
    };
    expect(loadToken(broken)).toBeNull();
    expect(() => saveToken(broken, 't')).not.toThrow();
    expect(() => clearToken(broken)).not.toThrow();
  });
});

describe('GET /me', () => {
  it('200 required: the token subject and the mode; the token goes in Authorization', async () => {
    const server = fakeFetch(() => jsonResponse(200, ALICE));
    expect(await fetchMe(API, 'jwt-1', server.fetch)).toEqual({ kind: 'ok', userId: 'alice', mode: 'required' });
    expect(server.calls).toHaveLength(1);
    expect(server.calls[0]).toMatchObject({ url: `${API}/me`, method: 'GET' });
    expect(server.calls[0]!.headers.authorization).toBe('Bearer jwt-1');
  });

  it('200 dev: no Authorization header without a token', async () => {
    const server = fakeFetch(() => jsonResponse(200, { user_id: 'default_user', auth_mode: 'dev' }));
    expect(await fetchMe(API, null, server.fetch)).toEqual({ kind: 'ok', userId: 'default_user', mode: 'dev' });
    expect(server.calls[0]!.headers.authorization).toBeUndefined();
  });

  it('401: a token is required', async () => {
    const server = fakeFetch(() => jsonResponse(401, { error: 'token expired', code: 'UNAUTHORIZED' }));
    expect(await fetchMe(API, 'old', server.fetch)).toEqual({ kind: 'unauthorized', error: 'token expired' });
  });

  it('no usable answer (an older server without /me, 5xx, a network error, a bad body) is "unavailable"', async () => {
    const answers = [
      () => new Response('not found', { status: 404 }),
      () => jsonResponse(503, { error: 'redis down', code: 'UNAVAILABLE' }),
      () => new TypeError('Failed to fetch'),
      () => jsonResponse(200, { hello: 'world' }),
      () => new Response('<html>', { status: 200 }),
    ];
    for (const answer of answers) {
      const server = fakeFetch(answer);
      expect((await fetchMe(API, null, server.fetch)).kind).toBe('unavailable');
    }
  });

  it('an unknown auth_mode is "unknown"', async () => {
    const server = fakeFetch(() => jsonResponse(200, { user_id: 'bob', auth_mode: 'sso' }));
    expect(await fetchMe(API, null, server.fetch)).toEqual({ kind: 'ok', userId: 'bob', mode: 'unknown' });
  });
});

describe('the socket and its close codes', () => {
  it('sends the token first in required mode, never in dev mode, and when unknown only if there is one', () => {
    expect(socketAuthToken('required', 'jwt')).toBe('jwt');
    expect(socketAuthToken('required', null)).toBeNull();
    expect(socketAuthToken('dev', 'jwt')).toBeNull();
    expect(socketAuthToken('unknown', 'jwt')).toBe('jwt');
    expect(socketAuthToken('unknown', null)).toBeNull();
  });

  it('uses the token subject as the user id in required mode, the browser id otherwise', () => {
    expect(effectiveUserId({ mode: 'required', userId: 'alice', token: 't' }, 'u-local')).toBe('alice');
    expect(effectiveUserId({ mode: 'dev', userId: 'default_user', token: null }, 'u-local')).toBe('u-local');
    expect(effectiveUserId({ mode: 'unknown', userId: null, token: 't' }, 'u-local')).toBe('u-local');
    // A subject that is not a valid query id (the server ignores the query one anyway).
    expect(effectiveUserId({ mode: 'required', userId: 'a@b.c', token: 't' }, 'u-local')).toBe('u-local');
  });

  it('4401: sign in again, no reconnect', () => {
    expect(closeAction(4401)).toEqual({ type: 'signIn' });
    expect(reconnectsAfter(4401)).toBe(false);
  });

  it('4403: a new conversation with a notice, no reconnect to this one', () => {
    expect(closeAction(4403)).toEqual({ type: 'notYours' });
    expect(reconnectsAfter(4403)).toBe(false);
  });

  it('4429: a notice, and the normal reconnect backoff', () => {
    expect(closeAction(4429)).toMatchObject({ type: 'noticeAndReconnect', notice: { code: TOO_MANY_TABS } });
    expect(reconnectsAfter(4429)).toBe(true);
  });

  it('other codes keep their handling: reconnect', () => {
    for (const code of [1000, 1001, 1006, 1011, 1013, 4000, 4001]) {
      expect(closeAction(code)).toEqual({ type: 'reconnect' });
      expect(reconnectsAfter(code)).toBe(true);
    }
  });
});

describe('AuthSession', () => {
  function session(fetch: ReturnType<typeof fakeFetch>['fetch'], stored: Record<string, string> = {}) {
    const store = memoryStorage(stored);
    const views: AuthView[] = [];
    const auth = new AuthSession({ apiUrl: API, store, fetch, onChange: (v) => views.push(v) });
    return { auth, store, views };
  }

  it('/me 200 at start: the chat, as the token subject', async () => {
    const s = session(requiredServer().fetch, { [TOKEN_KEY]: 'good-token' });
    await s.auth.start();
    expect(s.views.map((v) => v.step)).toEqual(['checking', 'ready']);
    expect(s.auth.view).toEqual({
      step: 'ready',
      identity: { mode: 'required', userId: 'alice', token: 'good-token' },
    });
  });

  it('/me 200 dev without a token: the chat, no token', async () => {
    const s = session(fakeFetch(() => jsonResponse(200, { user_id: 'default_user', auth_mode: 'dev' })).fetch);
    await s.auth.start();
    expect(s.auth.view).toEqual({ step: 'ready', identity: { mode: 'dev', userId: 'default_user', token: null } });
  });

  it('/me 401 at start without a token: the sign-in step, no error', async () => {
    const s = session(requiredServer().fetch);
    await s.auth.start();
    expect(s.auth.view).toEqual({ step: 'signIn', error: null, busy: false });
  });

  it('/me 401 at start with a stored token: forgets it and says why', async () => {
    const s = session(requiredServer().fetch, { [TOKEN_KEY]: 'expired-token' });
    await s.auth.start();
    expect(s.auth.view).toEqual({ step: 'signIn', error: EXPIRED_TEXT, busy: false });
    expect(s.store.data.has(TOKEN_KEY)).toBe(false);
    expect(s.auth.token).toBeNull();
  });

  it('/me not answering at start: the chat anyway (mode unknown), as before authentication', async () => {
    const s = session(fakeFetch(() => new Response('', { status: 404 })).fetch, { [TOKEN_KEY]: 't' });
    await s.auth.start();
    expect(s.auth.view).toEqual({ step: 'ready', identity: { mode: 'unknown', userId: null, token: 't' } });
  });

  it('sign in: keeps the token in the store, asks /me with it, goes to the chat on 200', async () => {
    const server = requiredServer();
    const s = session(server.fetch);
    await s.auth.start();
    const pending = s.auth.signIn('  good-token \n');
    expect(s.auth.view).toEqual({ step: 'signIn', error: null, busy: true });
    expect(s.store.data.get(TOKEN_KEY)).toBe('good-token');
    await pending;
    expect(server.calls.at(-1)!.headers.authorization).toBe('Bearer good-token');
    expect(s.auth.view).toMatchObject({ step: 'ready', identity: { userId: 'alice', token: 'good-token' } });
  });

  it('sign in with a refused token: an error, and the token is not kept', async () => {
    const s = session(requiredServer().fetch);
    await s.auth.start();
    await s.auth.signIn('wrong');
    expect(s.auth.view).toMatchObject({ step: 'signIn', busy: false });
    expect((s.auth.view as { error: string }).error).toMatch(/refused/);
    expect(s.store.data.has(TOKEN_KEY)).toBe(false);
  });

  it('sign in while the server is unreachable: says so', async () => {
    const s = session(fakeFetch(() => new TypeError('Failed to fetch')).fetch);
    await s.auth.signIn('t');
    expect((s.auth.view as { error: string }).error).toMatch(/Could not reach the server/);
  });

  it('sign in with nothing typed: asks for a token without calling the server', async () => {
    const server = requiredServer();
    const s = session(server.fetch);
    await s.auth.signIn('   ');
    expect(s.auth.view).toEqual({ step: 'signIn', error: 'Enter your access token.', busy: false });
    expect(server.calls).toEqual([]);
  });

  it('sign out forgets the token and shows the sign-in step', async () => {
    const s = session(requiredServer().fetch, { [TOKEN_KEY]: 'good-token' });
    await s.auth.start();
    s.auth.signOut();
    expect(s.auth.view).toEqual({ step: 'signIn', error: null, busy: false });
    expect(s.store.data.has(TOKEN_KEY)).toBe(false);
  });

  it('a refused token later (4401, REST 401): forgotten; /me asked without it; 401 shows sign-in', async () => {
    const server = requiredServer();
    const s = session(server.fetch, { [TOKEN_KEY]: 'good-token' });
    await s.auth.start();
    await s.auth.rejected();
    expect(s.store.data.has(TOKEN_KEY)).toBe(false);
    expect(server.calls.at(-1)!.headers.authorization).toBeUndefined();
    expect(s.auth.view).toEqual({ step: 'signIn', error: EXPIRED_TEXT, busy: false });
  });

  it('a refusal with /me unreachable still shows sign-in (no loop of refused sockets)', async () => {
    let answer: () => Response | Error = () => jsonResponse(200, ALICE);
    const s = session(fakeFetch(() => answer()).fetch, { [TOKEN_KEY]: 't' });
    await s.auth.start();
    answer = () => new TypeError('Failed to fetch');
    await s.auth.rejected();
    expect(s.auth.view.step).toBe('signIn');
  });

  it('a refusal when the server turns out not to need a token goes back to the chat', async () => {
    const s = session(fakeFetch(() => jsonResponse(200, { user_id: 'default_user', auth_mode: 'dev' })).fetch);
    await s.auth.start();
    await s.auth.rejected();
    expect(s.auth.view).toMatchObject({ step: 'ready', identity: { mode: 'dev', token: null } });
  });

  it('drops an answer that arrives after a newer action', async () => {
    let release!: () => void;
    const slow = fakeFetch(
      () => new Promise<Response>((resolve) => (release = () => resolve(jsonResponse(200, ALICE)))),
    );
    const s = session(slow.fetch, { [TOKEN_KEY]: 'good-token' });
    const started = s.auth.start();
    s.auth.signOut();
    release();
    await started;
    expect(s.auth.view).toEqual({ step: 'signIn', error: null, busy: false });
  });
});

describe('tokenExpiresAt', () => {
  const b64 = (v: object) => btoa(JSON.stringify(v)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  it('reads exp (seconds) of a JWT as milliseconds', () => {
    expect(tokenExpiresAt(`${b64({ alg: 'HS256' })}.${b64({ sub: 'alice', exp: 1_700_000_000 })}.sig`)).toBe(1_700_000_000_000);
  });
  it('is null without an exp, or for anything that is not a JWT', () => {
    expect(tokenExpiresAt(`${b64({ alg: 'HS256' })}.${b64({ sub: 'alice' })}.sig`)).toBeNull();
    expect(tokenExpiresAt('opaque-token')).toBeNull();
    expect(tokenExpiresAt('a.%%%.c')).toBeNull();
  });
});
