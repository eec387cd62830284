// The conversation: user messages as plain text, answers as Markdown, a cursor on the answer
// that is streaming, badges for answers that were cancelled or failed, and under each finished
// answer its actions (Copy; Retry for a failed or cancelled one). Keeps the view pinned to the
// bottom while the reader is there; when they scrolled up it leaves the view alone and offers
// "Jump to latest".

import { memo, useCallback, useLayoutEffect, useRef, useState } from 'react';
import type { UiMessage } from '../lib/chatState';
import { useFlash } from '../hooks/useFlash';
import { copyText } from '../lib/clipboard';
import { contentHash } from '../lib/hash';
import { Markdown } from './Markdown';

export interface MessageListProps {
  messages: UiMessage[];
  synced: boolean;
  awaitingReply: boolean;
  cancelling: string[];
  failures: Record<string, string>;
  onSuggestion: (text: string) => void;
  /** Sends again the prompt of answer `messageId`. */
  onRetry: (messageId: string) => void;
  canSend: boolean;
}

/** How close to the bottom (px) still counts as "at the bottom". */
const PINNED_WITHIN = 80;

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
  // Shown while the reader is scrolled up and something new arrived below.
  const [behind, setBehind] = useState(false);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < PINNED_WITHIN;
    if (pinned.current) setBehind(false);
  };

  const last = messages[messages.length - 1];
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (pinned.current) el.scrollTop = el.scrollHeight;
    else if (el.scrollHeight - el.scrollTop - el.clientHeight >= PINNED_WITHIN) setBehind(true);
  }, [messages.length, last?.content, awaitingReply]);

  const jump = useCallback(() => {
    const el = scroller.current;
    if (!el) return;
    pinned.current = true;
    setBehind(false);
    el.scrollTop = el.scrollHeight;
  }, []);

  const { canSend, onRetry } = props;
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
            canRetry={canSend}
            onRetry={onRetry}
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
      {behind && (
        <button type="button" className="jump-latest" data-testid="jump-latest" onClick={jump}>
          <span aria-hidden="true">↓</span> Jump to latest
        </button>
      )}
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
  canRetry,
  onRetry,
}: {
  message: UiMessage;
  stopping: boolean;
  failure: string | undefined;
  canRetry: boolean;
  onRetry: (messageId: string) => void;
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
          <p className="message__failure" role="note" data-testid="failure-note">
            <strong>This answer could not be finished.</strong> {failure ? sentence(failure) : ''} Press Retry to
            ask again.
          </p>
        )}
        {role === 'assistant' && message.isComplete && (
          <AnswerActions message={message} canRetry={canRetry} onRetry={onRetry} />
        )}
      </div>
    </article>
  );
});

/** Copy, and Retry for an answer that failed or was cancelled. */
function AnswerActions({
  message,
  canRetry,
  onRetry,
}: {
  message: UiMessage;
  canRetry: boolean;
  onRetry: (messageId: string) => void;
}) {
  const [copied, flash] = useFlash<'Copied' | 'Copy failed'>(2_000);
  const retryable = message.status === 'failed' || message.status === 'cancelled';
  const copy = () => {
    copyText(message.content).then(
      () => flash('Copied'),
      () => flash('Copy failed'),
    );
  };
  return (
    <div className="message__actions" role="group" aria-label="Answer actions">
      <button type="button" className="action" data-testid="copy-answer" onClick={copy} aria-label="Copy the answer">
        {copied ?? 'Copy'}
      </button>
      {retryable && (
        <button
          type="button"
          className="action"
          data-testid="retry-answer"
          onClick={() => onRetry(message.messageId)}
          disabled={!canRetry}
          aria-label="Retry: ask the same question again"
          title={canRetry ? 'Ask the same question again' : 'Wait for the current answer to finish'}
        >
          Retry
        </button>
      )}
    </div>
  );
}

/** The server's reason as a sentence: capitalised, with a full stop. */
function sentence(text: string): string {
  const t = text.trim();
  if (!t) return '';
  const capital = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function formatTime(timestamp: number): string {
  if (!Number.isFinite(timestamp)) return '';
  return new Date(timestamp).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
