// The conversation for the UI: session ids, the socket (useWebSocket), the chat reducer
// (lib/chatState) and the user's actions. Chats and cancels go on the socket; a cancel falls
// back to POST /api/cancel while the socket is down, so Stop works during a reconnect too.
// Authentication: the socket sends the token first when the server requires one (lib/auth),
// REST calls carry it, and the auth close codes end in the sign-in step (4401), a new
// conversation (4403) or a notice (4429).

import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  initialChatState,
  reduce,
  stopTarget,
  streamingAnswer,
  type ChatEvent,
  type ChatState,
  type UiMessage,
} from '../lib/chatState';
import { cancelAnswer, RestError } from '../lib/api';
import {
  closeAction,
  effectiveUserId,
  reconnectsAfter,
  socketAuthToken,
  type Identity,
  type NoticeInput,
} from '../lib/auth';
import { socketUrl } from '../lib/config';
import type { ConnectionStatus } from '../lib/connection';
import type { LinkStats } from '../lib/linkStats';
import { runEffects } from '../lib/effects';
import type { AppEnv } from '../lib/env';
import { MAX_CHAT_CHARS } from '../lib/protocol';
import { loadOrCreateId, randomId, SESSION_KEY, storeId, USER_KEY } from '../lib/session';
import { useWebSocket } from './useWebSocket';

export interface ChatApi {
  state: ChatState;
  connection: ConnectionStatus;
  sessionId: string;
  userId: string;
  /** The answer streaming now, if any. */
  streaming: UiMessage | undefined;
  /** The answer Stop would cancel (accepted or streaming), if any: Stop is offered. */
  stopTarget: string | undefined;
  /** Whether a chat can be sent now (synced, and no answer streaming or about to). */
  canSend: boolean;
  /** Sends a chat; returns false (and says why) when it was not sent. */
  sendChat: (text: string) => boolean;
  stop: () => void;
  newChat: () => void;
  retryNow: () => void;
  dismissNotice: (id: number) => void;
  /** Node id, ping round trip and chunk rate (lib/linkStats), for the status panel. */
  linkStats: LinkStats;
  /** Sends a `ping` now, if connected, to measure the round trip. */
  pingNow: () => void;
}

export interface ChatOptions {
  env: AppEnv;
  /** Who the server says we are (lib/auth); fixed for the hook's life. */
  identity: Identity;
  /** The server refused the token: a 4401 close, or a REST 401. */
  onUnauthorized: () => void;
}

