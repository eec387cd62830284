// Light or dark: the system's setting (prefers-color-scheme) until the user picks one with the
// header's toggle; the pick is kept in localStorage (`chat.theme`). The page's CSS reads
// `data-theme` on <html> (styles.css: light-dark() colours under `color-scheme`).

import type { KeyValueStore } from './session';

export type Theme = 'light' | 'dark';

export const THEME_KEY = 'chat.theme';

/** The user's pick, or null to follow the system. */
export function storedTheme(store: KeyValueStore | null): Theme | null {
  let value: string | null = null;
  try {
    value = store?.getItem(THEME_KEY) ?? null;
  } catch {
    // No storage: follow the system.
  }
  return value === 'light' || value === 'dark' ? value : null;
}

export function storeTheme(store: KeyValueStore | null, theme: Theme): void {
  try {
    store?.setItem(THEME_KEY, theme);
  } catch {
    // The pick lasts as long as the page.
  }
}

/** Whether the system asks for dark colours now, and a way to hear when that changes. */
export interface SystemScheme {
  prefersDark(): boolean;
  listen(listener: () => void): () => void;
}

export function browserScheme(): SystemScheme {
  const query = typeof window.matchMedia === 'function' ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  return {
    prefersDark: () => query?.matches ?? false,
    listen: (listener) => {
      query?.addEventListener('change', listener);
      return () => query?.removeEventListener('change', listener);
    },
  };
}
