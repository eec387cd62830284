// The conversation for the UI: session ids, the socket (useWebSocket), the chat reducer
// (lib/chatState) and the user's actions. Chats and cancels go on the socket; a cancel falls
// back to POST /api/cancel while the socket is down, so Stop works during a reconnect too.

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
import { resolveEndpoints, socketUrl } from '../lib/config';
import type { ConnectionStatus } from '../lib/connection';
import { runEffects } from '../lib/effects';
import { MAX_CHAT_CHARS } from '../lib/protocol';
import {
  browserStore,
  loadOrCreateId,
  randomId,
  SESSION_KEY,
  storeId,
  USER_KEY,
} from '../lib/session';
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
}

const endpoints = resolveEndpoints(import.meta.env, window.location);

export function useChat(): ChatApi {
  const store = browserStore();
  const [userId] = useState(() => loadOrCreateId(store, USER_KEY, 'u'));
  const [sessionId, setSessionId] = useState(() => loadOrCreateId(store, SESSION_KEY, 's'));
  const [state, setState] = useState<ChatState>(() => initialChatState(sessionId));
  // The reducer runs synchronously on each frame, against the latest state.
  const stateRef = useRef(state);
  const timers = useRef(new Set<ReturnType<typeof setTimeout>>());

  const url = useMemo(() => socketUrl(endpoints.wsUrl, sessionId, userId), [sessionId, userId]);

  const dispatchRef = useRef<(event: ChatEvent) => void>(() => {});
  const ws = useWebSocket(url, {
    onFrame: (frame) => dispatchRef.current({ type: 'frame', frame }),
    onClose: () => dispatchRef.current({ type: 'disconnected' }),
  });

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
          void cancelOverRest(stateRef.current.sessionId, messageId).catch((e: unknown) =>
            dispatchRef.current({
              type: 'localError',
              code: 'CANCEL_FAILED',
              text: `Stop failed: ${String(e)}`,
            }),
          );
        },
      });
    },
    [ws.send, ws.reconnectNow],
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

  const newChat = useCallback(() => {
    const id = storeId(store, SESSION_KEY, randomId('s'));
    timers.current.forEach(clearTimeout);
    timers.current.clear();
    stateRef.current = initialChatState(id);
    setState(stateRef.current);
    setSessionId(id);
  }, [store]);

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
  };
}

async function cancelOverRest(sessionId: string, messageId: string): Promise<void> {
  const response = await fetch(`${endpoints.apiUrl}/cancel`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ session_id: sessionId, message_id: messageId }),
  });
  // 404 not_found: the answer ended meanwhile; its final frame arrives on the next history.
  if (!response.ok && response.status !== 404) {
    throw new Error(`HTTP ${response.status}`);
  }
}
