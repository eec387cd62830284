// The page: header (title, connection, session, New chat), the conversation, errors and the
// composer. All state comes from useChat.

import { useCallback, useRef } from 'react';
import { ChatInput, type ChatInputHandle } from './components/ChatInput';
import { ConnectionIndicator } from './components/ConnectionIndicator';
import { MessageList } from './components/MessageList';
import { Notices } from './components/Notices';
import { useChat } from './hooks/useChat';

export default function App() {
  const chat = useChat();
  const input = useRef<ChatInputHandle>(null);
  const { state, connection, stopTarget } = chat;

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
        </div>
      </header>

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
