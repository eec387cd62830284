// Authentication on the client: the token (kept per tab in sessionStorage), `GET /api/me` (who
// the server thinks we are, and whether it requires a token), what the socket sends first, what
// the auth close codes mean, and the sign-in state machine (`AuthSession`). No React here:
// `fetch` and the storage are injectable, as the socket factory and timers of lib/connection are.
//
// Server modes: `dev` (tokens optional; the socket's identity is its `user_id` query parameter)
// and `required` (every REST call needs `Authorization: Bearer <token>`; the socket's first frame
// must be `{"type":"auth","token":...}`, and the user id is the token's subject).

import { authHeaders, type FetchLike } from './api';
import type { KeyValueStore } from './session';
import { ID_PATTERN } from './protocol';

/** sessionStorage key of the token: per tab, gone when the tab closes. Never localStorage. */
export const TOKEN_KEY = 'chat.token';

/** The part of Storage used for the token (sessionStorage, or a Map-backed fake in tests). */
export interface TokenStore extends KeyValueStore {
  removeItem(key: string): void;
}

/** What the server requires; `unknown` when /me could not tell (an older server, a network error). */
export type AuthMode = 'dev' | 'required' | 'unknown';

export function loadToken(store: TokenStore | null): string | null {
  try {
    const token = store?.getItem(TOKEN_KEY) ?? null;
    return token && token.trim() ? token.trim() : null;
  } catch {
    return null;
  }
}

export function saveToken(store: TokenStore | null, token: string): void {
  try {
    store?.setItem(TOKEN_KEY, token);
  } catch {
    // Without storage the token lives as long as the page.
  }
}

export function clearToken(store: TokenStore | null): void {
  try {
    store?.removeItem(TOKEN_KEY);
  } catch {
    // Nothing stored, then.
  }
}

