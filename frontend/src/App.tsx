// The page. Until GET /api/me has answered: a short wait. When it answers 401: the sign-in step.
// Otherwise the shell: the conversations sidebar (a drawer on narrow screens) and the
// conversation the address names (`/c/{sessionId}`), mounted afresh for each conversation:
// header (menu, title, connection, the "Connection status" toggle of the developer status
// panel, theme, New chat, Sign out when a token is in use), the status panel when open, the
// conversation (or "not found or not yours"), errors and the composer. Chat state comes from
// useChat, sign-in state from useAuth, the address from useRoute, the list from useConversations.

import { useCallback, useEffect, useRef, useState, type ReactNode, type RefObject } from 'react';
import { ChatInput, type ChatInputHandle } from './components/ChatInput';
import { ConnectionIndicator } from './components/ConnectionIndicator';
import { Icon } from './components/Icon';
import { MessageList } from './components/MessageList';
import { Notices } from './components/Notices';
import { SIDEBAR_ID, Sidebar } from './components/Sidebar';
import { SignIn } from './components/SignIn';
import { STATUS_PANEL_ID, StatusPanel } from './components/StatusPanel';
import { useAuth } from './hooks/useAuth';
import { useChat, useUserId } from './hooks/useChat';
import { useConversations } from './hooks/useConversations';
import { useRoute } from './hooks/useRoute';
import { useTheme } from './hooks/useTheme';
import type { SessionSummary } from './lib/api';
import type { Identity } from './lib/auth';
import type { Finished } from './lib/chatState';
import { summaryOf } from './lib/conversations';
import { loadDraft, saveDraft } from './lib/drafts';
import { browserEnv, type AppEnv } from './lib/env';
import { forgetLastSession, lastSessionKey, storeId } from './lib/session';
import type { Theme } from './lib/theme';

export default function App({ env: given }: { env?: AppEnv } = {}) {
  const [env] = useState(() => given ?? browserEnv());
  const auth = useAuth(env);
  const { view } = auth;
  // Light or dark on every screen, sign-in included.
  const theme = useTheme(env);

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
  return (
    <Shell
      env={env}
      identity={view.identity}
      theme={theme.theme}
      onToggleTheme={theme.toggle}
      onSignOut={auth.signOut}
      onUnauthorized={auth.rejected}
    />
  );
}

interface PageActions {
  theme: Theme;
  onToggleTheme: () => void;
  drawerOpen: boolean;
  onToggleDrawer: () => void;
  /** The header's menu button, where the focus goes back when the drawer closes. */
  drawerToggle: RefObject<HTMLButtonElement>;
  onNewChat: () => void;
  onSignOut: () => void;
}

function Shell({
  env,
  identity,
  theme,
  onToggleTheme,
  onSignOut,
  onUnauthorized,
}: {
  env: AppEnv;
  identity: Identity;
  theme: Theme;
  onToggleTheme: () => void;
  onSignOut: () => void;
  onUnauthorized: () => void;
}) {
  const userId = useUserId(env, identity);
  const route = useRoute(env, userId);
  const conversations = useConversations({ env, userId, token: identity.token, onUnauthorized });
  const [drawerOpen, setDrawerOpen] = useState(false);
  const drawerToggle = useRef<HTMLButtonElement>(null);

  const { open, newChat } = route;
  const select = useCallback(
    (id: string) => {
      setDrawerOpen(false);
      open(id);
    },
    [open],
  );
  const onNewChat = useCallback(() => {
    setDrawerOpen(false);
    newChat();
  }, [newChat]);
  const { remove } = conversations;
  const current = route.sessionId;
  const onDelete = useCallback(
    async (id: string) => {
      const failure = await remove(id);
      if (failure) return failure;
      saveDraft(env.idStore, userId, id, '');
      if (id === current) newChat({ replace: true });
      return null;
    },
    [remove, env.idStore, userId, current, newChat],
  );
  // Closed by the user (Escape, the backdrop, ×): the focus goes back to the menu button, once
  // the page behind the drawer is no longer inert.
  const refocusToggle = useRef(false);
  const closeDrawer = useCallback(() => {
    refocusToggle.current = true;
    setDrawerOpen(false);
  }, []);
  useEffect(() => {
    if (drawerOpen || !refocusToggle.current) return;
    refocusToggle.current = false;
    drawerToggle.current?.focus();
  }, [drawerOpen]);
  // The next person signing in here starts from `/`, not from this address.
  const signOut = useCallback(() => {
    env.router?.go('/', { replace: true });
    onSignOut();
  }, [env.router, onSignOut]);

  const actions: PageActions = {
    theme,
    onToggleTheme,
    drawerOpen,
    onToggleDrawer: () => setDrawerOpen((o) => !o),
    drawerToggle,
    onNewChat,
    onSignOut: signOut,
  };
  // While the drawer covers the page, the page behind it is out of reach (Tab, screen readers).
  const behindDrawer = drawerOpen ? { inert: '' } : {};

  return (
    <div className="app app--shell">
      <Sidebar
        list={conversations.list}
        status={conversations.status}
        error={conversations.error}
        selected={current}
        open={drawerOpen}
        onSelect={select}
        onDelete={onDelete}
        onRetry={conversations.refresh}
        onClose={closeDrawer}
      />
      <div className="app__main" {...behindDrawer}>
        {current ? (
          <ChatScreen
            key={current}
            env={env}
            sessionId={current}
            userId={userId}
            identity={identity}
            actions={actions}
            onUnauthorized={onUnauthorized}
            onActivity={conversations.noteActivity}
          />
        ) : (
          <>
            <Header actions={actions} identity={identity} userId={userId} />
            <main className="chat">
              <NotFound onNewChat={onNewChat} />
            </main>
          </>
        )}
      </div>
    </div>
  );
}

