// Everything the app takes from the browser, in one place, so the tests can hand the whole app
// a fake fetch, fake storages, a fake socket and fake timers instead.

import type { FetchLike } from './api';
import { browserTokenStore, type TokenStore } from './auth';
import { resolveEndpoints, type Endpoints } from './config';
import type { SocketFactory, Timers } from './connection';
import { browserRouter, type Router } from './route';
import { browserStore, type KeyValueStore } from './session';

export interface AppEnv {
  endpoints: Endpoints;
  /** Where the user id, the last conversation, drafts and the theme live (localStorage). */
  idStore: KeyValueStore | null;
  /** The address bar (`/c/{sessionId}`). Defaults to one that never changes from `/`. */
  router?: Router;
  /**
   * Runs `fn` before the next paint (requestAnimationFrame): frames are rendered at most once
   * per frame. Without it (tests), every frame renders at once.
   */
  frame?: (fn: () => void) => void;
  /** Where the token lives (sessionStorage: per tab). */
  tokenStore: TokenStore | null;
  /** Defaults to the browser's fetch. */
  fetch?: FetchLike;
  /** Defaults to the browser's WebSocket. */
  createSocket?: SocketFactory;
  /** Defaults to the browser's timers. */
  timers?: Timers;
}

export function browserEnv(): AppEnv {
  return {
    endpoints: resolveEndpoints(import.meta.env, window.location),
    idStore: browserStore(),
    tokenStore: browserTokenStore(),
    router: browserRouter(),
    frame: (fn) => void requestAnimationFrame(fn),
  };
}
