// The ids this browser uses: the person (user) and, per user, the conversation they had open
// last, kept in localStorage so `/` continues it. Per user, so whoever signs in next on this
// browser is not sent to someone else's conversation.

import { ID_PATTERN } from './protocol';

export const USER_KEY = 'chat.userId';

/** Where the conversation `userId` had open last is kept. */
export function lastSessionKey(userId: string): string {
  return `chat.lastSession.${userId}`;
}

/** The conversation `userId` had open last, if one is stored (and valid). */
export function lastSession(store: KeyValueStore | null, userId: string): string | null {
  try {
    const id = store?.getItem(lastSessionKey(userId)) ?? null;
    return id && ID_PATTERN.test(id) ? id : null;
  } catch {
    return null;
  }
}

/** Forgets `sessionId` as `userId`'s last conversation, if it is (it was refused to them). */
export function forgetLastSession(store: KeyValueStore | null, userId: string, sessionId: string): void {
  try {
    if (store?.getItem(lastSessionKey(userId)) === sessionId) store.removeItem?.(lastSessionKey(userId));
  } catch {
    // Nothing stored, then.
  }
}

/** The part of Storage used here (localStorage, or a Map-backed fake in tests). */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem?(key: string): void;
}

/** A random id matching [A-Za-z0-9_-]{1,64}: a prefix and 128 random bits in base64url. */
export function randomId(prefix: string, random: (bytes: Uint8Array) => Uint8Array = fill): string {
  const bytes = random(new Uint8Array(16));
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  const encoded = btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return `${prefix}-${encoded}`;
}

function fill(bytes: Uint8Array): Uint8Array {
  // getRandomValues works on plain-http pages too, where crypto.randomUUID does not exist.
  return crypto.getRandomValues(bytes);
}

/** The stored id under `key`, or a new one (stored) when absent or invalid. */
export function loadOrCreateId(store: KeyValueStore | null, key: string, prefix: string): string {
  let stored: string | null = null;
  try {
    stored = store?.getItem(key) ?? null;
  } catch {
    // Storage can throw (disabled cookies, private mode): fall through to a fresh id.
  }
  if (stored && ID_PATTERN.test(stored)) return stored;
  return storeId(store, key, randomId(prefix));
}

/** Stores `id` under `key` (best effort) and returns it. */
export function storeId(store: KeyValueStore | null, key: string, id: string): string {
  try {
    store?.setItem(key, id);
  } catch {
    // Without storage the id lives as long as the page.
  }
  return id;
}

export function browserStore(): KeyValueStore | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}
