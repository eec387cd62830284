// The conversation the address bar names (lib/route), as React state. `/` is rewritten to the
// conversation this user had open last on this browser (lib/session; the page remembers one once
// its history arrived), or a new one; the browser's back and forward move between
// conversations.

import { useCallback, useEffect, useState } from 'react';
import type { AppEnv } from '../lib/env';
import { conversationPath, parseRoute, type Router } from '../lib/route';
import { lastSession, randomId } from '../lib/session';

export interface RouteApi {
  /** The conversation shown, or null when the address names none that can exist. */
  sessionId: string | null;
  /** Opens conversation `id` (a new history entry; `replace`: in place of the current one). */
  open: (id: string, options?: { replace?: boolean }) => void;
  /** Opens a new, empty conversation. */
  newChat: (options?: { replace?: boolean }) => void;
}

const STILL: Router = { path: () => '/', go: () => {}, listen: () => () => {} };

export function useRoute(env: AppEnv, userId: string): RouteApi {
  const router = env.router ?? STILL;
  const resolve = useCallback(() => {
    const route = parseRoute(router.path());
    if (route.kind === 'invalid') return null;
    if (route.kind === 'conversation') return route.sessionId;
    const id = lastSession(env.idStore, userId) ?? randomId('s');
    router.go(conversationPath(id), { replace: true });
    return id;
  }, [router, env.idStore, userId]);

  const [sessionId, setSessionId] = useState<string | null>(resolve);
  useEffect(() => router.listen(() => setSessionId(resolve())), [router, resolve]);

  const open = useCallback(
    (id: string, options: { replace?: boolean } = {}) => {
      router.go(conversationPath(id), options);
      setSessionId(id);
    },
    [router],
  );
  const newChat = useCallback((options?: { replace?: boolean }) => open(randomId('s'), options), [open]);
  return { sessionId, open, newChat };
}
