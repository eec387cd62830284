// Builders for server frames, shaped as docs/PROTOCOL.md shows them.

import type { MessageStatus, ServerFrame, WireMessage } from '../lib/protocol';

export const SESSION = 'demo-1';
const T = 1_718_000_000_100;

export function userMessage(id: string, content: string): WireMessage {
  return {
    messageId: id,
    sessionId: SESSION,
    userId: 'alice',
    role: 'user',
    content,
    timestamp: T,
    isComplete: true,
    status: 'completed',
  };
}

export function chunkOf(id: string, index: number, chunk: string): WireMessage {
  return {
    messageId: id,
    sessionId: SESSION,
    userId: 'alice',
    role: 'assistant',
    timestamp: T,
    isComplete: false,
    status: 'streaming',
    index,
    chunk,
  };
}

export function finalOf(id: string, content: string, status: MessageStatus = 'completed'): WireMessage {
  return {
    messageId: id,
    sessionId: SESSION,
    userId: 'alice',
    role: 'assistant',
    content,
    timestamp: T,
    isComplete: true,
    status,
  };
}

/** The in-flight answer as `history` carries it; content omitted when empty. */
export function inFlight(id: string, content: string): WireMessage {
  const m: WireMessage = {
    messageId: id,
    sessionId: SESSION,
    userId: 'alice',
    role: 'assistant',
    timestamp: T,
    isComplete: false,
    status: 'streaming',
  };
  if (content) m.content = content;
  return m;
}

export const welcome = (nodeId = 'ws-node-1', sessionId = SESSION): ServerFrame => ({
  type: 'welcome',
  sessionId,
  nodeId,
  timestamp: T,
});

export const history = (
  messages: WireMessage[],
  streaming: { messageId: string; lastIndex: number } | null = null,
  sessionId = SESSION,
): ServerFrame => ({ type: 'history', sessionId, messages, streaming });

export const message = (data: WireMessage): ServerFrame => ({ type: 'message', data });

export const accepted = (messageId: string, userMessageId = 'u1', sessionId = SESSION): ServerFrame => ({
  type: 'accepted',
  sessionId,
  userMessageId,
  messageId,
  nodeId: 'ai-node-2',
});

export const chunk = (id: string, index: number, delta: string): ServerFrame =>
  message(chunkOf(id, index, delta));

export const errorFrame = (code: string, error: string, messageId?: string): ServerFrame => ({
  type: 'error',
  code,
  error,
  timestamp: T,
  ...(messageId ? { messageId } : {}),
});

export const recovery = (
  status: 'RECOVERED' | 'COMPLETED' | 'EXPIRED' | 'NOT_FOUND' | 'ERROR',
  messageId: string,
  chunks: WireMessage[] = [],
  final?: WireMessage,
): ServerFrame => ({ type: 'recovery', status, messageId, chunks, ...(final ? { message: final } : {}) });