/** The tab's sessionStorage, or null where it is unavailable. */
export function browserTokenStore(): TokenStore | null {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

/**
 * When `token` expires (its `exp` claim, in ms since the epoch), read without checking the
 * signature (the server checks it); null when it is not a JWT or has no `exp`.
 */
export function tokenExpiresAt(token: string): number | null {
  const payload = token.split('.')[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '='));
    const exp: unknown = (JSON.parse(json) as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// GET /me

export type MeResult =
  /** 200: who the server thinks the caller is, and its mode. */
  | { kind: 'ok'; userId: string; mode: AuthMode }
  /** 401: a token is required (missing, invalid or expired). */
  | { kind: 'unauthorized'; error: string }
  /** No usable answer: network error, 404 (a server without /me), 5xx, a body that is not JSON. */
  | { kind: 'unavailable'; error: string };

/** `GET {apiUrl}/me`, with the token when there is one. Never throws. */
export async function fetchMe(apiUrl: string, token: string | null, fetchFn?: FetchLike): Promise<MeResult> {
  const doFetch = fetchFn ?? ((url, init) => globalThis.fetch(url, init));
  let response: Response;
  try {
    response = await doFetch(`${apiUrl}/me`, {
      method: 'GET',
      headers: { accept: 'application/json', ...authHeaders(token) },
    });
  } catch (e) {
    return { kind: 'unavailable', error: String(e) };
  }
  let body: Record<string, unknown> = {};
  try {
    const value: unknown = await response.json();
    if (typeof value === 'object' && value !== null) body = value as Record<string, unknown>;
  } catch {
    // Not JSON: handled below by status.
  }
  if (response.status === 401) {
    return { kind: 'unauthorized', error: typeof body.error === 'string' ? body.error : '' };
  }
  if (!response.ok || typeof body.user_id !== 'string' || body.user_id === '') {
    return { kind: 'unavailable', error: `HTTP ${response.status}` };
  }
  const mode: AuthMode =
    body.auth_mode === 'required' ? 'required' : body.auth_mode === 'dev' ? 'dev' : 'unknown';
  return { kind: 'ok', userId: body.user_id, mode };
}

// ---------------------------------------------------------------------------------------------
// The socket

/**
 * The token the socket sends as its first frame, or null for none: always in `required` mode,
 * never in `dev` mode, and when the mode is unknown only if the tab has a token (a server without
 * authentication ignores the frame; one that requires it closes the socket with 4401 otherwise).
 */
export function socketAuthToken(mode: AuthMode, token: string | null): string | null {
  if (mode === 'dev') return null;
  return token;
}

/**
 * The user id the app uses: in `required` mode the token's subject (/me's `user_id`), otherwise
 * the browser's own id (the socket's `user_id` query parameter, as before authentication). The
 * subject is only used when it is a valid id for the query string (the server ignores it there
 * in `required` mode, but still parses the URL).
 */
export function effectiveUserId(identity: Identity, localUserId: string): string {
  if (identity.mode === 'required' && identity.userId && ID_PATTERN.test(identity.userId)) {
    return identity.userId;
  }
  return localUserId;
}

/** Close codes the server uses for authentication. */
export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_TOO_MANY_SOCKETS = 4429;

/** Notice code of close 4429 (its text in components/Notices). */
export const TOO_MANY_TABS = 'TOO_MANY_TABS';

export interface NoticeInput {
  code: string;
  text: string;
}

export type CloseAction =
  /**
   * Any other code (1001, 1011, 1012, 1013, 1006, ...): reconnect, with the backoff (at once
   * after 1001 and 1012 on a socket that was serving: lib/connection RECONNECT_AT_ONCE_CODES).
   */
  | { type: 'reconnect' }
  /** 4401: the token is no good. Do not reconnect; forget it and show the sign-in step. */
  | { type: 'signIn' }
  /**
   * 4403: the session belongs to another user. Do not reconnect to it; show "not found or not
   * yours" (the same for a session that does not exist: the server does not say which).
   */
  | { type: 'notYours' }
  /** 4429: too many sockets for this user. Tell the user, and reconnect with the backoff. */
  | { type: 'noticeAndReconnect'; notice: NoticeInput };

export function closeAction(code: number): CloseAction {
  switch (code) {
    case CLOSE_UNAUTHORIZED:
      return { type: 'signIn' };
    case CLOSE_FORBIDDEN:
      return { type: 'notYours' };
    case CLOSE_TOO_MANY_SOCKETS:
      return {
        type: 'noticeAndReconnect',
        notice: { code: TOO_MANY_TABS, text: 'This tab keeps trying to reconnect.' },
      };
    default:
      return { type: 'reconnect' };
  }
}

/** Whether the Connection should try again after a close with `code`. */
export function reconnectsAfter(code: number): boolean {
  const action = closeAction(code);
  return action.type === 'reconnect' || action.type === 'noticeAndReconnect';
}

// ---------------------------------------------------------------------------------------------
// The sign-in state machine

export interface Identity {
  mode: AuthMode;
  /** /me's `user_id` (null when /me did not answer). */
  userId: string | null;
  /** The token in use, if any (sent on REST calls; on the socket as `socketAuthToken` says). */
  token: string | null;
}

export type AuthView =
  /** Asking /me; nothing to show yet. */
  | { step: 'checking' }
  /** The sign-in form; `error` when a token was refused; `busy` while a submitted one is checked. */
  | { step: 'signIn'; error: string | null; busy: boolean }
  /** The chat, as `identity`. */
  | { step: 'ready'; identity: Identity };

export interface AuthSessionOptions {
  apiUrl: string;
  store: TokenStore | null;
  fetch?: FetchLike;
  onChange?: (view: AuthView) => void;
}

export const REFUSED_TEXT = 'That token was refused: it is invalid or has expired.';
export const EXPIRED_TEXT = 'Your token was refused or has expired. Sign in again.';

/**
 * Which screen the app shows, from /me's answers: the chat when /me says 200 (or does not answer
 * at all: an older server, or a network error the socket will run into too), the sign-in step
 * when it says 401. Answers that arrive after a newer action (sign out, another submit) are dropped.
 */
export class AuthSession {
  private current: AuthView = { step: 'checking' };
  private tokenValue: string | null;
  private generation = 0;

  constructor(private readonly opts: AuthSessionOptions) {
    this.tokenValue = loadToken(opts.store);
  }

  get view(): AuthView {
    return this.current;
  }

  /** The token in use (null: none). */
  get token(): string | null {
    return this.tokenValue;
  }

  /** The first check, with the stored token if there is one. */
  async start(): Promise<void> {
    const generation = ++this.generation;
    const token = this.tokenValue;
    this.set({ step: 'checking' });
    const me = await fetchMe(this.opts.apiUrl, token, this.opts.fetch);
    if (generation !== this.generation) return;
    if (me.kind === 'unauthorized') {
      this.forget();
      this.set({ step: 'signIn', error: token ? EXPIRED_TEXT : null, busy: false });
    } else {
      this.set({ step: 'ready', identity: identityOf(me, token) });
    }
  }

  /** The sign-in form was submitted: keep the token, check it with /me. */
  async signIn(input: string): Promise<void> {
    const token = input.trim();
    const generation = ++this.generation;
    if (!token) {
      this.set({ step: 'signIn', error: 'Enter your access token.', busy: false });
      return;
    }
    this.tokenValue = token;
    saveToken(this.opts.store, token);
    this.set({ step: 'signIn', error: null, busy: true });
    const me = await fetchMe(this.opts.apiUrl, token, this.opts.fetch);
    if (generation !== this.generation) return;
    if (me.kind === 'ok') {
      this.set({ step: 'ready', identity: identityOf(me, token) });
      return;
    }
    this.forget();
    this.set({
      step: 'signIn',
      error:
        me.kind === 'unauthorized'
          ? REFUSED_TEXT + (me.error ? ` (${me.error})` : '')
          : `Could not reach the server (${me.error}). Try again.`,
      busy: false,
    });
  }

  /** The "Sign out" control: forget the token, show the sign-in step. */
  signOut(): void {
    this.generation += 1;
    this.forget();
    this.set({ step: 'signIn', error: null, busy: false });
  }

  /**
   * The server refused the token (a 4401 close, a REST 401): forget it and ask /me again,
   * without it. 200 (the server does not need one after all) goes back to the chat; 401, or no
   * answer, shows the sign-in step.
   */
  async rejected(): Promise<void> {
    if (this.current.step !== 'ready') return;
    const generation = ++this.generation;
    const hadToken = this.tokenValue !== null;
    this.forget();
    this.set({ step: 'checking' });
    const me = await fetchMe(this.opts.apiUrl, null, this.opts.fetch);
    if (generation !== this.generation) return;
    if (me.kind === 'ok') this.set({ step: 'ready', identity: identityOf(me, null) });
    else this.set({ step: 'signIn', error: hadToken ? EXPIRED_TEXT : null, busy: false });
  }

  private forget(): void {
    this.tokenValue = null;
    clearToken(this.opts.store);
  }

  private set(view: AuthView): void {
    this.current = view;
    this.opts.onChange?.(view);
  }
}

function identityOf(me: MeResult, token: string | null): Identity {
  if (me.kind === 'ok') return { mode: me.mode, userId: me.userId, token };
  return { mode: 'unknown', userId: null, token };
}
