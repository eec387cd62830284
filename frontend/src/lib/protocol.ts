// Wire types of docs/PROTOCOL.md: the frames a gateway sends and accepts, and ChatMessage.
// No I/O here; `parseServerFrame` is the one place that turns socket text into a typed frame.

export type Role = 'user' | 'assistant' | 'system';
export type MessageStatus = 'pending' | 'streaming' | 'completed' | 'cancelled' | 'failed';

/** A ChatMessage as it appears on the wire (camelCase). `content` is omitted when empty. */
export interface WireMessage {
  messageId: string;
  sessionId: string;
  userId: string;
  role: Role;
  content?: string;
  timestamp: number;
  isComplete: boolean;
  status: MessageStatus;
  /** Chunk frames only: position of the chunk in its message. */
  index?: number;
  /** Chunk frames only: the delta this chunk adds. */
  chunk?: string;
}

export interface StreamingState {
  messageId: string;
  /** Index of the last chunk included in the in-flight answer's content; -1 before the first. */
  lastIndex: number;
}

export type RecoveryStatus = 'RECOVERED' | 'COMPLETED' | 'EXPIRED' | 'NOT_FOUND' | 'ERROR';

export type ServerFrame =
  | { type: 'welcome'; sessionId: string; nodeId: string; timestamp: number }
  | {
      type: 'history';
      sessionId: string;
      messages: WireMessage[];
      streaming: StreamingState | null;
    }
  | { type: 'message'; data: WireMessage }
  /** To the socket that sent a `chat`, once an AI node took it: the ids its messages will carry. */
  | { type: 'accepted'; sessionId: string; userMessageId: string; messageId: string; nodeId: string }
  | {
      type: 'recovery';
      status: RecoveryStatus;
      messageId: string;
      chunks: WireMessage[];
      message?: WireMessage;
    }
  | { type: 'pong'; timestamp: number }
  | { type: 'error'; error: string; code: string; timestamp: number; messageId?: string };

export type ClientFrame =
  /** The first frame on a socket when the server requires a token (lib/auth). */
  | { type: 'auth'; token: string }
  | { type: 'ping' }
  | { type: 'chat'; message: string }
  | { type: 'cancel'; messageId: string }
  | { type: 'resume'; messageId: string; fromIndex: number };

/** Ids (session, user, message) the server accepts. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Longest chat text the server accepts, in characters, after trimming. */
export const MAX_CHAT_CHARS = 5000;

const SERVER_TYPES = new Set(['welcome', 'history', 'message', 'accepted', 'recovery', 'pong', 'error']);

/**
 * Parses one text frame. Returns null for anything that is not a JSON object with a known
 * `type` and the fields the client relies on, so a malformed frame is dropped, never thrown.
 */
export function parseServerFrame(text: string): ServerFrame | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const frame = value as Record<string, unknown>;
  if (typeof frame.type !== 'string' || !SERVER_TYPES.has(frame.type)) return null;
  switch (frame.type) {
    case 'history':
      if (!Array.isArray(frame.messages) || !frame.messages.every(isWireMessage)) return null;
      if (frame.streaming != null && !isStreamingState(frame.streaming)) return null;
      return { ...(frame as object), streaming: frame.streaming ?? null } as ServerFrame;
    case 'message':
      return isWireMessage(frame.data) ? (frame as unknown as ServerFrame) : null;
    case 'recovery':
      if (typeof frame.messageId !== 'string' || typeof frame.status !== 'string') return null;
      if (frame.chunks != null && !(Array.isArray(frame.chunks) && frame.chunks.every(isWireMessage)))
        return null;
      if (frame.message != null && !isWireMessage(frame.message)) return null;
      return { ...(frame as object), chunks: frame.chunks ?? [] } as ServerFrame;
    case 'accepted':
      if (typeof frame.messageId !== 'string' || frame.messageId === '') return null;
      if (typeof frame.userMessageId !== 'string') return null;
      return {
        type: 'accepted',
        sessionId: typeof frame.sessionId === 'string' ? frame.sessionId : '',
        userMessageId: frame.userMessageId,
        messageId: frame.messageId,
        nodeId: typeof frame.nodeId === 'string' ? frame.nodeId : '',
      };
    case 'welcome':
      return typeof frame.nodeId === 'string' ? (frame as unknown as ServerFrame) : null;
    case 'error':
      return {
        ...(frame as object),
        code: typeof frame.code === 'string' ? frame.code : 'UNKNOWN',
        error: typeof frame.error === 'string' ? frame.error : '',
      } as ServerFrame;
    default:
      return frame as unknown as ServerFrame;
  }
}

function isWireMessage(value: unknown): value is WireMessage {
  if (typeof value !== 'object' || value === null) return false;
  const m = value as Record<string, unknown>;
  return (
    typeof m.messageId === 'string' &&
    typeof m.role === 'string' &&
    typeof m.isComplete === 'boolean' &&
    (m.content === undefined || typeof m.content === 'string') &&
    (m.index === undefined || (Number.isInteger(m.index) && (m.index as number) >= 0)) &&
    (m.chunk === undefined || typeof m.chunk === 'string')
  );
}

function isStreamingState(value: unknown): value is StreamingState {
  if (typeof value !== 'object' || value === null) return false;
  const s = value as Record<string, unknown>;
  return typeof s.messageId === 'string' && Number.isInteger(s.lastIndex);
}

/** Whether a `message` frame's payload is a chunk (a delta with its index). */
export function isChunk(m: WireMessage): m is WireMessage & { index: number; chunk: string } {
  return !m.isComplete && typeof m.index === 'number' && typeof m.chunk === 'string';
}