function ChatScreen({
  env,
  sessionId,
  userId,
  identity,
  actions,
  onUnauthorized,
  onActivity,
}: {
  env: AppEnv;
  sessionId: string;
  userId: string;
  identity: Identity;
  actions: PageActions;
  onUnauthorized: () => void;
  onActivity: (summary: SessionSummary) => void;
}) {
  const chat = useChat({ env, sessionId, userId, identity, onUnauthorized });
  const input = useRef<ChatInputHandle>(null);
  const { state, connection, stopTarget } = chat;
  const [statusOpen, setStatusOpen] = useState(false);
  const [draft] = useState(() => loadDraft(env.idStore, userId, sessionId));
  const onDraft = useCallback(
    (text: string) => saveDraft(env.idStore, userId, sessionId, text),
    [env.idStore, userId, sessionId],
  );

  // The composer has the keyboard whenever a conversation opens.
  useEffect(() => input.current?.focus(), []);

  // `/` reopens this conversation once it has proved to be this user's (its history came);
  // never one the server refused.
  useEffect(() => {
    if (state.synced) storeId(env.idStore, lastSessionKey(userId), sessionId);
  }, [state.synced, env.idStore, userId, sessionId]);
  useEffect(() => {
    if (state.forbidden) forgetLastSession(env.idStore, userId, sessionId);
  }, [state.forbidden, env.idStore, userId, sessionId]);

  // The sidebar learns of this conversation's activity from its messages: only when one is
  // added or replaced by a final one with a newer time, not on every rendered chunk.
  const messagesRef = useRef(state.messages);
  messagesRef.current = state.messages;
  const last = state.messages[state.messages.length - 1];
  useEffect(() => {
    const summary = summaryOf(sessionId, messagesRef.current);
    if (summary) onActivity(summary);
  }, [sessionId, state.messages.length, last?.timestamp, onActivity]);

  const toggleStatus = () => {
    const open = !statusOpen;
    setStatusOpen(open);
    // A fresh round trip for the panel (then the keepalive pings keep it current).
    if (open) chat.pingNow();
  };

  const { retry } = chat;
  const onRetry = useCallback((messageId: string) => void retry(messageId), [retry]);

  let placeholder = 'Ask anything…';
  if (!state.synced) {
    placeholder = connection.state === 'connecting' ? 'Connecting…' : 'Waiting for the connection…';
  } else if (stopTarget) {
    placeholder = 'Type your next message…';
  }

  return (
    <>
      <Header actions={actions} identity={identity} userId={chat.userId} sessionId={sessionId}>
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
          <Icon d="M1 8h3l2-5 4 10 2-5h3" />
        </button>
      </Header>
      {statusOpen && <StatusPanel status={connection} stats={chat.linkStats} />}

      <main className="chat">
        {state.forbidden ? (
          <NotFound onNewChat={actions.onNewChat} />
        ) : (
          <>
            <MessageList
              messages={state.messages}
              synced={state.synced}
              awaitingReply={state.awaitingReply}
              cancelling={state.cancelling}
              failures={state.failures}
              canSend={chat.canSend}
              onSuggestion={chat.sendChat}
              onRetry={onRetry}
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
                draft={draft}
                onDraft={onDraft}
              />
            </footer>
          </>
        )}
        <Announcer finished={state.finished} />
      </main>
    </>
  );
}

