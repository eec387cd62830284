// React binding of lib/connection: one Connection per URL (a new URL, i.e. a new session,
// replaces the socket), its status as state, and the browser's online/offline events.
// Reconnect, backoff, ping, dead-socket detection and the auth frame live in the Connection class.

import { useCallback, useEffect, useRef, useState } from 'react';
import { Connection, type ConnectionStatus, type SocketFactory, type Timers } from '../lib/connection';
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

  useEffect(() => {
    const { createSocket, timers } = optionsRef.current;
    const conn = new Connection({
      url,
      onFrame: (frame) => handlersRef.current.onFrame(frame),
      onClose: (info) => handlersRef.current.onClose?.(info),
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
  }, [url]);

  const send = useCallback((frame: ClientFrame) => connection.current?.send(frame) ?? false, []);
  const reconnectNow = useCallback(() => connection.current?.reconnectNow(), []);
  return { status, send, reconnectNow };
}
