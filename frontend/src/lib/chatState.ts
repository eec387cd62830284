// The conversation as the client knows it, and the pure reducer that applies server frames to
// it, following docs/PROTOCOL.md section 7:
//
// 1. the latest `history` replaces everything (never merged);
// 2. chunks are deduplicated by (messageId, index): index <= last is dropped, last + 1 appended;
// 3. a complete message replaces the in-flight answer of the same id; a second copy is dropped;
// 4. a gap (index > last + 1) holds the chunk back and asks for `resume` from last + 1; the
//    `recovery` answer fills the gap (or ends the answer, or makes the client reload);
// 6. a missing `content` is the empty string.
//
// An `accepted` frame (the answer to this client's own `chat`) only records the answer's id, so
// that Stop can cancel it before its first chunk; it never adds a message.
//
// The reducer does no I/O: what must be sent (a `resume`) or done (reconnect to reload) comes
// back as effects for the caller to run.

import {
  isChunk,
  type ClientFrame,
  type MessageStatus,
  type Role,
  type ServerFrame,
  type WireMessage,
} from './protocol';

export interface UiMessage {
  messageId: string;
  role: Role;
  userId: string;
  /** Full text so far; for an in-flight answer, the chunks 0..=lastIndex concatenated. */
  content: string;
  status: MessageStatus;
  isComplete: boolean;
  timestamp: number;
}

export interface Notice {
  id: number;
  code: string;
  text: string;
  messageId?: string;
}

/** An answer that ended while this tab watched it stream, for the screen-reader announcement. */
export interface Finished {
  messageId: string;
  status: MessageStatus;
}

export interface ChatState {
  sessionId: string;
  /** The server refused this conversation to this user (close 4403): nothing of it is shown. */
  forbidden: boolean;
  /**
   * The last answer that ended live (its final message replaced the streaming one here); never
   * set by a `history`, so each answer is announced once, when it ends, not on every reload.
   */
  finished: Finished | null;
  /** Gateway that sent the last `welcome`. */
  nodeId: string | null;
  /** True from a `history` frame until the socket closes: `messages` is the server's truth. */
  synced: boolean;
  messages: UiMessage[];
  /** Per in-flight answer, the index of the last chunk in its content (-1: none yet). */
  lastIndex: Record<string, number>;
  /** Chunks that arrived after a gap, held out of the text until the gap is filled. */
  held: Record<string, Record<number, string>>;
  /** Answers with a `resume` outstanding, and the `fromIndex` it asked for. */
  resuming: Record<string, number>;
  /** Answers the user asked to stop that have not ended yet. */
  cancelling: string[];
  /** A chat was sent and no answer to it has started yet. */
  awaitingReply: boolean;
  /**
   * The answer an AI node took for the chat this client sent (`accepted`), until it ends: Stop
   * cancels it, before its first chunk too. Never a message by itself.
   */
  acceptedAnswerId: string | null;
  /** Why an answer failed (the STREAM_FAILED or UPSTREAM_ERROR text), by answer id. */
  failures: Record<string, string>;
  /** Errors to show the user, oldest first. */
  notices: Notice[];
  nextNoticeId: number;
}

export type ChatEvent =
  | { type: 'frame'; frame: ServerFrame }
  /** The socket closed; a new one will start with `history`. */
  | { type: 'disconnected' }
  /** The server refused this conversation to this user (close 4403). */
  | { type: 'forbidden' }
  | { type: 'chatSent' }
  | { type: 'cancelRequested'; messageId: string }
  /** The user pressed Stop: cancel the answer `stopTarget` names, if any. */
  | { type: 'stop' }
  /** An error found by the client itself (e.g. a failed REST call). */
  | { type: 'localError'; code: string; text: string }
  | { type: 'dismissNotice'; id: number };

export type Effect =
  | { type: 'send'; frame: ClientFrame }
  /** Send `frame` after `delayMs` (a `resume` retried after a recovery ERROR). */
  | { type: 'sendLater'; frame: ClientFrame; delayMs: number }
  /** Cancel answer `messageId`: on the socket, or over REST while it is down. */
  | { type: 'cancel'; messageId: string }
  /** Reload the conversation: reconnect, so that a fresh `history` replaces the state. */
  | { type: 'resync'; reason: string };

export interface Step {
  state: ChatState;
  effects: Effect[];
}

