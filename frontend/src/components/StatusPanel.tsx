// The developer status panel, opened from the header's "Connection status" button: the gateway
// node of the last `welcome`, the connection state, the last ping's round trip and the chunk
// rate of the answer streaming now. It reads lib/linkStats through useSyncExternalStore and is
// memoised on props that do not change per chunk, so the chat's renders on each chunk do not
// reach it; while an answer streams it refreshes itself every RATE_REFRESH_MS.

import { memo, useSyncExternalStore } from 'react';
import type { ConnectionState, ConnectionStatus } from '../lib/connection';
import type { LinkStats } from '../lib/linkStats';

export const STATUS_PANEL_ID = 'connection-status-panel';

const STATES: Record<ConnectionState, string> = {
  connecting: 'connecting',
  connected: 'open',
  reconnecting: 'reconnecting',
  disconnected: 'closed',
};

/** A close code's usual name, for the ones a gateway or the network sends. */
const CLOSE_NAMES: Record<number, string> = {
  1000: 'normal',
  1001: 'going away',
  1006: 'connection lost',
  1011: 'server error',
  1012: 'service restart',
  1013: 'try again later',
};

export const StatusPanel = memo(function StatusPanel({
  status,
  stats,
}: {
  status: ConnectionStatus;
  stats: LinkStats;
}) {
  const link = useSyncExternalStore(stats.subscribe, stats.getSnapshot);
  const close = status.lastClose;
  return (
    <section
      id={STATUS_PANEL_ID}
      className="status-panel"
      aria-label="Connection details"
      data-testid="status-panel"
    >
      <dl className="status-panel__list">
        <div className="status-panel__item">
          <dt>Gateway node</dt>
          <dd data-testid="status-node">{link.nodeId ?? '–'}</dd>
        </div>
        <div className="status-panel__item">
          <dt>Connection</dt>
          <dd data-testid="status-state" data-state={status.state}>
            {STATES[status.state]}
            {status.failures > 0 && ` · ${status.failures} failed`}
          </dd>
        </div>
        <div className="status-panel__item">
          <dt>Ping</dt>
          <dd data-testid="status-latency">{formatLatency(link.latencyMs)}</dd>
        </div>
        <div className="status-panel__item">
          <dt>Stream</dt>
          <dd data-testid="status-rate">
            {link.chunkRate === null ? '–' : `${link.chunkRate.toFixed(1)} chunks/s`}
          </dd>
        </div>
        {close && (
          <div className="status-panel__item">
            <dt>Last close</dt>
            <dd data-testid="status-last-close">
              {close.code}
              {CLOSE_NAMES[close.code] ? ` ${CLOSE_NAMES[close.code]}` : ''}
              {close.reason && close.reason !== CLOSE_NAMES[close.code] ? ` (${close.reason})` : ''}
            </dd>
          </div>
        )}
      </dl>
    </section>
  );
});

function formatLatency(ms: number | null): string {
  if (ms === null) return '–';
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}
