// Shows the socket's state and the gateway node serving it; while waiting to reconnect, a
// countdown and a "Retry now" button.

import { useEffect, useState } from 'react';
import type { ConnectionStatus } from '../lib/connection';

const LABELS = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  disconnected: 'Offline',
} as const;

export function ConnectionIndicator({
  status,
  onRetry,
}: {
  status: ConnectionStatus;
  onRetry: () => void;
}) {
  const now = useNow(status.retryAt !== null);
  const secondsLeft =
    status.retryAt !== null ? Math.max(0, Math.ceil((status.retryAt - now) / 1000)) : null;
  let detail: string | null = null;
  if (status.state === 'connected' && status.nodeId) detail = status.nodeId;
  else if (status.state === 'reconnecting' && secondsLeft !== null && secondsLeft > 0)
    detail = `retry in ${secondsLeft} s`;
  return (
    <div
      className={`connection connection--${status.state}`}
      data-testid="connection-indicator"
      data-state={status.state}
      data-node-id={status.nodeId ?? ''}
      role="status"
      aria-live="polite"
    >
      <span className="connection__dot" aria-hidden="true" />
      <span className="connection__label">{LABELS[status.state]}</span>
      {detail && <span className="connection__detail">{detail}</span>}
      {status.state === 'reconnecting' && status.retryAt !== null && (
        <button type="button" className="link-button" onClick={onRetry}>
          Retry now
        </button>
      )}
    </div>
  );
}

/** The current time, refreshed every half second while `active`. */
function useNow(active: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [active]);
  return now;
}