/** Notices kept at once; older ones drop off. */
const MAX_NOTICES = 4;
/** Pause before asking again after a recovery ERROR. */
export const RESUME_RETRY_MS = 1_000;

export function initialChatState(sessionId: string): ChatState {
  return {
    sessionId,
    forbidden: false,
    finished: null,
    nodeId: null,
    synced: false,
    messages: [],
    lastIndex: {},
    held: {},
    resuming: {},
    cancelling: [],
    awaitingReply: false,
    acceptedAnswerId: null,
    failures: {},
    notices: [],
    nextNoticeId: 1,
  };
}

/** Applies one event. Never mutates `state`; returns the same object when nothing changed. */
export function reduce(state: ChatState, event: ChatEvent): Step {
  switch (event.type) {
    case 'frame':
      return applyFrame(state, event.frame);
    case 'disconnected':
      return done({ ...state, synced: false, held: {}, resuming: {} });
    case 'forbidden':
      return done({ ...initialChatState(state.sessionId), forbidden: true, nextNoticeId: state.nextNoticeId });
    case 'chatSent':
      return done({ ...state, awaitingReply: true });
    case 'cancelRequested':
      return state.cancelling.includes(event.messageId)
        ? done(state)
        : done({ ...state, cancelling: [...state.cancelling, event.messageId] });
    case 'stop': {
      const messageId = stopTarget(state);
      if (!messageId || state.cancelling.includes(messageId)) return done(state);
      return {
        state: { ...state, cancelling: [...state.cancelling, messageId] },
        effects: [{ type: 'cancel', messageId }],
      };
    }
    case 'localError':
      return done(addNotice(state, { code: event.code, text: event.text }));
    case 'dismissNotice':
      return done({ ...state, notices: state.notices.filter((n) => n.id !== event.id) });
  }
}

function applyFrame(state: ChatState, frame: ServerFrame): Step {
  switch (frame.type) {
    case 'welcome':
      if (frame.sessionId && frame.sessionId !== state.sessionId) return done(state);
      return done({ ...state, nodeId: frame.nodeId });
    case 'history':
      return applyHistory(state, frame);
    case 'accepted': {
      if (frame.sessionId && frame.sessionId !== state.sessionId) return done(state);
      if (state.acceptedAnswerId === frame.messageId) return done(state); // a duplicate
      // Arriving after the answer's final message: that answer is over already.
      if (state.messages.some((m) => m.messageId === frame.messageId && m.isComplete)) return done(state);
      return done({ ...state, acceptedAnswerId: frame.messageId });
    }
    case 'message': {
      if (frame.data.sessionId && frame.data.sessionId !== state.sessionId) return done(state);
      const step = { state, effects: [] as Effect[] };
      if (isChunk(frame.data)) applyChunk(step, frame.data, frame.data.index, frame.data.chunk);
      else if (frame.data.isComplete) applyComplete(step, frame.data);
      else applyOtherInFlight(step, frame.data);
      return step;
    }
    case 'recovery':
      return applyRecovery(state, frame);
    case 'error':
      return applyError(state, frame);
    case 'pong':
      return done(state);
  }
}

function applyHistory(state: ChatState, frame: Extract<ServerFrame, { type: 'history' }>): Step {
  if (frame.sessionId && frame.sessionId !== state.sessionId) return done(state);
  const messages = frame.messages.map(toUi);
  const lastIndex: Record<string, number> = {};
  if (frame.streaming) lastIndex[frame.streaming.messageId] = frame.streaming.lastIndex;
  const streamingIds = new Set(messages.filter((m) => !m.isComplete).map((m) => m.messageId));
  // The accepted answer is registered before `accepted` is sent, so a history read later (on
  // a new socket) has it: complete (it is over) or in flight (keep it). Only a history on the
  // same socket, read before the chat was taken, may lack it.
  let acceptedAnswerId = state.acceptedAnswerId;
  if (acceptedAnswerId !== null) {
    const entry = messages.find((m) => m.messageId === acceptedAnswerId);
    if (entry ? entry.isComplete : !state.synced) acceptedAnswerId = null;
  }
  return done({
    ...state,
    synced: true,
    messages,
    lastIndex,
    held: {},
    resuming: {},
    cancelling: state.cancelling.filter((id) => streamingIds.has(id)),
    // A chat sent on a socket that then closed either made it (its answer is in this history)
    // or was lost with that socket; a second history on the same socket changes nothing.
    awaitingReply: state.synced && state.awaitingReply && frame.streaming === null,
    acceptedAnswerId,
  });
}

