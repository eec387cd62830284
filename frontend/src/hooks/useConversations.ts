// The conversations sidebar's data: the user's sessions from GET /api/sessions, merged with the
// activity this tab sees (lib/conversations), refreshed at start, a moment after new activity
// (the server writes its list to SQL asynchronously), when the tab becomes visible again, and
// after a delete. Deleting goes through DELETE /api/history/{sid}.

import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { deleteConversation, failureOf, listSessions, type ApiClient, type SessionSummary } from '../lib/api';
import { mergeSessions } from '../lib/conversations';
import type { AppEnv } from '../lib/env';

export interface ConversationsApi {
  /** Newest first. */
  list: SessionSummary[];
  /** `loading` until the first answer; `error` when the last refresh failed (the list is kept). */
  status: 'loading' | 'ready' | 'error';
  /** Why the last refresh failed. */
  error: string | null;
  refresh: () => void;
  /** The conversation this tab shows has `summary` now (from its messages). */
  noteActivity: (summary: SessionSummary) => void;
  /** Deletes a conversation; resolves to null, or to why it failed. */
  remove: (sessionId: string) => Promise<string | null>;
}

/** How long after new activity the server's list is asked again (its SQL write lags a little). */
export const REFRESH_AFTER_ACTIVITY_MS = 1_500;

export function useConversations({
  env,
  userId,
  token,
  onUnauthorized,
}: {
  env: AppEnv;
  userId: string;
  token: string | null;
  onUnauthorized: () => void;
}): ConversationsApi {
  const [server, setServer] = useState<SessionSummary[]>([]);
  const [local, setLocal] = useState<SessionSummary[]>([]);
  const [status, setStatus] = useState<ConversationsApi['status']>('loading');
  const [error, setError] = useState<string | null>(null);
  const unauthorized = useRef(onUnauthorized);
  unauthorized.current = onUnauthorized;
  const serverRef = useRef(server);
  serverRef.current = server;

  const client: ApiClient = useMemo(
    () => ({ apiUrl: env.endpoints.apiUrl, token: () => token, ...(env.fetch ? { fetch: env.fetch } : {}) }),
    [env, token],
  );

  // Only the newest request's answer is applied.
  const generation = useRef(0);
  const refresh = useCallback(() => {
    const mine = ++generation.current;
    listSessions(client, userId).then(
      (list) => {
        if (mine !== generation.current) return;
        setServer(list);
        setStatus('ready');
        setError(null);
      },
      (e: unknown) => {
        if (mine !== generation.current) return;
        const failure = failureOf(e, 'SESSIONS_FAILED', 'The server did not answer.');
        if (failure.kind === 'unauthorized') {
          unauthorized.current();
          return;
        }
        setStatus('error');
        setError(failure.text);
      },
    );
  }, [client, userId]);

  useEffect(() => {
    refresh();
    const onVisible = () => {
      if (document.visibilityState === 'visible') refresh();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      document.removeEventListener('visibilitychange', onVisible);
      generation.current += 1;
    };
  }, [refresh]);

  const pending = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(
    () => () => {
      if (pending.current) clearTimeout(pending.current);
    },
    [],
  );

  const localRef = useRef(local);
  localRef.current = local;
  const noteActivity = useCallback(
    (summary: SessionSummary) => {
      const known = localRef.current.find((s) => s.sessionId === summary.sessionId);
      if (known && known.lastActivity === summary.lastActivity && known.title === summary.title) return;
      const next = [summary, ...localRef.current.filter((s) => s.sessionId !== summary.sessionId)];
      localRef.current = next;
      setLocal(next);
      const listed = serverRef.current.find((s) => s.sessionId === summary.sessionId);
      if (listed && listed.lastActivity >= summary.lastActivity) return;
      if (pending.current) clearTimeout(pending.current);
      pending.current = setTimeout(() => {
        pending.current = null;
        refresh();
      }, REFRESH_AFTER_ACTIVITY_MS);
    },
    [refresh],
  );

  const remove = useCallback(
    async (sessionId: string): Promise<string | null> => {
      try {
        await deleteConversation(client, sessionId);
      } catch (e) {
        const failure = failureOf(e, 'DELETE_FAILED', 'The server did not answer.');
        if (failure.kind === 'unauthorized') {
          unauthorized.current();
          return 'Sign in again to delete this conversation.';
        }
        return failure.text;
      }
      // Gone from the list at once; the server leaves it out from now on (PROTOCOL.md, 5).
      const gone = (list: SessionSummary[]) => list.filter((s) => s.sessionId !== sessionId);
      localRef.current = gone(localRef.current);
      setLocal(localRef.current);
      setServer(gone);
      refresh();
      return null;
    },
    [client, refresh],
  );

  const list = useMemo(() => mergeSessions(server, local), [server, local]);
  return { list, status, error, refresh, noteActivity, remove };
}
