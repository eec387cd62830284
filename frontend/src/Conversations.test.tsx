// @vitest-environment jsdom
// The app's everyday features over a fake server (test/appHarness): the conversations sidebar
// (list, switch, address, new chat, delete, filter), drafts per conversation, retry, the
// screen-reader announcement of a finished answer, rendering once per animation frame, and the
// theme toggle.
import { act, cleanup, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { jsonResponse } from './test/fakes';
import { API, devMe, listed, setup } from './test/appHarness';
import { chunk, errorFrame, finalOf, history, inFlight, message, SESSION, userMessage, welcome } from './test/frames';
import { THEME_KEY } from './lib/theme';

afterEach(() => {
  cleanup();
  delete document.documentElement.dataset.theme;
});

const T = 1_718_000_000_000;
const LIST = [listed('s-old', 'Older question', T - 60_000), listed(SESSION, 'How is Redis used?', T)];

function sessionsOf(list = LIST) {
  return () => jsonResponse(200, { user_id: 'u-local', sessions: list });
}

const entries = () => screen.queryAllByTestId('conversation');
const titles = () => entries().map((e) => within(e).getByTestId('conversation-title').textContent);
const socketSession = (url: string) => new URL(url).searchParams.get('session_id');

/**
 * The app on a dev server listing LIST; DELETE /api/history (by default 200) takes a session off
 * that list when it answers 2xx, as the server does.
 */
async function ready(options: Parameters<typeof setup>[0] = {}) {
  const listing = LIST.slice();
  const remove = options.remove ?? (() => jsonResponse(200, { status: 'deleted' }));
  const app = setup({
    me: devMe,
    sessions: () => jsonResponse(200, { user_id: 'u-local', sessions: listing }),
    ...options,
    remove: async (call) => {
      const response = await remove(call);
      const id = decodeURIComponent(call.url.slice(`${API}/history/`.length));
      if (response.ok) listing.splice(listing.findIndex((e) => e.session_id === id) >>> 0, 1);
      return response;
    },
  });
  await screen.findByTestId('chat-input');
  return app;
}

describe('the conversations sidebar', () => {
  it('lists the user’s sessions newest first, marks the open one, and puts it in the address', async () => {
    const app = await ready();
    await waitFor(() => expect(titles()).toEqual(['How is Redis used?', 'Older question']));
    const call = app.server.calls.find((c) => c.url.startsWith(`${API}/sessions`))!;
    expect(new URL(call.url).searchParams.get('user_id')).toBe('u-local');
    // `/` opened the last conversation and the address names it.
    expect(app.router.path()).toBe(`/c/${SESSION}`);
    const open = screen.getByRole('link', { current: 'page' });
    expect(open.getAttribute('href')).toBe(`/c/${SESSION}`);
    expect(entries()[1]!.querySelector('a')!.getAttribute('href')).toBe('/c/s-old');
  });

  it('a link opens its conversation', async () => {
    const app = await ready({ path: '/c/s-old' });
    expect(socketSession(app.factory.last.url)).toBe('s-old');
    app.connect([welcome('ws-node-1', 's-old'), history([userMessage('u9', 'Older question')], null, 's-old')]);
    expect(screen.getAllByTestId('message')[0]!.textContent).toContain('Older question');
  });

  it('switching moves the socket to that conversation and shows its history and streaming answer', async () => {
    const app = await ready();
    app.connect([welcome(), history([userMessage('u1', 'How is Redis used?')])]);
    await waitFor(() => expect(entries()).toHaveLength(2));
    const first = app.factory.last;
    fireEvent.click(screen.getByRole('link', { name: /Older question/ }));
    expect(first.closedByClient).not.toBeNull();
    expect(socketSession(app.factory.last.url)).toBe('s-old');
    expect(app.router.path()).toBe('/c/s-old');
    app.connect([
      welcome('ws-node-1', 's-old'),
      history([userMessage('u9', 'Older question'), inFlight('a9', 'Half an')], { messageId: 'a9', lastIndex: 1 }, 's-old'),
    ]);
    const shown = screen.getAllByTestId('message');
    expect(shown.map((m) => m.dataset.messageId)).toEqual(['u9', 'a9']);
    expect(shown[1]!.dataset.status).toBe('streaming');
    expect(screen.getByRole('link', { current: 'page' }).textContent).toContain('Older question');
    // Back returns to the first one, on a new socket.
    act(() => app.router.back());
    expect(socketSession(app.factory.last.url)).toBe(SESSION);
  });

  it('New chat opens an empty conversation at a new address; it joins the list with its first message', async () => {
    const app = await ready();
    app.connect();
    fireEvent.click(screen.getByTestId('new-chat-button'));
    const fresh = socketSession(app.factory.last.url)!;
    expect(fresh).not.toBe(SESSION);
    expect(app.router.path()).toBe(`/c/${fresh}`);
    expect(app.router.entries).toEqual([`/c/${SESSION}`, `/c/${fresh}`]);
    app.connect([welcome('ws-node-1', fresh), history([], null, fresh)]);
    await waitFor(() => expect(entries()).toHaveLength(2));
    // The server lists it only once SQL has it; the sidebar shows it at once.
    act(() => app.factory.last.receive(message({ ...userMessage('n1', 'A brand new question'), sessionId: fresh, timestamp: T + 5_000 })));
    expect(titles()[0]).toBe('A brand new question');
    expect(screen.getByRole('link', { current: 'page' }).textContent).toContain('A brand new question');
  });

  it('delete asks first; Cancel keeps it, Delete removes it through DELETE /api/history', async () => {
    const app = await ready();
    app.connect();
    await waitFor(() => expect(entries()).toHaveLength(2));
    const older = entries()[1]!;
    fireEvent.click(within(older).getByRole('button', { name: 'Delete “Older question”' }));
    const dialog = screen.getByRole('alertdialog', { name: 'Delete this conversation?' });
    expect(dialog.textContent).toContain('Older question');
    expect(document.activeElement).toBe(within(dialog).getByRole('button', { name: 'Cancel' }));
    fireEvent.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(screen.queryByRole('alertdialog')).toBeNull();
    expect(app.server.calls.some((c) => c.method === 'DELETE')).toBe(false);

    fireEvent.click(within(older).getByRole('button', { name: 'Delete “Older question”' }));
    fireEvent.click(screen.getByRole('button', { name: 'Delete' }));
    await waitFor(() => expect(titles()).toEqual(['How is Redis used?']));
    const del = app.server.calls.find((c) => c.method === 'DELETE')!;
    expect(del.url).toBe(`${API}/history/s-old`);
    expect(screen.queryByRole('alertdialog')).toBeNull();
    // The open conversation was another one: it stays open.
    expect(socketSession(app.factory.last.url)).toBe(SESSION);
  });

  it('deleting the open conversation opens a new one; a refused delete says why and keeps it', async () => {
    let refuse = true;
    const app = await ready({
      remove: () =>
        refuse ? jsonResponse(503, { error: 'database unavailable', code: 'UNAVAILABLE' }) : jsonResponse(200, { status: 'deleted' }),
    });
    app.connect();
    await waitFor(() => expect(entries()).toHaveLength(2));
    fireEvent.click(screen.getByRole('button', { name: 'Delete “How is Redis used?”' }));
    fireEvent.click(screen.getByRole('button', { name: 'Delete' }));
    expect((await screen.findByRole('alert')).textContent).toContain('database unavailable');
    expect(titles()).toHaveLength(2);
    refuse = false;
    fireEvent.click(screen.getByRole('button', { name: 'Delete' }));
    await waitFor(() => expect(titles()).toEqual(['Older question']));
    const fresh = socketSession(app.factory.last.url)!;
    expect(fresh).not.toBe(SESSION);
    expect(app.router.path()).toBe(`/c/${fresh}`);
  });

  it('Escape closes the delete question', async () => {
    await ready();
    await waitFor(() => expect(entries()).toHaveLength(2));
    fireEvent.click(screen.getByRole('button', { name: 'Delete “Older question”' }));
    fireEvent.keyDown(screen.getByRole('alertdialog'), { key: 'Escape' });
    expect(screen.queryByRole('alertdialog')).toBeNull();
  });

  it('filters by title, ignoring case and accents', async () => {
    await ready({ sessions: sessionsOf([...LIST, listed('s-cafe', 'Café recommendations', T - 5_000)]) });
    await waitFor(() => expect(entries()).toHaveLength(3));
    const filter = screen.getByRole('searchbox', { name: 'Filter conversations by title' });
    fireEvent.change(filter, { target: { value: 'CAFE' } });
    expect(titles()).toEqual(['Café recommendations']);
    fireEvent.change(filter, { target: { value: 'nothing like it' } });
    expect(titles()).toEqual([]);
    expect(screen.getByTestId('filter-empty').textContent).toContain('nothing like it');
    fireEvent.change(filter, { target: { value: '' } });
    expect(titles()).toHaveLength(3);
  });

  it('when the list cannot be loaded, says so and retries on demand', async () => {
    let down = true;
    await ready({
      sessions: () =>
        down ? jsonResponse(503, { error: 'database unavailable', code: 'UNAVAILABLE' }) : sessionsOf()(),
    });
    expect((await screen.findByTestId('sidebar-error')).textContent).toContain('database unavailable');
    down = false;
    fireEvent.click(within(screen.getByTestId('sidebar-error')).getByRole('button', { name: 'Retry' }));
    await waitFor(() => expect(entries()).toHaveLength(2));
    expect(screen.queryByTestId('sidebar-error')).toBeNull();
  });

  it('an address that names no possible conversation shows "not found"', async () => {
    const app = setup({ me: devMe, path: '/c/not%20an%20id!' });
    expect((await screen.findByTestId('conversation-not-found')).textContent).toContain('does not exist, or it is not yours');
    expect(app.factory.sockets).toHaveLength(0);
  });

  it('the drawer takes the focus, leaves the page behind it out of reach, and gives the focus back', async () => {
    await ready();
    const toggle = screen.getByRole('button', { name: 'Conversations' });
    const sidebar = screen.getByRole('navigation', { name: 'Conversations' });
    const main = document.querySelector('.app__main')!;
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    fireEvent.click(toggle);
    expect(sidebar.dataset.open).toBe('true');
    expect(document.activeElement).toBe(screen.getByRole('searchbox'));
    expect(main.hasAttribute('inert')).toBe(true);
    // Escape closes it wherever the focus is.
    fireEvent.keyDown(document.body, { key: 'Escape' });
    expect(sidebar.dataset.open).toBe('false');
    expect(main.hasAttribute('inert')).toBe(false);
    expect(document.activeElement).toBe(toggle);
  });

  it('the delete question keeps the focus while it waits for the server', async () => {
    let answer: (r: Response) => void = () => {};
    await ready({ remove: () => new Promise<Response>((r) => (answer = r)) });
    await waitFor(() => expect(entries()).toHaveLength(2));
    fireEvent.click(screen.getByRole('button', { name: 'Delete “Older question”' }));
    const accept = screen.getByTestId('confirm-accept');
    accept.focus();
    fireEvent.click(accept);
    expect(accept.textContent).toBe('Deleting…');
    expect(accept.getAttribute('aria-disabled')).toBe('true');
    expect(document.activeElement).toBe(accept);
    fireEvent.keyDown(screen.getByRole('alertdialog'), { key: 'Escape' });
    expect(screen.getByRole('alertdialog')).toBeTruthy();
    await act(async () => answer(jsonResponse(200, { status: 'deleted' })));
    await waitFor(() => expect(screen.queryByRole('alertdialog')).toBeNull());
    expect(titles()).toEqual(['How is Redis used?']);
  });
});

describe('which conversation `/` opens', () => {
  it('a new one is remembered once its history came, per user', async () => {
    const app = setup({ me: devMe, sessions: sessionsOf([]), store: { 'chat.lastSession.u-local': '' } });
    await screen.findByTestId('chat-input');
    const fresh = socketSession(app.factory.last.url)!;
    expect(fresh).not.toBe(SESSION);
    expect(app.router.path()).toBe(`/c/${fresh}`);
    expect(app.idStore.data.get('chat.lastSession.u-local')).toBe('');
    app.connect([welcome('ws-node-1', fresh), history([], null, fresh)]);
    expect(app.idStore.data.get('chat.lastSession.u-local')).toBe(fresh);
  });

  it('a conversation the server refused is forgotten, so `/` does not lead there again', async () => {
    const app = setup({ token: 'good-token', path: '/' });
    await screen.findByTestId('chat-input');
    expect(socketSession(app.factory.last.url)).toBe(SESSION);
    act(() => app.factory.last.open());
    app.serverClose(4403, 'session belongs to another user');
    await screen.findByTestId('conversation-not-found');
    expect(app.idStore.data.has('chat.lastSession.alice')).toBe(false);
  });

  it('Sign out leaves the conversation’s address for `/`', async () => {
    const app = setup({ token: 'good-token', path: '/c/s-old' });
    fireEvent.click(await screen.findByTestId('sign-out-button'));
    await screen.findByTestId('token-input');
    expect(app.router.path()).toBe('/');
  });
});

describe('drafts', () => {
  it('each conversation keeps what was typed and not sent', async () => {
    const app = await ready();
    app.connect();
    fireEvent.change(screen.getByTestId('chat-input'), { target: { value: 'half a thought' } });
    await waitFor(() => expect(entries()).toHaveLength(2));
    fireEvent.click(screen.getByRole('link', { name: /Older question/ }));
    expect((screen.getByTestId('chat-input') as HTMLTextAreaElement).value).toBe('');
    fireEvent.click(screen.getByRole('link', { name: /How is Redis used/ }));
    expect((screen.getByTestId('chat-input') as HTMLTextAreaElement).value).toBe('half a thought');
    expect(app.idStore.data.get(`chat.draft.u-local.${SESSION}`)).toBe('half a thought');
    // Sent: the draft is gone.
    app.connect();
    fireEvent.click(screen.getByTestId('send-button'));
    expect(app.idStore.data.has(`chat.draft.u-local.${SESSION}`)).toBe(false);
  });
});

describe('answers', () => {
  it('Retry sends the failed answer’s prompt again; a failed answer says what to do', async () => {
    const app = await ready();
    app.connect([
      welcome(),
      history([userMessage('u1', 'Explain the workflow'), finalOf('a1', 'Part of it', 'failed')]),
    ]);
    expect(screen.getByTestId('failure-note').textContent).toContain('Press Retry to ask again');
    fireEvent.click(screen.getByRole('button', { name: /Retry/ }));
    expect(app.factory.last.sent).toEqual([{ type: 'chat', message: 'Explain the workflow' }]);
  });

  it('Retry is offered for cancelled answers too, not for completed ones; Copy for every finished answer', async () => {
    const app = await ready();
    app.connect([
      welcome(),
      history([
        userMessage('u1', 'one'),
        finalOf('a1', 'Done', 'completed'),
        userMessage('u2', 'two'),
        finalOf('a2', 'Stopped [Cancelled]', 'cancelled'),
      ]),
    ]);
    expect(screen.getAllByTestId('copy-answer')).toHaveLength(2);
    expect(screen.getAllByTestId('retry-answer')).toHaveLength(1);
    fireEvent.click(screen.getByTestId('retry-answer'));
    expect(app.factory.last.sent).toEqual([{ type: 'chat', message: 'two' }]);
  });

  it('error frames say what the user can do', async () => {
    const app = await ready();
    app.connect();
    for (const [code, text] of [
      ['STREAM_ACTIVE', 'press Stop'],
      ['AI_UNAVAILABLE', 'Try again in a moment'],
      ['RATE_LIMITED', 'Wait a little'],
    ] as const) {
      act(() => app.factory.last.receive(errorFrame(code, 'server text')));
      const notice = screen.getAllByTestId('notice').find((n) => n.dataset.code === code)!;
      expect(notice.textContent).toContain(text);
    }
  });

  it('a finished answer is announced once, when it ends; not per chunk, not from history', async () => {
    const app = await ready();
    app.connect([
      welcome(),
      history([userMessage('u0', 'old'), finalOf('a0', 'Old answer')]),
    ]);
    const announcer = screen.getByTestId('announcer');
    expect(announcer.textContent).toBe('');
    act(() => {
      app.factory.last.receive(message(userMessage('u1', 'hi')));
      app.factory.last.receive(chunk('a1', 0, 'Hel'));
      app.factory.last.receive(chunk('a1', 1, 'lo'));
    });
    expect(announcer.textContent).toBe('');
    act(() => app.factory.last.receive(message(finalOf('a1', 'Hello'))));
    expect(announcer.textContent).toBe('The answer is complete.');
    const node = announcer.firstChild;
    // A duplicate final changes nothing; the next answer is a new announcement.
    act(() => app.factory.last.receive(message(finalOf('a1', 'Hello'))));
    expect(announcer.firstChild).toBe(node);
    act(() => {
      app.factory.last.receive(chunk('a2', 0, 'Bye'));
      app.factory.last.receive(message(finalOf('a2', 'Bye [Cancelled]', 'cancelled')));
    });
    expect(announcer.textContent).toBe('The answer was stopped.');
    expect(announcer.firstChild).not.toBe(node);
  });
});

describe('rendering', () => {
  it('applies frames at once but renders them once per animation frame', async () => {
    const frames: (() => void)[] = [];
    const app = await ready({ frame: (fn) => void frames.push(fn) });
    app.connect([welcome(), history([userMessage('u1', 'hi'), inFlight('a1', '')], { messageId: 'a1', lastIndex: -1 })]);
    act(() => frames.splice(0).forEach((f) => f()));
    const before = screen.getAllByTestId('message')[1]!;
    act(() => {
      for (let i = 0; i < 50; i += 1) app.factory.last.receive(chunk('a1', i, 'w '));
    });
    // Nothing rendered yet, one frame asked for.
    expect(screen.getAllByTestId('message')[1]!.dataset.contentLength).toBe(before.dataset.contentLength);
    expect(frames).toHaveLength(1);
    act(() => frames.splice(0).forEach((f) => f()));
    expect(screen.getAllByTestId('message')[1]!.dataset.contentLength).toBe('100');
    // A gap is still asked for at once, before any frame.
    act(() => app.factory.last.receive(chunk('a1', 60, 'x')));
    expect(app.factory.last.sent.at(-1)).toEqual({ type: 'resume', messageId: 'a1', fromIndex: 50 });
  });
});

describe('theme', () => {
  it('follows the system until toggled, then keeps the pick', async () => {
    const app = await ready();
    const toggle = screen.getByRole('button', { name: 'Dark mode' });
    // jsdom has no prefers-color-scheme: light.
    expect(document.documentElement.dataset.theme).toBe('light');
    expect(toggle.getAttribute('aria-pressed')).toBe('false');
    fireEvent.click(toggle);
    expect(document.documentElement.dataset.theme).toBe('dark');
    expect(toggle.getAttribute('aria-pressed')).toBe('true');
    expect(app.idStore.data.get(THEME_KEY)).toBe('dark');
  });
});