/**
 * Applies one chunk: dedupe, append, or hold it (and ask for the gap when `askOnGap`; a
 * recovery asks once after all its chunks instead). Replaces `step.state`, pushes effects.
 */
function applyChunk(
  step: Step,
  template: WireMessage,
  index: number,
  delta: string,
  askOnGap = true,
): void {
  const id = template.messageId;
  let state = step.state;
  const at = state.messages.findIndex((m) => m.messageId === id);
  const existing = at >= 0 ? state.messages[at] : undefined;
  if (existing?.isComplete) return; // a late copy of an answer that has ended
  const last = state.lastIndex[id] ?? -1;
  if (index <= last) return; // already applied
  if (index > last + 1) {
    state = { ...state, held: { ...state.held, [id]: { ...state.held[id], [index]: delta } } };
    step.state = state;
    if (askOnGap) askForGap(step, id);
    return;
  }
  // index === last + 1: append it, then whatever held chunks now follow on. Without a known
  // lastIndex (an in-flight answer that `history` did not name in `streaming`), the shown text
  // cannot be matched to chunk indices, so the chunks from 0 rebuild it.
  const base = state.lastIndex[id] === undefined ? '' : (existing?.content ?? '');
  let content = base + delta;
  let newLast = index;
  const held = { ...state.held[id] };
  while (held[newLast + 1] !== undefined) {
    content += held[newLast + 1];
    delete held[newLast + 1];
    newLast += 1;
  }
  const updated: UiMessage = existing
    ? { ...existing, content }
    : { ...toUi(template), content, status: 'streaming', isComplete: false };
  const messages =
    at >= 0 ? replaceAt(state.messages, at, updated) : [...state.messages, updated];
  const nextHeld = { ...state.held };
  if (Object.keys(held).length > 0) nextHeld[id] = held;
  else delete nextHeld[id];
  step.state = {
    ...state,
    messages,
    lastIndex: { ...state.lastIndex, [id]: newLast },
    held: nextHeld,
    awaitingReply: updated.role === 'assistant' ? false : state.awaitingReply,
  };
  if (nextHeld[id] && askOnGap) askForGap(step, id);
}

/** Sends `resume` for the first missing chunk of `id`, unless one is already outstanding. */
function askForGap(step: Step, id: string): void {
  if (step.state.resuming[id] !== undefined) return;
  const fromIndex = (step.state.lastIndex[id] ?? -1) + 1;
  step.state = { ...step.state, resuming: { ...step.state.resuming, [id]: fromIndex } };
  step.effects.push({ type: 'send', frame: { type: 'resume', messageId: id, fromIndex } });
}

/** A complete message: replaces an in-flight answer, is added if new, dropped if known. */
function applyComplete(step: Step, wire: WireMessage): void {
  const state = step.state;
  const id = wire.messageId;
  const at = state.messages.findIndex((m) => m.messageId === id);
  if (at >= 0 && state.messages[at]!.isComplete) return;
  const message = toUi(wire);
  const messages =
    at >= 0 ? replaceAt(state.messages, at, message) : [...state.messages, message];
  const endedLive = at >= 0 && message.role === 'assistant';
  step.state = {
    ...state,
    messages,
    finished: endedLive ? { messageId: id, status: message.status } : state.finished,
    lastIndex: without(state.lastIndex, id),
    held: without(state.held, id),
    resuming: without(state.resuming, id),
    cancelling: state.cancelling.filter((c) => c !== id),
    awaitingReply: message.role === 'assistant' ? false : state.awaitingReply,
    acceptedAnswerId: state.acceptedAnswerId === id ? null : state.acceptedAnswerId,
  };
}

/** An in-flight message frame that is not a chunk (not sent today): shown if new. */
function applyOtherInFlight(step: Step, wire: WireMessage): void {
  if (step.state.messages.some((m) => m.messageId === wire.messageId)) return;
  step.state = { ...step.state, messages: [...step.state.messages, toUi(wire)] };
}