export function useChat({ env, identity, onUnauthorized }: ChatOptions): ChatApi {
  const store = env.idStore;
  const [localUserId] = useState(() => loadOrCreateId(store, USER_KEY, 'u'));
  const userId = effectiveUserId(identity, localUserId);
  const [sessionId, setSessionId] = useState(() => loadOrCreateId(store, SESSION_KEY, 's'));
  const [state, setState] = useState<ChatState>(() => initialChatState(sessionId));
  // The reducer runs synchronously on each frame, against the latest state.
  const stateRef = useRef(state);
  const timers = useRef(new Set<ReturnType<typeof setTimeout>>());

  const { wsUrl, apiUrl } = env.endpoints;
  const url = useMemo(() => socketUrl(wsUrl, sessionId, userId), [wsUrl, sessionId, userId]);
  const unauthorizedRef = useRef(onUnauthorized);
  unauthorizedRef.current = onUnauthorized;

  const dispatchRef = useRef<(event: ChatEvent) => void>(() => {});
  const startOverRef = useRef<(notice?: NoticeInput) => void>(() => {});
  const ws = useWebSocket(
    url,
    {
      onFrame: (frame) => dispatchRef.current({ type: 'frame', frame }),
      onClose: ({ code }) => {
        dispatchRef.current({ type: 'disconnected' });
        const action = closeAction(code);
        switch (action.type) {
          case 'signIn':
            unauthorizedRef.current();
            break;
          case 'newConversation':
            startOverRef.current(action.notice);
            break;
          case 'noticeAndReconnect':
            dispatchRef.current({ type: 'localError', ...action.notice });
            break;
          case 'reconnect':
            break;
        }
      },
    },
    {
      authToken: () => socketAuthToken(identity.mode, identity.token),
      reconnectAfter: ({ code }) => reconnectsAfter(code),
      ...(env.createSocket ? { createSocket: env.createSocket } : {}),
      ...(env.timers ? { timers: env.timers } : {}),
    },
  );

  const dispatch = useCallback(
    (event: ChatEvent) => {
      const step = reduce(stateRef.current, event);
      if (step.state !== stateRef.current) {
        stateRef.current = step.state;
        setState(step.state);
      }
      runEffects(step.effects, {
        send: ws.send,
        resync: () => ws.reconnectNow(),
        schedule: (fn, ms) => {
          const handle = setTimeout(() => {
            timers.current.delete(handle);
            fn();
          }, ms);
          timers.current.add(handle);
        },
        cancelOffline: (messageId) => {
          const client = {
            apiUrl,
            token: () => identity.token,
            ...(env.fetch ? { fetch: env.fetch } : {}),
          };
          void cancelAnswer(client, stateRef.current.sessionId, messageId).catch((e: unknown) => {
            if (e instanceof RestError && e.failure.kind === 'unauthorized') {
              unauthorizedRef.current();
            } else if (e instanceof RestError && e.failure.kind === 'notice') {
              dispatchRef.current({ type: 'localError', code: e.failure.code, text: e.failure.text });
            } else {
              dispatchRef.current({ type: 'localError', code: 'CANCEL_FAILED', text: `Stop failed: ${String(e)}` });
            }
          });
        },
      });
    },
    [ws.send, ws.reconnectNow, apiUrl, identity.token, env.fetch],
  );
  dispatchRef.current = dispatch;

  useEffect(() => {
    const pending = timers.current;
    return () => pending.forEach(clearTimeout);
  }, []);

  const streaming = streamingAnswer(state);
  const stoppable = stopTarget(state);
  const canSend = state.synced && !stoppable && !state.awaitingReply;

  const sendChat = useCallback(
    (text: string) => {
      const message = text.trim();
      if (!message) return false;
      if (Array.from(message).length > MAX_CHAT_CHARS) {
        dispatch({
          type: 'localError',
          code: 'INVALID_MESSAGE',
          text: `Messages can be at most ${MAX_CHAT_CHARS} characters long.`,
        });
        return false;
      }
      if (!ws.send({ type: 'chat', message })) {
        dispatch({
          type: 'localError',
          code: 'NOT_CONNECTED',
          text: 'Not connected; your message was not sent. Try again once reconnected.',
        });
        return false;
      }
      dispatch({ type: 'chatSent' });
      return true;
    },
    [dispatch, ws.send],
  );

  const stop = useCallback(() => dispatch({ type: 'stop' }), [dispatch]);

  /** A new conversation (new session id); `notice` says why, when it was not the user's idea. */
  const startOver = useCallback(
    (notice?: NoticeInput) => {
      const id = storeId(store, SESSION_KEY, randomId('s'));
      timers.current.forEach(clearTimeout);
      timers.current.clear();
      // Notice ids go on counting, so a new notice never takes an old one's React key.
      const fresh = { ...initialChatState(id), nextNoticeId: stateRef.current.nextNoticeId };
      stateRef.current = notice ? reduce(fresh, { type: 'localError', ...notice }).state : fresh;
      setState(stateRef.current);
      setSessionId(id);
    },
    [store],
  );
  startOverRef.current = startOver;
  const newChat = useCallback(() => startOver(), [startOver]);

  const dismissNotice = useCallback((id: number) => dispatch({ type: 'dismissNotice', id }), [dispatch]);

  return {
    state,
    connection: ws.status,
    sessionId,
    userId,
    streaming,
    stopTarget: stoppable,
    canSend,
    sendChat,
    stop,
    newChat,
    retryNow: ws.reconnectNow,
    dismissNotice,
    linkStats: ws.stats,
    pingNow: ws.ping,
  };
}
