// React binding of lib/auth's AuthSession: which screen to show (checking, sign-in, chat), and
// the user's sign-in and sign-out. The /me calls and the token storage live in the class. A
// token in use is dropped when it expires (its `exp`), which brings the sign-in step back.

import { useCallback, useEffect, useRef, useState } from 'react';
import { AuthSession, tokenExpiresAt, type AuthView } from '../lib/auth';
import { browserTimers } from '../lib/connection';
import type { AppEnv } from '../lib/env';

export interface AuthApi {
  view: AuthView;
  signIn: (token: string) => void;
  signOut: () => void;
  /** The server refused the token (a 4401 close, a REST 401). */
  rejected: () => void;
}

export function useAuth(env: AppEnv): AuthApi {
  const [view, setView] = useState<AuthView>({ step: 'checking' });
  const session = useRef<AuthSession | null>(null);
  if (session.current === null) {
    session.current = new AuthSession({
      apiUrl: env.endpoints.apiUrl,
      store: env.tokenStore,
      ...(env.fetch ? { fetch: env.fetch } : {}),
      onChange: setView,
    });
  }

  const started = useRef(false);
  useEffect(() => {
    // Once per page (StrictMode runs effects twice; refs survive).
    if (started.current) return;
    started.current = true;
    void session.current?.start();
  }, []);

  const signIn = useCallback((token: string) => void session.current?.signIn(token), []);
  const signOut = useCallback(() => session.current?.signOut(), []);
  const rejected = useCallback(() => void session.current?.rejected(), []);

  const token = view.step === 'ready' ? view.identity.token : null;
  useEffect(() => {
    const expiresAt = token ? tokenExpiresAt(token) : null;
    if (expiresAt === null) return;
    const timers = env.timers ?? browserTimers;
    const wait = expiresAt - timers.now();
    // Beyond what a timer can hold (~24 days), the page will be reloaded first.
    if (wait > 2 ** 31 - 1) return;
    const handle = timers.setTimeout(rejected, Math.max(0, wait));
    return () => timers.clearTimeout(handle);
  }, [token, env.timers, rejected]);
  return { view, signIn, signOut, rejected };
}
