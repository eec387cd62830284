// The conversations sidebar's list, without React: what the server listed (`GET /api/sessions`,
// written to SQL a moment after each message) merged with what this tab has just seen happen
// (so a new conversation shows at once, before the server lists it), newest first, filtered by
// title, with short relative times.

import type { SessionSummary } from './api';
import type { UiMessage } from './chatState';

/** The server's title length (characters): store::TITLE_CHARS. */
export const TITLE_CHARS = 60;

/** A conversation's title as the server makes it: its first user message, cut to 60 characters. */
export function titleOf(messages: readonly UiMessage[]): string | null {
  const first = messages.find((m) => m.role === 'user');
  if (!first) return null;
  return Array.from(first.content).slice(0, TITLE_CHARS).join('');
}

/** What this tab knows of the conversation it shows: null while it has no message. */
export function summaryOf(sessionId: string, messages: readonly UiMessage[]): SessionSummary | null {
  const title = titleOf(messages);
  if (title === null) return null;
  const lastActivity = messages.reduce((t, m) => (Number.isFinite(m.timestamp) ? Math.max(t, m.timestamp) : t), 0);
  return { sessionId, title, lastActivity };
}

/**
 * The sidebar's list: the server's entries, each updated by a newer local one, plus local
 * entries the server does not list yet; most recent first.
 */
export function mergeSessions(server: readonly SessionSummary[], local: readonly SessionSummary[]): SessionSummary[] {
  const byId = new Map<string, SessionSummary>();
  for (const s of server) byId.set(s.sessionId, s);
  for (const s of local) {
    const known = byId.get(s.sessionId);
    if (!known) byId.set(s.sessionId, s);
    else if (s.lastActivity > known.lastActivity) {
      byId.set(s.sessionId, { ...known, lastActivity: s.lastActivity, title: known.title || s.title });
    }
  }
  return [...byId.values()].sort(
    (a, b) => b.lastActivity - a.lastActivity || (a.sessionId < b.sessionId ? -1 : 1),
  );
}

/** Case- and accent-insensitive: "cafe" finds "Café". */
function fold(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

/** The entries whose title contains `query` (all of them for a blank query). */
export function filterByTitle(list: readonly SessionSummary[], query: string): SessionSummary[] {
  const q = fold(query.trim());
  if (!q) return [...list];
  return list.filter((s) => fold(s.title).includes(q));
}

/** "just now", "5 min ago", "3 h ago", "yesterday", "4 days ago", then the date. */
export function relativeTime(at: number, now: number): string {
  const seconds = Math.max(0, Math.round((now - at) / 1000));
  if (seconds < 60) return 'just now';
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  if (days === 1) return 'yesterday';
  if (days < 7) return `${days} days ago`;
  return new Date(at).toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' });
}
