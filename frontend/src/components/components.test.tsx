// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { UiMessage } from '../lib/chatState';
import { contentHash } from '../lib/hash';
import { ChatInput } from './ChatInput';
import { ConnectionIndicator } from './ConnectionIndicator';
import { MessageList } from './MessageList';
import { Notices } from './Notices';
import { SignIn } from './SignIn';

afterEach(cleanup);

const msg = (over: Partial<UiMessage>): UiMessage => ({
  messageId: 'm',
  role: 'assistant',
  userId: 'alice',
  content: '',
  status: 'completed',
  isComplete: true,
  timestamp: 1_718_000_000_000,
  ...over,
});

describe('MessageList', () => {
  const base = {
    synced: true,
    awaitingReply: false,
    cancelling: [],
    failures: {},
    onSuggestion: () => {},
    onRetry: () => {},
    canSend: true,
  };

  it('marks each message with its id, role, status and a hash of its text', () => {
    render(
      <MessageList
        {...base}
        messages={[
          msg({ messageId: 'u1', role: 'user', content: '<b>hi</b>' }),
          msg({ messageId: 'a1', content: 'Partial', status: 'streaming', isComplete: false }),
        ]}
      />,
    );
    const [user, answer] = screen.getAllByTestId('message');
    expect(user!.dataset).toMatchObject({ messageId: 'u1', role: 'user', status: 'completed' });
    expect(user!.querySelector('b')).toBeNull();
    expect(user!.textContent).toContain('<b>hi</b>');
    expect(answer!.dataset).toMatchObject({
      messageId: 'a1',
      role: 'assistant',
      status: 'streaming',
      contentLength: '7',
      contentHash: contentHash('Partial'),
    });
    expect(answer!.querySelector('[data-testid="streaming-cursor"]')).not.toBeNull();
  });

  it('shows cancelled and failed badges, and why an answer failed', () => {
    render(
      <MessageList
        {...base}
        failures={{ f1: 'the node producing this answer stopped' }}
        messages={[
          msg({ messageId: 'c1', content: 'Hel\n\n[Cancelled]', status: 'cancelled' }),
          msg({ messageId: 'f1', content: 'Hel', status: 'failed' }),
        ]}
      />,
    );
    expect(screen.getByTestId('badge-cancelled')).toBeTruthy();
    expect(screen.getByTestId('badge-failed')).toBeTruthy();
    expect(screen.getByTestId('failure-note').textContent).toBe(
      'This answer could not be finished. The node producing this answer stopped. Press Retry to ask again.',
    );
    expect(screen.queryByTestId('streaming-cursor')).toBeNull();
  });

  it('offers suggestions on an empty conversation', () => {
    const onSuggestion = vi.fn();
    render(<MessageList {...base} messages={[]} onSuggestion={onSuggestion} />);
    fireEvent.click(screen.getByText('How is Redis used here?'));
    expect(onSuggestion).toHaveBeenCalledWith('How is Redis used here?');
  });
});

