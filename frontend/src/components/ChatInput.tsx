// The composer: Enter sends, Shift+Enter starts a new line; from the moment a chat is accepted
// until its answer ends (or while any answer streams) the Send button becomes Stop. The text
// stays in the box when it could not be sent, and is kept as the conversation's draft
// (`draft`/`onDraft`) until it is.

import { forwardRef, useImperativeHandle, useLayoutEffect, useRef, useState, type KeyboardEvent } from 'react';
import { MAX_CHAT_CHARS } from '../lib/protocol';

export interface ChatInputProps {
  /** Sends the text; returns whether it was sent (then the box is cleared). */
  onSend: (text: string) => boolean;
  onStop: () => void;
  canSend: boolean;
  /** An answer can be stopped (accepted for our chat, or streaming): show Stop instead of Send. */
  streaming: boolean;
  stopping: boolean;
  /** Why sending is not possible now, shown as the placeholder. */
  placeholder: string;
  /** The text to start with (the conversation's draft). */
  draft?: string;
  /** Called with the text after each change (empty once sent). */
  onDraft?: (text: string) => void;
}

export interface ChatInputHandle {
  focus: () => void;
}

const COUNTER_FROM = MAX_CHAT_CHARS - 1000;

export const ChatInput = forwardRef<ChatInputHandle, ChatInputProps>(function ChatInput(
  { onSend, onStop, canSend, streaming, stopping, placeholder, draft = '', onDraft },
  ref,
) {
  const [text, setTextState] = useState(draft);
  const setText = (value: string) => {
    setTextState(value);
    onDraft?.(value);
  };
  const box = useRef<HTMLTextAreaElement>(null);
  useImperativeHandle(ref, () => ({ focus: () => box.current?.focus() }), []);

  // Grow with the text, up to the CSS max-height.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${el.scrollHeight}px`;
  }, [text]);

  const length = Array.from(text.trim()).length;
  const tooLong = length > MAX_CHAT_CHARS;
  const sendable = canSend && length > 0 && !tooLong;

  const submit = () => {
    if (!sendable) return;
    if (onSend(text)) setText('');
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key !== 'Enter' || e.shiftKey || e.nativeEvent.isComposing) return;
    e.preventDefault();
    submit();
  };

  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <label htmlFor="chat-input" className="visually-hidden">
        Message
      </label>
      <textarea
        id="chat-input"
        ref={box}
        className="composer__input"
        data-testid="chat-input"
        rows={1}
        value={text}
        placeholder={placeholder}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
        aria-describedby="composer-hint"
        aria-invalid={tooLong}
      />
      {streaming ? (
        <button
          type="button"
          className="button button--stop"
          data-testid="stop-button"
          onClick={onStop}
          disabled={stopping}
          aria-label="Stop the answer"
        >
          <span className="button__icon button__icon--stop" aria-hidden="true" />
          {stopping ? 'Stopping…' : 'Stop'}
        </button>
      ) : (
        <button
          type="submit"
          className="button button--send"
          data-testid="send-button"
          disabled={!sendable}
          aria-label="Send message"
        >
          Send
        </button>
      )}
      <p id="composer-hint" className="composer__hint">
        {length >= COUNTER_FROM ? (
          <span className={tooLong ? 'composer__count composer__count--over' : 'composer__count'}>
            {length} / {MAX_CHAT_CHARS}
          </span>
        ) : null}
        <span>
          <kbd>Enter</kbd> to send, <kbd>Shift</kbd>+<kbd>Enter</kbd> for a new line
        </span>
      </p>
    </form>
  );
});
