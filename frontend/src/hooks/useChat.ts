// One conversation for the UI: its socket (useWebSocket), the chat reducer (lib/chatState) and
// the user's actions. The session id is fixed for the hook's life (the page mounts a new one per
// conversation). Chats and cancels go on the socket; a cancel falls back to POST /api/cancel
// while the socket is down, so Stop works during a reconnect too. Authentication: the socket
// sends the token first when the server requires one (lib/auth), REST calls carry it, and the
// auth close codes end in the sign-in step (4401), "not found or not yours" (4403) or a notice
// (4429). Frames are applied to the state at once (so effects such as `resume` go out at once),
// but rendered at most once per animation frame (`env.frame`): a fast answer does not re-render
// the page per chunk.

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
import { cancelAnswer, failureOf } from '../lib/api';
import {
  closeAction,
  effectiveUserId,
  reconnectsAfter,
  socketAuthToken,
  type Identity,
} from '../lib/auth';
import { socketUrl } from '../lib/config';
import type { ConnectionStatus } from '../lib/connection';
import type { LinkStats } from '../lib/linkStats';
import { runEffects } from '../lib/effects';
import type { AppEnv } from '../lib/env';
import { MAX_CHAT_CHARS } from '../lib/protocol';
import { loadOrCreateId, USER_KEY } from '../lib/session';
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
  /** Sends again the prompt that answer `messageId` (failed or cancelled) answered. */
  retry: (messageId: string) => boolean;
  retryNow: () => void;
  dismissNotice: (id: number) => void;
  /** Node id, ping round trip and chunk rate (lib/linkStats), for the status panel. */
  linkStats: LinkStats;
  /** Sends a `ping` now, if connected, to measure the round trip. */
  pingNow: () => void;
}

export interface ChatOptions {
  env: AppEnv;
  /** The conversation; fixed for the hook's life. */
  sessionId: string;
  /** Who this tab chats as (`useUserId`). */
  userId: string;
  /** Who the server says we are (lib/auth); fixed for the hook's life. */
  identity: Identity;
  /** The server refused the token: a 4401 close, or a REST 401. */
  onUnauthorized: () => void;
}

export function useChat({ env, sessionId, userId, identity, onUnauthorized }: ChatOptions): ChatApi {
  const [state, setState] = useState<ChatState>(() => initialChatState(sessionId));
  // The reducer runs synchronously on each frame, against the latest state; React sees it
  // at the next animation frame.
  const stateRef = useRef(state);
  const timers = useRef(new Set<ReturnType<typeof setTimeout>>());
  const renderPending = useRef(false);
  const render = useCallback(
    (now: boolean) => {
      if (now || !env.frame) {
        renderPending.current = false;
        setState(stateRef.current);
        return;
      }
      if (renderPending.current) return;
      renderPending.current = true;
      env.frame(() => {
        if (!renderPending.current) return;
        renderPending.current = false;
        setState(stateRef.current);
      });
    },
    [env],
  );

  const { wsUrl, apiUrl } = env.endpoints;
  const url = useMemo(() => socketUrl(wsUrl, sessionId, userId), [wsUrl, sessionId, userId]);
  const unauthorizedRef = useRef(onUnauthorized);
  unauthorizedRef.current = onUnauthorized;

  const dispatchRef = useRef<(event: ChatEvent) => void>(() => {});
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
          case 'notYours':
            dispatchRef.current({ type: 'forbidden' });
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
        // Server frames wait for the next animation frame; the user's own actions show at once.
        render(event.type !== 'frame');
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
            const failure = failureOf(e, 'CANCEL_FAILED', `Stop failed: ${String(e)}`);
            if (failure.kind === 'unauthorized') unauthorizedRef.current();
            else dispatchRef.current({ type: 'localError', code: failure.code, text: failure.text });
          });
        },
      });
    },
    [ws.send, ws.reconnectNow, apiUrl, identity.token, env.fetch, render],
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

  const retry = useCallback(
    (messageId: string) => {
      const prompt = promptOf(stateRef.current.messages, messageId);
      return prompt !== undefined && sendChat(prompt);
    },
    [sendChat],
  );

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
    retry,
    retryNow: ws.reconnectNow,
    dismissNotice,
    linkStats: ws.stats,
    pingNow: ws.ping,
  };
}

/** The user id this tab chats as: the token's subject, else this browser's own (localStorage). */
export function useUserId(env: AppEnv, identity: Identity): string {
  const [localUserId] = useState(() => loadOrCreateId(env.idStore, USER_KEY, 'u'));
  return effectiveUserId(identity, localUserId);
}

/** The user message answer `messageId` answered: the last user message before it. */
export function promptOf(messages: readonly UiMessage[], messageId: string): string | undefined {
  const at = messages.findIndex((m) => m.messageId === messageId);
  for (let i = at - 1; i >= 0; i -= 1) {
    if (messages[i]!.role === 'user') return messages[i]!.content;
  }
  return undefined;
}