function applyRecovery(state: ChatState, frame: Extract<ServerFrame, { type: 'recovery' }>): Step {
  const id = frame.messageId;
  const asked = state.resuming[id];
  const step: Step = { state: { ...state, resuming: without(state.resuming, id) }, effects: [] };
  switch (frame.status) {
    case 'RECOVERED': {
      const before = step.state.lastIndex[id] ?? -1;
      for (const chunk of frame.chunks) {
        if (chunk.messageId === id && isChunk(chunk)) {
          applyChunk(step, chunk, chunk.index, chunk.chunk, false);
        }
      }
      // Still a gap after the chunks (more were published while the recovery was read): ask
      // again, unless this answer brought nothing, which would only repeat itself.
      if (step.state.held[id] && step.state.resuming[id] === undefined) {
        if ((step.state.lastIndex[id] ?? -1) > before) askForGap(step, id);
        else step.effects.push({ type: 'resync', reason: `no chunks recovered for ${id}` });
      }
      return step;
    }
    case 'COMPLETED':
      if (frame.message && frame.message.messageId === id) applyComplete(step, frame.message);
      else step.effects.push({ type: 'resync', reason: `recovery of ${id} had no message` });
      return step;
    case 'EXPIRED':
    case 'NOT_FOUND':
      step.effects.push({ type: 'resync', reason: `recovery of ${id}: ${frame.status}` });
      return step;
    case 'ERROR':
    default: {
      const fromIndex = asked ?? (state.lastIndex[id] ?? -1) + 1;
      step.state = { ...step.state, resuming: { ...step.state.resuming, [id]: fromIndex } };
      step.effects.push({
        type: 'sendLater',
        frame: { type: 'resume', messageId: id, fromIndex },
        delayMs: RESUME_RETRY_MS,
      });
      return step;
    }
  }
}

function applyError(state: ChatState, frame: Extract<ServerFrame, { type: 'error' }>): Step {
  let next: ChatState = { ...state, awaitingReply: false };
  if ((frame.code === 'STREAM_FAILED' || frame.code === 'UPSTREAM_ERROR') && frame.messageId) {
    // Shown on the answer itself, whose final message (status failed) follows.
    next.failures = { ...state.failures, [frame.messageId]: frame.error };
    return done(next);
  }
  if (frame.code === 'NOT_FOUND') {
    // A cancel of an answer that is gone: no final message will end it here.
    next.cancelling = [];
    const accepted = state.acceptedAnswerId;
    if (accepted && state.cancelling.includes(accepted) && (frame.messageId ?? accepted) === accepted) {
      next.acceptedAnswerId = null;
    }
  }
  next = addNotice(next, {
    code: frame.code,
    text: frame.error,
    ...(frame.messageId ? { messageId: frame.messageId } : {}),
  });
  return done(next);
}

/** Adds a notice; one that repeats a shown one (same code and text) replaces it. */
function addNotice(state: ChatState, notice: Omit<Notice, 'id'>): ChatState {
  const others = state.notices.filter(
    (n) => !(n.code === notice.code && n.text === notice.text && n.messageId === notice.messageId),
  );
  const notices = [...others, { ...notice, id: state.nextNoticeId }].slice(-MAX_NOTICES);
  return { ...state, notices, nextNoticeId: state.nextNoticeId + 1 };
}

function toUi(m: WireMessage): UiMessage {
  return {
    messageId: m.messageId,
    role: m.role,
    userId: m.userId,
    content: m.content ?? '',
    status: m.status ?? (m.isComplete ? 'completed' : 'streaming'),
    isComplete: m.isComplete,
    timestamp: m.timestamp,
  };
}

/** The answer currently streaming, if any (the last in-flight assistant message). */
export function streamingAnswer(state: ChatState): UiMessage | undefined {
  for (let i = state.messages.length - 1; i >= 0; i -= 1) {
    const m = state.messages[i]!;
    if (m.role === 'assistant' && !m.isComplete) return m;
  }
  return undefined;
}

/**
 * The answer Stop cancels: the one accepted for this client's chat (from before its first
 * chunk), else the one streaming.
 */
export function stopTarget(state: ChatState): string | undefined {
  return state.acceptedAnswerId ?? streamingAnswer(state)?.messageId;
}

function done(state: ChatState): Step {
  return { state, effects: [] };
}

function replaceAt<T>(items: T[], at: number, item: T): T[] {
  const copy = items.slice();
  copy[at] = item;
  return copy;
}

function without<V>(record: Record<string, V>, key: string): Record<string, V> {
  if (!(key in record)) return record;
  const copy = { ...record };
  delete copy[key];
  return copy;
}
