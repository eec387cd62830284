// What the user had typed in each conversation and not sent, kept in localStorage per session
// (`chat.draft.{sessionId}`), so switching conversations or reloading keeps the draft.

import type { KeyValueStore } from './session';

const PREFIX = 'chat.draft.';

export function loadDraft(store: KeyValueStore | null, sessionId: string): string {
  try {
    return store?.getItem(PREFIX + sessionId) ?? '';
  } catch {
    return '';
  }
}

/** Keeps `text` as the draft of `sessionId`; an empty draft is removed. */
export function saveDraft(store: KeyValueStore | null, sessionId: string, text: string): void {
  try {
    if (text) store?.setItem(PREFIX + sessionId, text);
    else store?.removeItem?.(PREFIX + sessionId);
  } catch {
    // Storage full or disabled: the draft lives as long as the composer.
  }
}
