// React binding of lib/connection: one Connection per URL (a new URL, i.e. a new session,
// replaces the socket), its status as state, and the browser's online/offline events.
// Reconnect, backoff, ping, dead-socket detection and the auth frame live in the Connection class.
// Every frame, ping round trip and close also goes to a LinkStats (lib/linkStats), one for the
// hook's life, that the status panel reads without re-rendering anything else.

import { useCallback, useEffect, useRef, useState } from 'react';
import { browserTimers, Connection, type ConnectionStatus, type SocketFactory, type Timers } from '../lib/connection';
import { LinkStats } from '../lib/linkStats';
import type { ClientFrame, ServerFrame } from '../lib/protocol';

export interface WebSocketHandlers {
  onFrame: (frame: ServerFrame) => void;
  onClose?: (info: { code: number; reason: string }) => void;
}

export interface WebSocketOptions {
  /** The token to send as the first frame of each socket (null: none). */
  authToken?: () => string | null;
  /** Whether to try again after a close with this code. */
  reconnectAfter?: (close: { code: number; reason: string }) => boolean;
  createSocket?: SocketFactory;
  timers?: Timers;
}

export interface WebSocketApi {
  status: ConnectionStatus;
  send: (frame: ClientFrame) => boolean;
  reconnectNow: () => void;
  /** Sends a `ping` now if connected (its round trip goes to `stats`). */
  ping: () => void;
  /** Node id, ping round trip and chunk rate, for the status panel. */
  stats: LinkStats;
}

const INITIAL: ConnectionStatus = {
  state: 'connecting',
  nodeId: null,
  failures: 0,
  retryAt: null,
  lastClose: null,
};

export function useWebSocket(url: string, handlers: WebSocketHandlers, options: WebSocketOptions = {}): WebSocketApi {
  const [status, setStatus] = useState<ConnectionStatus>(INITIAL);
  const connection = useRef<Connection | null>(null);
  // The latest handlers and options, so a re-render never needs a new socket.
  const handlersRef = useRef(handlers);
  handlersRef.current = handlers;
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const [stats] = useState(() => new LinkStats(options.timers ?? browserTimers));

  useEffect(() => {
    const { createSocket, timers } = optionsRef.current;
    const conn = new Connection({
      url,
      onFrame: (frame) => {
        stats.frame(frame);
        handlersRef.current.onFrame(frame);
      },
      onClose: (info) => {
        stats.socketClosed();
        handlersRef.current.onClose?.(info);
      },
      onLatency: (ms) => stats.latency(ms),
      onStatus: setStatus,
      authToken: () => optionsRef.current.authToken?.() ?? null,
      reconnectAfter: (close) => optionsRef.current.reconnectAfter?.(close) ?? true,
      ...(createSocket ? { createSocket } : {}),
      ...(timers ? { timers } : {}),
    });
    connection.current = conn;
    const online = () => conn.setOnline(true);
    const offline = () => conn.setOnline(false);
    window.addEventListener('online', online);
    window.addEventListener('offline', offline);
    conn.start();
    return () => {
      window.removeEventListener('online', online);
      window.removeEventListener('offline', offline);
      conn.stop();
      if (connection.current === conn) connection.current = null;
    };
  }, [url, stats]);

  const send = useCallback((frame: ClientFrame) => connection.current?.send(frame) ?? false, []);
  const reconnectNow = useCallback(() => connection.current?.reconnectNow(), []);
  const ping = useCallback(() => void connection.current?.pingNow(), []);
  return { status, send, reconnectNow, ping, stats };
}