describe('ChatInput', () => {
  const setup = (over: Partial<Parameters<typeof ChatInput>[0]> = {}) => {
    const onSend = vi.fn(() => true);
    const onStop = vi.fn();
    render(
      <ChatInput onSend={onSend} onStop={onStop} canSend streaming={false} stopping={false} placeholder="Ask" {...over} />,
    );
    return { onSend, onStop, box: screen.getByLabelText('Message') as HTMLTextAreaElement };
  };

  it('sends on Enter and clears the box', () => {
    const { onSend, box } = setup();
    fireEvent.change(box, { target: { value: 'hello' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(onSend).toHaveBeenCalledWith('hello');
    expect(box.value).toBe('');
  });

  it('does not send on Shift+Enter (a new line)', () => {
    const { onSend, box } = setup();
    fireEvent.change(box, { target: { value: 'line one' } });
    fireEvent.keyDown(box, { key: 'Enter', shiftKey: true });
    expect(onSend).not.toHaveBeenCalled();
  });

  it('keeps the text when it could not be sent, and never sends blank text', () => {
    const onSend = vi.fn(() => false);
    const { box } = setup({ onSend });
    fireEvent.change(box, { target: { value: '   ' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(onSend).not.toHaveBeenCalled();
    fireEvent.change(box, { target: { value: 'hello' } });
    fireEvent.click(screen.getByTestId('send-button'));
    expect(onSend).toHaveBeenCalledTimes(1);
    expect(box.value).toBe('hello');
  });

  it('shows Stop instead of Send while an answer streams', () => {
    const { onStop, onSend, box } = setup({ streaming: true, canSend: false });
    expect(screen.queryByTestId('send-button')).toBeNull();
    fireEvent.click(screen.getByTestId('stop-button'));
    expect(onStop).toHaveBeenCalledTimes(1);
    fireEvent.change(box, { target: { value: 'next' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(onSend).not.toHaveBeenCalled();
  });

  it('refuses text over 5000 characters', () => {
    const { onSend, box } = setup();
    fireEvent.change(box, { target: { value: 'x'.repeat(5001) } });
    expect((screen.getByTestId('send-button') as HTMLButtonElement).disabled).toBe(true);
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(onSend).not.toHaveBeenCalled();
    expect(screen.getByText('5001 / 5000')).toBeTruthy();
  });
});

describe('ConnectionIndicator', () => {
  it('exposes the state and the serving node', () => {
    render(
      <ConnectionIndicator
        status={{ state: 'connected', nodeId: 'ws-node-2', failures: 0, retryAt: null, lastClose: null }}
        onRetry={() => {}}
      />,
    );
    const el = screen.getByTestId('connection-indicator');
    expect(el.dataset).toMatchObject({ state: 'connected', nodeId: 'ws-node-2' });
    expect(el.textContent).toContain('ws-node-2');
  });

  it('offers to retry at once while waiting to reconnect', () => {
    const onRetry = vi.fn();
    render(
      <ConnectionIndicator
        status={{ state: 'reconnecting', nodeId: null, failures: 1, retryAt: Date.now() + 4000, lastClose: null }}
        onRetry={onRetry}
      />,
    );
    expect(screen.getByTestId('connection-indicator').textContent).toMatch(/retry in [34] s/);
    fireEvent.click(screen.getByText('Retry now'));
    expect(onRetry).toHaveBeenCalled();
  });
});

describe('SignIn', () => {
  it('is an accessible form: a heading, a labelled password field, a button and a hint', () => {
    render(<SignIn error={null} busy={false} onSubmit={() => {}} />);
    expect(screen.getByRole('heading', { name: 'Sign in' })).toBeTruthy();
    const field = screen.getByLabelText('Access token') as HTMLInputElement;
    expect(field).toBe(screen.getByTestId('token-input'));
    expect(field.type).toBe('password');
    expect(document.activeElement).toBe(field);
    expect(screen.getByTestId('sign-in-button').textContent).toBe('Sign in');
    expect(screen.getByRole('form', { name: 'Sign in' })).toBeTruthy();
    expect(document.body.textContent).toContain(
      'Ask your administrator for a token. On a development server you can mint one with: ws-gateway token --user <name>',
    );
    expect(screen.queryByTestId('sign-in-error')).toBeNull();
  });

  it('submits the typed token (button or Enter)', () => {
    const onSubmit = vi.fn();
    render(<SignIn error={null} busy={false} onSubmit={onSubmit} />);
    fireEvent.change(screen.getByTestId('token-input'), { target: { value: 'eyJ.abc.def' } });
    fireEvent.click(screen.getByTestId('sign-in-button'));
    expect(onSubmit).toHaveBeenCalledWith('eyJ.abc.def');
    fireEvent.submit(screen.getByTestId('token-input').closest('form')!);
    expect(onSubmit).toHaveBeenCalledTimes(2);
  });

  it('shows a refusal as an alert tied to the field, and waits while a token is checked', () => {
    const onSubmit = vi.fn();
    const { rerender } = render(<SignIn error={null} busy onSubmit={onSubmit} />);
    const button = screen.getByTestId('sign-in-button') as HTMLButtonElement;
    expect(button.disabled).toBe(true);
    expect(button.textContent).toBe('Signing in…');
    fireEvent.submit(button.closest('form')!);
    expect(onSubmit).not.toHaveBeenCalled();
    rerender(<SignIn error="That token was refused: it is invalid or has expired." busy={false} onSubmit={onSubmit} />);
    const error = screen.getByTestId('sign-in-error');
    expect(error.getAttribute('role')).toBe('alert');
    expect(error.textContent).toMatch(/refused/);
    const field = screen.getByTestId('token-input');
    expect(field.getAttribute('aria-invalid')).toBe('true');
    expect(field.getAttribute('aria-describedby')).toContain(error.id);
  });
});

describe('Notices', () => {
  it('gives the auth codes a plain-language headline, with the server text as detail', () => {
    const notices = [
      { id: 1, code: 'RATE_LIMITED', text: 'Wait 30 s before trying again.' },
      { id: 2, code: 'FORBIDDEN', text: 'session belongs to another user' },
      { id: 3, code: 'UNAUTHORIZED', text: 'token expired' },
      { id: 5, code: 'TOO_MANY_TABS', text: '' },
    ];
    render(<Notices notices={notices} onDismiss={() => {}} />);
    const shown = screen.getAllByTestId('notice').map((n) => [n.dataset.code, n.querySelector('strong')!.textContent]);
    expect(shown).toEqual([
      ['RATE_LIMITED', 'You are sending messages too fast. Wait a little, then send again.'],
      ['FORBIDDEN', 'Your account is not allowed to do that.'],
      ['UNAUTHORIZED', 'You are not signed in, or your token has expired. Sign in again.'],
      ['TOO_MANY_TABS', 'Too many open tabs; close some and retry.'],
    ]);
    expect(screen.getByText('Wait 30 s before trying again.')).toBeTruthy();
  });
});
