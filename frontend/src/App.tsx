// The page. Until GET /api/me has answered: a short wait. When it answers 401: the sign-in step.
// Otherwise the chat: header (title, connection, the "Connection status" toggle of the developer
// status panel, session, New chat, Sign out when a token is in use), the status panel when open,
// the conversation, errors and the composer. All chat state comes from useChat, all
// sign-in state from useAuth.

import { useCallback, useRef, useState } from 'react';
import { ChatInput, type ChatInputHandle } from './components/ChatInput';
import { ConnectionIndicator } from './components/ConnectionIndicator';
import { MessageList } from './components/MessageList';
import { Notices } from './components/Notices';
import { SignIn } from './components/SignIn';
import { STATUS_PANEL_ID, StatusPanel } from './components/StatusPanel';
import { useAuth } from './hooks/useAuth';
import { useChat } from './hooks/useChat';
import type { Identity } from './lib/auth';
import { browserEnv, type AppEnv } from './lib/env';

export default function App({ env: given }: { env?: AppEnv } = {}) {
  const [env] = useState(() => given ?? browserEnv());
  const auth = useAuth(env);
  const { view } = auth;

  if (view.step === 'signIn') {
    return (
      <div className="app">
        <SignIn error={view.error} busy={view.busy} onSubmit={auth.signIn} />
      </div>
    );
  }
  if (view.step === 'checking') {
    return (
      <div className="app">
        <p className="empty empty--loading" role="status" data-testid="auth-checking">
          Connecting…
        </p>
      </div>
    );
  }
  return <ChatScreen env={env} identity={view.identity} onSignOut={auth.signOut} onUnauthorized={auth.rejected} />;
}

function ChatScreen({
  env,
  identity,
  onSignOut,
  onUnauthorized,
}: {
  env: AppEnv;
  identity: Identity;
  onSignOut: () => void;
  onUnauthorized: () => void;
}) {
  const chat = useChat({ env, identity, onUnauthorized });
  const input = useRef<ChatInputHandle>(null);
  const { state, connection, stopTarget } = chat;
  const [statusOpen, setStatusOpen] = useState(false);

  const toggleStatus = () => {
    const open = !statusOpen;
    setStatusOpen(open);
    // A fresh round trip for the panel (then the keepalive pings keep it current).
    if (open) chat.pingNow();
  };

  const newChat = useCallback(() => {
    chat.newChat();
    input.current?.focus();
  }, [chat]);

  let placeholder = 'Ask anything…';
  if (!state.synced) {
    placeholder = connection.state === 'connecting' ? 'Connecting…' : 'Waiting for the connection…';
  } else if (stopTarget) {
    placeholder = 'Type your next message…';
  }

  return (
    <div className="app">
      <header className="topbar">
        <div className="topbar__title">
          <span className="logo" aria-hidden="true" />
          <div>
            <h1>Streaming Chat</h1>
            <p className="topbar__session" title={chat.sessionId} data-testid="session-id">
              Session {chat.sessionId}
            </p>
          </div>
        </div>
        <div className="topbar__actions">
          <ConnectionIndicator status={connection} onRetry={chat.retryNow} />
          <button
            type="button"
            className="button button--ghost button--icon"
            data-testid="status-toggle"
            onClick={toggleStatus}
            aria-label="Connection status"
            aria-expanded={statusOpen}
            aria-controls={statusOpen ? STATUS_PANEL_ID : undefined}
            title="Connection status (gateway node, ping, chunks/s)"
          >
            <svg className="button__svg" viewBox="0 0 16 16" aria-hidden="true">
              <path
                d="M1 8h3l2-5 4 10 2-5h3"
                fill="none"
                stroke="currentColor"
                strokeWidth="1.8"
                strokeLinecap="round"
                strokeLinejoin="round"
              />
            </svg>
          </button>
          <button
            type="button"
            className="button button--ghost"
            data-testid="new-chat-button"
            onClick={newChat}
            aria-label="New chat"
            title="Start a new conversation"
          >
            <svg className="button__svg" viewBox="0 0 16 16" aria-hidden="true">
              <path d="M8 3v10M3 8h10" stroke="currentColor" strokeWidth="2" strokeLinecap="round" />
            </svg>
            <span className="button__label">New chat</span>
          </button>
          {identity.token && (
            <button
              type="button"
              className="button button--ghost"
              data-testid="sign-out-button"
              data-user-id={chat.userId}
              onClick={onSignOut}
              aria-label="Sign out"
              title={`Signed in as ${chat.userId}. Sign out (forget the token in this tab)`}
            >
              <svg className="button__svg" viewBox="0 0 16 16" aria-hidden="true">
                <path
                  d="M6 3H3v10h3M10 5l3 3-3 3M13 8H6"
                  fill="none"
                  stroke="currentColor"
                  strokeWidth="1.8"
                  strokeLinecap="round"
                  strokeLinejoin="round"
                />
              </svg>
              <span className="button__label">Sign out</span>
            </button>
          )}
        </div>
      </header>
      {statusOpen && <StatusPanel status={connection} stats={chat.linkStats} />}

      <main className="chat">
        <MessageList
          messages={state.messages}
          synced={state.synced}
          awaitingReply={state.awaitingReply}
          cancelling={state.cancelling}
          failures={state.failures}
          canSend={chat.canSend}
          onSuggestion={chat.sendChat}
        />
        <footer className="chat__footer">
          <Notices notices={state.notices} onDismiss={chat.dismissNotice} />
          <ChatInput
            ref={input}
            onSend={chat.sendChat}
            onStop={chat.stop}
            canSend={chat.canSend}
            streaming={!!stopTarget}
            stopping={!!stopTarget && state.cancelling.includes(stopTarget)}
            placeholder={placeholder}
          />
        </footer>
      </main>
    </div>
  );
}
