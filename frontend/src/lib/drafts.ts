// What the user had typed in each conversation and not sent, kept in localStorage per user and
// session (`chat.draft.{userId}.{sessionId}`), so switching conversations or reloading keeps the
// draft, and nobody else signing in on this browser sees it.

import type { KeyValueStore } from './session';

const key = (userId: string, sessionId: string) => `chat.draft.${userId}.${sessionId}`;

export function loadDraft(store: KeyValueStore | null, userId: string, sessionId: string): string {
  try {
    return store?.getItem(key(userId, sessionId)) ?? '';
  } catch {
    return '';
  }
}

/** Keeps `text` as the draft of `sessionId`; an empty draft is removed. */
export function saveDraft(store: KeyValueStore | null, userId: string, sessionId: string, text: string): void {
  try {
    if (text) store?.setItem(key(userId, sessionId), text);
    else store?.removeItem?.(key(userId, sessionId));
  } catch {
    // Storage full or disabled: the draft lives as long as the composer.
  }
}
