// A value shown for a moment, then gone ("Copied" on a Copy button): a new flash restarts the
// moment, and nothing fires after the component has gone.

import { useCallback, useEffect, useState } from 'react';

export function useFlash<T>(ms: number): [T | null, (value: T) => void] {
  const [shown, setShown] = useState<{ value: T; at: number } | null>(null);
  useEffect(() => {
    if (!shown) return;
    const timer = setTimeout(() => setShown(null), ms);
    return () => clearTimeout(timer);
  }, [shown, ms]);
  const flash = useCallback((value: T) => setShown({ value, at: Date.now() }), []);
  return [shown?.value ?? null, flash];
}
