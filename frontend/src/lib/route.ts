// Which conversation the address bar names: `/c/{sessionId}`. A link or a reload opens that
// conversation; `/` opens the one this browser used last (or a new one) and rewrites the address
// to it. No React here; the router is injectable so tests can drive the address by hand.

import { ID_PATTERN } from './protocol';

/** What a path names. */
export type Route =
  /** `/c/{id}` with a valid id. */
  | { kind: 'conversation'; sessionId: string }
  /** `/` (or anything that is not `/c/...`): the last conversation, or a new one. */
  | { kind: 'home' }
  /** `/c/...` with an id no session can have. */
  | { kind: 'invalid'; raw: string };

const PREFIX = '/c/';

export function parseRoute(path: string): Route {
  if (!path.startsWith(PREFIX)) return { kind: 'home' };
  const rest = path.slice(PREFIX.length).replace(/\/+$/, '');
  let raw = rest;
  try {
    raw = decodeURIComponent(rest);
  } catch {
    // A malformed escape: keep it as typed, it is invalid either way.
  }
  return ID_PATTERN.test(raw) ? { kind: 'conversation', sessionId: raw } : { kind: 'invalid', raw };
}

export function conversationPath(sessionId: string): string {
  return `${PREFIX}${encodeURIComponent(sessionId)}`;
}

/** The address bar, as the app uses it. */
export interface Router {
  /** The current path (without query or fragment). */
  path(): string;
  /** Goes to `path`, as a new history entry (`replace`: in place of the current one). */
  go(path: string, options?: { replace?: boolean }): void;
  /** Calls `listener` when the user moves through history (back, forward); returns an unsubscribe. */
  listen(listener: () => void): () => void;
}

export function browserRouter(): Router {
  return {
    path: () => window.location.pathname,
    go: (path, { replace = false } = {}) => {
      if (window.location.pathname === path) return;
      if (replace) window.history.replaceState(null, '', path);
      else window.history.pushState(null, '', path);
    },
    listen: (listener) => {
      window.addEventListener('popstate', listener);
      return () => window.removeEventListener('popstate', listener);
    },
  };
}
