// React binding of lib/connection: one Connection per URL (a new URL, i.e. a new session,
// replaces the socket), its status as state, and the browser's online/offline events.
// Reconnect, backoff, ping and dead-socket detection live in the Connection class.

import { useCallback, useEffect, useRef, useState } from 'react';
import { Connection, type ConnectionStatus } from '../lib/connection';
import type { ClientFrame, ServerFrame } from '../lib/protocol';

export interface WebSocketHandlers {
  onFrame: (frame: ServerFrame) => void;
  onClose?: () => void;
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

export function useWebSocket(url: string, handlers: WebSocketHandlers): WebSocketApi {
  const [status, setStatus] = useState<ConnectionStatus>(INITIAL);
  const connection = useRef<Connection | null>(null);
  // The latest handlers, so a re-render never needs a new socket.
  const handlersRef = useRef(handlers);
  handlersRef.current = handlers;

  useEffect(() => {
    const conn = new Connection({
      url,
      onFrame: (frame) => handlersRef.current.onFrame(frame),
      onClose: () => handlersRef.current.onClose?.(),
      onStatus: setStatus,
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
