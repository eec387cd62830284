// Light or dark (lib/theme): the system's setting until the user toggles, then the user's pick.
// Sets `data-theme` on <html>, which the stylesheet reads.

import { useCallback, useEffect, useState } from 'react';
import type { AppEnv } from '../lib/env';
import { browserScheme, storedTheme, storeTheme, type SystemScheme, type Theme } from '../lib/theme';

export function useTheme(env: AppEnv, given?: SystemScheme): { theme: Theme; toggle: () => void } {
  const [scheme] = useState(() => given ?? browserScheme());
  const [picked, setPicked] = useState<Theme | null>(() => storedTheme(env.idStore));
  const [systemDark, setSystemDark] = useState(() => scheme.prefersDark());
  useEffect(() => scheme.listen(() => setSystemDark(scheme.prefersDark())), [scheme]);

  const theme: Theme = picked ?? (systemDark ? 'dark' : 'light');
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);

  const toggle = useCallback(() => {
    const next: Theme = theme === 'dark' ? 'light' : 'dark';
    storeTheme(env.idStore, next);
    setPicked(next);
  }, [theme, env.idStore]);
  return { theme, toggle };
}