/** The top bar: menu (narrow screens), title, the conversation's own controls, theme, New chat, Sign out. */
function Header({
  actions,
  identity,
  userId,
  sessionId,
  children,
}: {
  actions: PageActions;
  identity: Identity;
  userId: string;
  sessionId?: string;
  children?: ReactNode;
}) {
  const dark = actions.theme === 'dark';
  return (
    <header className="topbar">
      <div className="topbar__title">
        <button
          ref={actions.drawerToggle}
          type="button"
          className="button button--ghost button--icon topbar__menu"
          data-testid="sidebar-toggle"
          onClick={actions.onToggleDrawer}
          aria-label="Conversations"
          aria-expanded={actions.drawerOpen}
          aria-controls={SIDEBAR_ID}
        >
          <Icon d="M2 4h12M2 8h12M2 12h12" />
        </button>
        <span className="logo" aria-hidden="true" />
        <div>
          <h1>Streaming Chat</h1>
          {sessionId && (
            <p className="topbar__session" title={sessionId} data-testid="session-id">
              Session {sessionId}
            </p>
          )}
        </div>
      </div>
      <div className="topbar__actions">
        {children}
        <button
          type="button"
          className="button button--ghost button--icon"
          data-testid="theme-toggle"
          onClick={actions.onToggleTheme}
          aria-label="Dark mode"
          aria-pressed={dark}
          title={dark ? 'Switch to light mode' : 'Switch to dark mode'}
        >
          <Icon d="M13.5 9.5A6 6 0 0 1 6.5 2.5a6 6 0 1 0 7 7z" weight={1.6} />
        </button>
        <button
          type="button"
          className="button button--ghost"
          data-testid="new-chat-button"
          onClick={actions.onNewChat}
          aria-label="New chat"
          title="Start a new conversation"
        >
          <Icon d="M8 3v10M3 8h10" weight={2} />
          <span className="button__label">New chat</span>
        </button>
        {identity.token && (
          <button
            type="button"
            className="button button--ghost"
            data-testid="sign-out-button"
            data-user-id={userId}
            onClick={actions.onSignOut}
            aria-label="Sign out"
            title={`Signed in as ${userId}. Sign out (forget the token in this tab)`}
          >
            <Icon d="M6 3H3v10h3M10 5l3 3-3 3M13 8H6" />
            <span className="button__label">Sign out</span>
          </button>
        )}
      </div>
    </header>
  );
}

/** A conversation that does not exist or belongs to someone else: the server does not say which. */
function NotFound({ onNewChat }: { onNewChat: () => void }) {
  return (
    <div className="empty not-found" data-testid="conversation-not-found">
      <h2>Conversation not found</h2>
      <p>This conversation does not exist, or it is not yours.</p>
      <button type="button" className="button button--send" onClick={onNewChat}>
        Start a new chat
      </button>
    </div>
  );
}

const ANNOUNCEMENTS: Partial<Record<Finished['status'], string>> = {
  completed: 'The answer is complete.',
  cancelled: 'The answer was stopped.',
  failed: 'The answer failed. Press Retry to ask again.',
};

/**
 * Tells screen readers, once, that an answer ended (never per chunk: the conversation log is
 * not a live region). A new child per answer, so two answers ending alike are both announced.
 */
function Announcer({ finished }: { finished: Finished | null }) {
  return (
    <div className="visually-hidden" role="status" aria-live="polite" data-testid="announcer">
      {finished && <p key={finished.messageId}>{ANNOUNCEMENTS[finished.status] ?? 'The answer ended.'}</p>}
    </div>
  );
}
