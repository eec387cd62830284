// The conversation: user messages as plain text, answers as Markdown, a cursor on the answer
// that is streaming, badges for answers that were cancelled or failed. Keeps the view pinned to
// the bottom while the reader is there, and leaves it alone when they scrolled up.

import { memo, useLayoutEffect, useRef } from 'react';
import type { UiMessage } from '../lib/chatState';
import { contentHash } from '../lib/hash';
import { Markdown } from './Markdown';

export interface MessageListProps {
  messages: UiMessage[];
  synced: boolean;
  awaitingReply: boolean;
  cancelling: string[];
  failures: Record<string, string>;
  onSuggestion: (text: string) => void;
  canSend: boolean;
}

const SUGGESTIONS = [
  'How does the streaming architecture work?',
  'How is Redis used here?',
  'Give me a technical deep dive',
  'What happens if I reload the page?',
];

export function MessageList(props: MessageListProps) {
  const { messages, synced, awaitingReply, cancelling, failures } = props;
  const scroller = useRef<HTMLDivElement>(null);
  const pinned = useRef(true);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  };

  const last = messages[messages.length - 1];
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && pinned.current) el.scrollTop = el.scrollHeight;
  }, [messages.length, last?.content, awaitingReply]);

  return (
    <div className="messages" ref={scroller} onScroll={onScroll} data-testid="message-list">
      <div className="messages__inner" role="log" aria-label="Conversation" aria-live="off">
        {messages.length === 0 && !awaitingReply && (
          <EmptyState synced={synced} onSuggestion={props.onSuggestion} canSend={props.canSend} />
        )}
        {messages.map((m) => (
          <Message
            key={m.messageId}
            message={m}
            stopping={cancelling.includes(m.messageId)}
            failure={failures[m.messageId]}
          />
        ))}
        {awaitingReply && (
          <div className="message message--assistant" data-testid="awaiting-reply" role="status" aria-label="Waiting for the answer">
            <div className="message__avatar" aria-hidden="true">AI</div>
            <div className="message__body">
              <span className="typing" aria-hidden="true">
                <span />
                <span />
                <span />
              </span>
            </div>
          </div>
        )}
      </div>
    </div>
  );
}

function EmptyState({
  synced,
  canSend,
  onSuggestion,
}: {
  synced: boolean;
  canSend: boolean;
  onSuggestion: (text: string) => void;
}) {
  if (!synced) {
    return <p className="empty empty--loading">Loading the conversation…</p>;
  }
  return (
    <div className="empty">
      <h2>What would you like to know?</h2>
      <p>Answers stream in word by word. Reload the page mid-answer: nothing is lost.</p>
      <div className="suggestions">
        {SUGGESTIONS.map((s) => (
          <button key={s} type="button" className="suggestion" disabled={!canSend} onClick={() => onSuggestion(s)}>
            {s}
          </button>
        ))}
      </div>
    </div>
  );
}

const Message = memo(function Message({
  message,
  stopping,
  failure,
}: {
  message: UiMessage;
  stopping: boolean;
  failure: string | undefined;
}) {
  const { role, status } = message;
  const streaming = status === 'streaming' && !message.isComplete;
  const isUser = role === 'user';
  return (
    <article
      className={`message message--${role} message--${status}`}
      data-testid="message"
      data-message-id={message.messageId}
      data-role={role}
      data-status={status}
      data-content-length={message.content.length}
      data-content-hash={contentHash(message.content)}
      aria-busy={streaming}
    >
      <div className="message__avatar" aria-hidden="true">
        {isUser ? 'You' : 'AI'}
      </div>
      <div className="message__body">
        <header className="message__meta">
          <span className="message__author">{isUser ? 'You' : role === 'system' ? 'System' : 'Assistant'}</span>
          <time dateTime={new Date(message.timestamp).toISOString()}>{formatTime(message.timestamp)}</time>
          {status === 'cancelled' && (
            <span className="badge badge--cancelled" data-testid="badge-cancelled">Cancelled</span>
          )}
          {status === 'failed' && (
            <span className="badge badge--failed" data-testid="badge-failed">Failed</span>
          )}
          {streaming && stopping && <span className="badge badge--pending">Stopping…</span>}
        </header>
        {isUser ? (
          <p className="message__text">{message.content}</p>
        ) : (
          <Markdown content={message.content} streaming={streaming} />
        )}
        {status === 'failed' && (
          <p className="message__failure" role="note">
            {failure ?? 'This answer could not be finished.'}
          </p>
        )}
      </div>
    </article>
  );
});

function formatTime(timestamp: number): string {
  if (!Number.isFinite(timestamp)) return '';
  return new Date(timestamp).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
