// The ids this browser uses: the conversation (session) and the person (user), kept in
// localStorage so a reload continues the same conversation.

import { ID_PATTERN } from './protocol';

export const SESSION_KEY = 'chat.sessionId';
export const USER_KEY = 'chat.userId';

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
