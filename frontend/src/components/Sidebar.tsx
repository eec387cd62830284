// The conversations sidebar: the user's conversations, newest first (title, last activity),
// a filter by title, and a delete button per conversation (asks first). Each entry is a link to
// `/c/{sessionId}`, so it can also be opened in a new tab; a plain click switches in place. On
// narrow screens it is a drawer the header's menu button opens (styles.css hides it otherwise):
// opening it puts the focus in its filter, Escape closes it.

import { memo, useEffect, useMemo, useRef, useState } from 'react';
import type { SessionSummary } from '../lib/api';
import { filterByTitle, relativeTime } from '../lib/conversations';
import { conversationPath } from '../lib/route';
import { ConfirmDialog } from './ConfirmDialog';
import { Icon } from './Icon';

export const SIDEBAR_ID = 'conversations';

export interface SidebarProps {
  list: SessionSummary[];
  status: 'loading' | 'ready' | 'error';
  error: string | null;
  selected: string | null;
  /** Drawer open (narrow screens). */
  open: boolean;
  onSelect: (sessionId: string) => void;
  onDelete: (sessionId: string) => Promise<string | null>;
  onRetry: () => void;
  onClose: () => void;
  /** For the relative times; defaults to Date.now. */
  now?: () => number;
}

export const Sidebar = memo(function Sidebar(props: SidebarProps) {
  const { list, status, error, selected, open, onSelect, onDelete, onRetry, onClose } = props;
  const [query, setQuery] = useState('');
  const [confirming, setConfirming] = useState<SessionSummary | null>(null);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const now = useClock(props.now);
  const filter = useRef<HTMLInputElement>(null);

  const shown = useMemo(() => filterByTitle(list, query), [list, query]);

  const askDelete = (s: SessionSummary) => {
    setDeleteError(null);
    setConfirming(s);
  };
  const confirmDelete = async () => {
    if (!confirming) return;
    setDeleting(true);
    const failure = await onDelete(confirming.sessionId);
    setDeleting(false);
    if (failure) {
      setDeleteError(failure);
      return;
    }
    setConfirming(null);
    // The entry whose button opened the dialog is gone: keep the keyboard in the sidebar.
    setTimeout(() => filter.current?.focus(), 0);
  };

  // The drawer: the focus moves in when it opens; Escape, wherever the focus is, closes it.
  useEffect(() => {
    if (!open) return;
    filter.current?.focus();
    const onKey = (e: globalThis.KeyboardEvent) => {
      if (e.key === 'Escape' && !e.defaultPrevented) onClose();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [open, onClose]);

  return (
    <>
      <nav
        id={SIDEBAR_ID}
        className="sidebar"
        aria-label="Conversations"
        data-testid="sidebar"
        data-open={open}
      >
        <div className="sidebar__head">
          <h2 className="sidebar__title">Conversations</h2>
          <button type="button" className="button button--ghost button--icon sidebar__close" onClick={onClose} aria-label="Close the conversations">
            ×
          </button>
        </div>
        <label htmlFor="conversation-filter" className="visually-hidden">
          Filter conversations by title
        </label>
        <input
          id="conversation-filter"
          ref={filter}
          className="sidebar__filter"
          data-testid="conversation-filter"
          type="search"
          placeholder="Filter by title"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          autoComplete="off"
        />
        {status === 'error' && (
          <div className="sidebar__status sidebar__status--error" role="alert" data-testid="sidebar-error">
            <span>Could not load your conversations. {error}</span>
            <button type="button" className="button button--ghost" onClick={onRetry}>
              Retry
            </button>
          </div>
        )}
        {status === 'loading' && list.length === 0 && <p className="sidebar__status">Loading…</p>}
        {status !== 'loading' && list.length === 0 && <p className="sidebar__status">No conversations yet.</p>}
        {list.length > 0 && shown.length === 0 && (
          <p className="sidebar__status" data-testid="filter-empty">
            No conversation title contains “{query.trim()}”.
          </p>
        )}
        <ul className="sidebar__list" data-testid="conversation-list">
          {shown.map((s) => (
            <Entry
              key={s.sessionId}
              summary={s}
              selected={s.sessionId === selected}
              when={relativeTime(s.lastActivity, now)}
              onSelect={onSelect}
              onDelete={askDelete}
            />
          ))}
        </ul>
      </nav>
      {open && <div className="sidebar-backdrop" onClick={onClose} aria-hidden="true" />}
      {confirming && (
        <ConfirmDialog
          title="Delete this conversation?"
          confirmLabel="Delete"
          busyLabel="Deleting…"
          busy={deleting}
          error={deleteError}
          onConfirm={() => void confirmDelete()}
          onCancel={() => setConfirming(null)}
        >
          <p>
            “{confirming.title || 'Untitled'}” and all its messages will be removed for good, from every device.
          </p>
        </ConfirmDialog>
      )}
    </>
  );
});

const Entry = memo(function Entry({
  summary,
  selected,
  when,
  onSelect,
  onDelete,
}: {
  summary: SessionSummary;
  selected: boolean;
  when: string;
  onSelect: (sessionId: string) => void;
  onDelete: (summary: SessionSummary) => void;
}) {
  const title = summary.title || 'Untitled';
  return (
    <li className="conversation" data-testid="conversation" data-session-id={summary.sessionId} data-selected={selected}>
      <a
        className="conversation__link"
        href={conversationPath(summary.sessionId)}
        aria-current={selected ? 'page' : undefined}
        onClick={(e) => {
          // A plain click switches in place; modified clicks (new tab, new window) go to the browser.
          if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
          e.preventDefault();
          onSelect(summary.sessionId);
        }}
      >
        <span className="conversation__title" data-testid="conversation-title">
          {title}
        </span>
        <time className="conversation__time" dateTime={new Date(summary.lastActivity).toISOString()}>
          {when}
        </time>
      </a>
      <button
        type="button"
        className="conversation__delete"
        data-testid="delete-conversation"
        aria-label={`Delete “${title}”`}
        title="Delete this conversation"
        onClick={() => onDelete(summary)}
      >
        <Icon d="M3 4.5h10M6.5 4.5V3h3v1.5M4.5 4.5l.7 8.5h5.6l.7-8.5" weight={1.5} />
      </button>
    </li>
  );
});

/** The time the relative times count from, renewed every minute. */
function useClock(given?: () => number): number {
  const read = given ?? Date.now;
  const [now, setNow] = useState(read);
  useEffect(() => {
    const timer = setInterval(() => setNow(read()), 60_000);
    return () => clearInterval(timer);
  }, [read]);
  return now;
}
