import { describe, expect, it } from 'vitest';
import {
  accepted,
  chunk,
  chunkOf,
  errorFrame,
  finalOf,
  history,
  inFlight,
  message,
  recovery,
  SESSION,
  userMessage,
  welcome,
} from '../test/frames';
import {
  initialChatState,
  reduce,
  RESUME_RETRY_MS,
  stopTarget,
  streamingAnswer,
  type ChatEvent,
  type ChatState,
  type Effect,
} from './chatState';
import type { ServerFrame } from './protocol';

/** Applies frames (or events) in order; returns the final state and every effect. */
function run(frames: Array<ServerFrame | ChatEvent>, start: ChatState = initialChatState(SESSION)) {
  let state = start;
  const effects: Effect[] = [];
  for (const f of frames) {
    const event: ChatEvent = 'data' in f || isServerFrame(f) ? { type: 'frame', frame: f as ServerFrame } : (f as ChatEvent);
    const step = reduce(state, event);
    state = step.state;
    effects.push(...step.effects);
  }
  return { state, effects };
}

function isServerFrame(f: ServerFrame | ChatEvent): boolean {
  return ['welcome', 'history', 'message', 'accepted', 'recovery', 'pong', 'error'].includes(f.type);
}

const text = (s: ChatState, id: string) => s.messages.find((m) => m.messageId === id)?.content;
const ids = (s: ChatState) => s.messages.map((m) => m.messageId);

const U1 = userMessage('u1', 'hello');
const A1 = 'a1';

describe('welcome', () => {
  it('records the node id', () => {
    expect(run([welcome('ws-node-7')]).state.nodeId).toBe('ws-node-7');
  });

  it('ignores a welcome for another session (a socket being replaced)', () => {
    expect(run([welcome('ws-node-7', 'other')]).state.nodeId).toBeNull();
  });
});

describe('history', () => {
  it('shows the conversation and marks the state synced', () => {
    const { state } = run([welcome(), history([U1, finalOf(A1, 'Hi there')])]);
    expect(state.synced).toBe(true);
    expect(ids(state)).toEqual(['u1', A1]);
    expect(text(state, A1)).toBe('Hi there');
    expect(streamingAnswer(state)).toBeUndefined();
  });

  it('shows an in-flight answer with its partial content and continues after lastIndex', () => {
    const { state, effects } = run([
      history([U1, inFlight(A1, 'Hello! I am')], { messageId: A1, lastIndex: 2 }),
      chunk(A1, 1, ' dup'), // at or below lastIndex: already in the content
      chunk(A1, 2, ' dup'),
      chunk(A1, 3, ' the'),
      chunk(A1, 4, ' demo'),
    ]);
    expect(text(state, A1)).toBe('Hello! I am the demo');
    expect(state.lastIndex[A1]).toBe(4);
    expect(streamingAnswer(state)?.messageId).toBe(A1);
    expect(effects).toEqual([]);
  });

  it('takes a missing content as empty (lastIndex -1: no chunk yet)', () => {
    const { state } = run([
      history([U1, inFlight(A1, '')], { messageId: A1, lastIndex: -1 }),
      chunk(A1, 0, 'First'),
    ]);
    expect(text(state, A1)).toBe('First');
  });

  it('a second history replaces the state instead of merging into it', () => {
    const { state } = run([
      history([U1, inFlight(A1, 'Hel')], { messageId: A1, lastIndex: 0 }),
      chunk(A1, 1, 'lo'),
      chunk(A1, 2, ' wor'),
      // The gateway re-established its pub/sub connection and sends a fresh snapshot.
      history([U1, inFlight(A1, 'Hello wor')], { messageId: A1, lastIndex: 2 }),
      chunk(A1, 2, ' wor'),
      chunk(A1, 3, 'ld'),
    ]);
    expect(ids(state)).toEqual(['u1', A1]);
    expect(text(state, A1)).toBe('Hello world');
  });

  it('drops messages that the new history no longer has', () => {
    const { state } = run([
      history([U1, finalOf(A1, 'x')]),
      history([userMessage('u9', 'other')]),
    ]);
    expect(ids(state)).toEqual(['u9']);
  });

  it('forgets held chunks and outstanding resumes', () => {
    const { state } = run([
      history([inFlight(A1, 'a')], { messageId: A1, lastIndex: 0 }),
      chunk(A1, 3, 'x'),
      history([inFlight(A1, 'abcd')], { messageId: A1, lastIndex: 3 }),
    ]);
    expect(state.held).toEqual({});
    expect(state.resuming).toEqual({});
    expect(text(state, A1)).toBe('abcd');
  });

  it('ignores a history for another session', () => {
    const { state } = run([history([U1], null, 'other-session')]);
    expect(state.messages).toEqual([]);
    expect(state.synced).toBe(false);
  });
});

describe('message frames', () => {
  it('appends the user message, then streams the answer chunk by chunk', () => {
    const { state } = run([
      history([]),
      { type: 'chatSent' },
      message(U1),
      chunk(A1, 0, 'Hello'),
      chunk(A1, 1, '!'),
    ]);
    expect(ids(state)).toEqual(['u1', A1]);
    expect(state.messages[1]).toMatchObject({ role: 'assistant', status: 'streaming', content: 'Hello!' });
    expect(state.awaitingReply).toBe(false);
  });

  it('keeps waiting for the answer after the user message arrives', () => {
    const { state } = run([history([]), { type: 'chatSent' }, message(U1)]);
    expect(state.awaitingReply).toBe(true);
  });

  it('drops a duplicate chunk (same messageId and index)', () => {
    const { state, effects } = run([
      history([]),
      chunk(A1, 0, 'a'),
      chunk(A1, 1, 'b'),
      chunk(A1, 1, 'b'),
      chunk(A1, 0, 'a'),
      chunk(A1, 2, 'c'),
    ]);
    expect(text(state, A1)).toBe('abc');
    expect(effects).toEqual([]);
  });

  it('keeps chunks of different answers apart', () => {
    const { state } = run([history([]), chunk('a1', 0, 'one'), chunk('a2', 0, 'two'), chunk('a1', 1, '!')]);
    expect(text(state, 'a1')).toBe('one!');
    expect(text(state, 'a2')).toBe('two');
  });

  it('a final message replaces the in-flight answer, preferring its content', () => {
    const { state } = run([
      history([U1]),
      chunk(A1, 0, 'Hel'),
      chunk(A1, 1, 'lo'),
      message(finalOf(A1, 'Hello.')),
    ]);
    expect(state.messages[1]).toMatchObject({ content: 'Hello.', isComplete: true, status: 'completed' });
    expect(state.lastIndex[A1]).toBeUndefined();
    expect(streamingAnswer(state)).toBeUndefined();
  });

  it('a second copy of a complete message is a duplicate', () => {
    const { state } = run([history([U1]), message(U1), message(finalOf(A1, 'x')), message(finalOf(A1, 'y'))]);
    expect(ids(state)).toEqual(['u1', A1]);
    expect(text(state, A1)).toBe('x');
  });

  it('drops a late chunk of an answer that has ended', () => {
    const { state, effects } = run([history([U1, finalOf(A1, 'done')]), chunk(A1, 7, ' late')]);
    expect(text(state, A1)).toBe('done');
    expect(effects).toEqual([]);
  });

  it('shows a cancelled answer with its [Cancelled] text', () => {
    const { state } = run([
      history([U1]),
      chunk(A1, 0, 'Hello'),
      { type: 'cancelRequested', messageId: A1 },
      message(finalOf(A1, 'Hello\n\n[Cancelled]', 'cancelled')),
    ]);
    expect(state.messages[1]).toMatchObject({ status: 'cancelled', content: 'Hello\n\n[Cancelled]' });
    expect(state.cancelling).toEqual([]);
  });

  it('shows a failed answer', () => {
    const { state } = run([history([U1]), chunk(A1, 0, 'Hel'), message(finalOf(A1, 'Hel', 'failed'))]);
    expect(state.messages[1]).toMatchObject({ status: 'failed', isComplete: true, content: 'Hel' });
  });

  it('ignores a message of another session', () => {
    const other = { ...chunkOf(A1, 0, 'x'), sessionId: 'other' };
    expect(run([history([]), message(other)]).state.messages).toEqual([]);
  });

  it('answers a pong with no change', () => {
    const start = run([history([U1])]).state;
    expect(reduce(start, { type: 'frame', frame: { type: 'pong', timestamp: 1 } }).state).toBe(start);
  });
});

describe('gaps and recovery', () => {
  const streamingHistory = history([U1, inFlight(A1, 'a')], { messageId: A1, lastIndex: 0 });

  it('holds a chunk after a gap out of the text and asks to resume from the first missing index', () => {
    const { state, effects } = run([streamingHistory, chunk(A1, 3, 'd')]);
    expect(text(state, A1)).toBe('a');
    expect(effects).toEqual([{ type: 'send', frame: { type: 'resume', messageId: A1, fromIndex: 1 } }]);
  });

  it('asks once while a resume is outstanding', () => {
    const { effects } = run([streamingHistory, chunk(A1, 3, 'd'), chunk(A1, 4, 'e')]);
    expect(effects).toHaveLength(1);
  });

  it('asks from index 0 for the first chunk of an unknown answer missing', () => {
    const { effects } = run([history([U1]), chunk(A1, 2, 'c')]);
    expect(effects).toEqual([{ type: 'send', frame: { type: 'resume', messageId: A1, fromIndex: 0 } }]);
  });

  it('RECOVERED fills the gap, then the held chunks follow in order', () => {
    const { state, effects } = run([
      streamingHistory,
      chunk(A1, 3, 'd'),
      chunk(A1, 4, 'e'),
      recovery('RECOVERED', A1, [chunkOf(A1, 1, 'b'), chunkOf(A1, 2, 'c'), chunkOf(A1, 3, 'd')]),
      chunk(A1, 4, 'e'), // live copy of a chunk already applied
      chunk(A1, 5, 'f'),
    ]);
    expect(text(state, A1)).toBe('abcdef');
    expect(state.held).toEqual({});
    expect(state.resuming).toEqual({});
    expect(effects).toHaveLength(1);
  });

  it('asks again when chunks published after the recovery read are still missing', () => {
    const { state, effects } = run([
      streamingHistory,
      chunk(A1, 5, 'f'),
      recovery('RECOVERED', A1, [chunkOf(A1, 1, 'b'), chunkOf(A1, 2, 'c')]),
    ]);
    expect(text(state, A1)).toBe('abc');
    expect(effects.map((e) => e.type === 'send' && e.frame)).toEqual([
      { type: 'resume', messageId: A1, fromIndex: 1 },
      { type: 'resume', messageId: A1, fromIndex: 3 },
    ]);
  });

  it('reloads when a recovery brings nothing for a gap it cannot fill', () => {
    const { effects } = run([streamingHistory, chunk(A1, 5, 'f'), recovery('RECOVERED', A1, [])]);
    expect(effects.at(-1)).toMatchObject({ type: 'resync' });
  });

  it('COMPLETED replaces the answer with the final message', () => {
    const final = finalOf(A1, 'abc\n\n[Cancelled]', 'cancelled');
    const { state } = run([streamingHistory, chunk(A1, 3, 'd'), recovery('COMPLETED', A1, [], final)]);
    expect(state.messages[1]).toMatchObject({ status: 'cancelled', content: 'abc\n\n[Cancelled]', isComplete: true });
    expect(state.held).toEqual({});
  });

  it.each(['EXPIRED', 'NOT_FOUND'] as const)('%s makes the client reload the conversation', (status) => {
    const { effects } = run([streamingHistory, chunk(A1, 3, 'd'), recovery(status, A1)]);
    expect(effects.at(-1)).toMatchObject({ type: 'resync' });
  });

  it('ERROR retries the same resume after a short delay', () => {
    const { state, effects } = run([streamingHistory, chunk(A1, 3, 'd'), recovery('ERROR', A1)]);
    expect(effects.at(-1)).toEqual({
      type: 'sendLater',
      frame: { type: 'resume', messageId: A1, fromIndex: 1 },
      delayMs: RESUME_RETRY_MS,
    });
    expect(state.resuming[A1]).toBe(1);
  });

  it('rebuilds an in-flight answer that history did not name from chunk 0, without doubling it', () => {
    const { state, effects } = run([
      history([U1, inFlight(A1, 'abc')], null), // no `streaming`: which chunks are in 'abc'?
      chunk(A1, 3, 'd'),
      recovery('RECOVERED', A1, [chunkOf(A1, 0, 'a'), chunkOf(A1, 1, 'b'), chunkOf(A1, 2, 'c')]),
    ]);
    expect(effects).toEqual([{ type: 'send', frame: { type: 'resume', messageId: A1, fromIndex: 0 } }]);
    expect(text(state, A1)).toBe('abcd');
  });

  it('a socket closing forgets held chunks; the next history is the truth', () => {
    const { state } = run([streamingHistory, chunk(A1, 3, 'd'), { type: 'disconnected' }]);
    expect(state.synced).toBe(false);
    expect(state.held).toEqual({});
    expect(state.resuming).toEqual({});
    expect(text(state, A1)).toBe('a');
  });
});

describe('errors', () => {
  it('shows an error frame to the user and stops waiting for an answer', () => {
    const { state } = run([
      history([U1, inFlight(A1, 'x')], { messageId: A1, lastIndex: 0 }),
      { type: 'chatSent' },
      errorFrame('STREAM_ACTIVE', 'session demo-1 already has an answer streaming'),
    ]);
    expect(state.notices).toEqual([
      { id: 1, code: 'STREAM_ACTIVE', text: 'session demo-1 already has an answer streaming' },
    ]);
    expect(state.awaitingReply).toBe(false);
  });

  it('shows INVALID_MESSAGE', () => {
    const { state } = run([history([]), errorFrame('INVALID_MESSAGE', 'message must not be empty')]);
    expect(state.notices[0]).toMatchObject({ code: 'INVALID_MESSAGE' });
  });

  it('STREAM_FAILED with a messageId is attached to that answer; its failed final follows', () => {
    const { state } = run([
      history([U1, inFlight(A1, 'Hel')], { messageId: A1, lastIndex: 0 }),
      errorFrame('STREAM_FAILED', 'the node producing this answer stopped', A1),
      message(finalOf(A1, 'Hel', 'failed')),
    ]);
    expect(state.failures[A1]).toBe('the node producing this answer stopped');
    expect(state.messages[1]).toMatchObject({ status: 'failed' });
    expect(state.notices).toEqual([]);
  });

  it('UPSTREAM_ERROR (the model server failed) is attached to its answer the same way', () => {
    const { state } = run([
      history([U1, inFlight(A1, 'Hel')], { messageId: A1, lastIndex: 0 }),
      errorFrame('UPSTREAM_ERROR', 'the model server failed while answering; the answer is incomplete', A1),
      message(finalOf(A1, 'Hel', 'failed')),
    ]);
    expect(state.failures[A1]).toBe('the model server failed while answering; the answer is incomplete');
    expect(state.messages[1]).toMatchObject({ status: 'failed' });
    expect(state.notices).toEqual([]);
  });

  it('shows the auth error frames (RATE_LIMITED, FORBIDDEN, UNAUTHORIZED) as notices', () => {
    const { state } = run([
      history([]),
      errorFrame('RATE_LIMITED', 'too many chats; retry in 12 s'),
      errorFrame('FORBIDDEN', 'session belongs to another user'),
      errorFrame('UNAUTHORIZED', 'token expired'),
    ]);
    expect(state.notices.map((n) => [n.code, n.text])).toEqual([
      ['RATE_LIMITED', 'too many chats; retry in 12 s'],
      ['FORBIDDEN', 'session belongs to another user'],
      ['UNAUTHORIZED', 'token expired'],
    ]);
  });

  it('a notice that repeats a shown one replaces it instead of piling up', () => {
    const tooMany = { type: 'localError', code: 'TOO_MANY_TABS', text: 'This tab keeps trying to reconnect.' } as const;
    const { state } = run([history([]), tooMany, errorFrame('AI_UNAVAILABLE', 'x'), tooMany, tooMany]);
    expect(state.notices.map((n) => n.code)).toEqual(['AI_UNAVAILABLE', 'TOO_MANY_TABS']);
    expect(state.notices[1]!.id).toBe(4);
  });

  it('keeps the last few notices and lets the user dismiss them', () => {
    let { state } = run([history([])]);
    for (let i = 0; i < 6; i += 1) state = run([errorFrame('AI_UNAVAILABLE', `try ${i}`)], state).state;
    expect(state.notices.map((n) => n.text)).toEqual(['try 2', 'try 3', 'try 4', 'try 5']);
    state = reduce(state, { type: 'dismissNotice', id: state.notices[0]!.id }).state;
    expect(state.notices.map((n) => n.text)).toEqual(['try 3', 'try 4', 'try 5']);
  });

  it('a cancel of an answer that is gone (NOT_FOUND) clears the stopping mark', () => {
    const { state } = run([
      history([inFlight(A1, 'x')], { messageId: A1, lastIndex: 0 }),
      { type: 'cancelRequested', messageId: A1 },
      errorFrame('NOT_FOUND', 'no answer a1 in this session'),
    ]);
    expect(state.cancelling).toEqual([]);
  });
});

describe('reconnect', () => {
  it('a chat lost with its socket stops the waiting indicator at the next history', () => {
    const { state } = run([history([]), { type: 'chatSent' }, { type: 'disconnected' }, welcome(), history([])]);
    expect(state.awaitingReply).toBe(false);
  });

  it('after a reconnect, history then live chunks give the text exactly once', () => {
    const { state } = run([
      history([U1]),
      chunk(A1, 0, 'one'),
      chunk(A1, 1, ' two'),
      { type: 'disconnected' },
      welcome('ws-node-2'),
      history([U1, inFlight(A1, 'one two three')], { messageId: A1, lastIndex: 2 }),
      chunk(A1, 2, ' three'),
      chunk(A1, 3, ' four'),
      message(finalOf(A1, 'one two three four')),
    ]);
    expect(state.nodeId).toBe('ws-node-2');
    expect(ids(state)).toEqual(['u1', A1]);
    expect(text(state, A1)).toBe('one two three four');
  });
});

describe('accepted', () => {
  const sent: Array<ServerFrame | ChatEvent> = [history([]), { type: 'chatSent' }];
  const stop: ChatEvent = { type: 'stop' };

  it('offers Stop right after accepted, before any chunk, and adds no message', () => {
    const { state } = run([...sent, accepted(A1)]);
    expect(state.acceptedAnswerId).toBe(A1);
    expect(stopTarget(state)).toBe(A1);
    expect(state.messages).toEqual([]);
    expect(state.awaitingReply).toBe(true); // the "thinking" placeholder stays
  });

  it('Stop before the first chunk cancels the accepted answer, once', () => {
    const { state, effects } = run([...sent, accepted(A1), message(U1), stop, stop]);
    expect(effects).toEqual([{ type: 'cancel', messageId: A1 }]);
    expect(state.cancelling).toEqual([A1]);
    expect(state.messages.map((m) => m.messageId)).toEqual(['u1']);
  });

  it('the cancelled final ends it: no Stop, no stopping mark', () => {
    const { state } = run([
      ...sent,
      accepted(A1),
      stop,
      message(U1),
      message(finalOf(A1, '\n\n[Cancelled]', 'cancelled')),
    ]);
    expect(state.acceptedAnswerId).toBeNull();
    expect(stopTarget(state)).toBeUndefined();
    expect(state.cancelling).toEqual([]);
    expect(state.awaitingReply).toBe(false);
    expect(state.messages[1]).toMatchObject({ messageId: A1, status: 'cancelled' });
  });

  it('Stop without accepted or a streaming answer does nothing', () => {
    const { state, effects } = run([...sent, stop]);
    expect(effects).toEqual([]);
    expect(state.cancelling).toEqual([]);
  });

  it('arriving before the user message or after the first chunk is harmless', () => {
    const before = run([...sent, accepted(A1), message(U1), chunk(A1, 0, 'Hi'), chunk(A1, 1, '!')]).state;
    const after = run([...sent, message(U1), chunk(A1, 0, 'Hi'), accepted(A1), chunk(A1, 1, '!')]).state;
    for (const state of [before, after]) {
      expect(ids(state)).toEqual(['u1', A1]);
      expect(text(state, A1)).toBe('Hi!');
      expect(stopTarget(state)).toBe(A1);
    }
    const { effects } = run([stop], after);
    expect(effects).toEqual([{ type: 'cancel', messageId: A1 }]);
  });

  it('arriving after the final is ignored', () => {
    const { state, effects } = run([...sent, message(U1), chunk(A1, 0, 'Hi'), message(finalOf(A1, 'Hi')), accepted(A1)]);
    expect(state.acceptedAnswerId).toBeNull();
    expect(stopTarget(state)).toBeUndefined();
    expect(ids(state)).toEqual(['u1', A1]);
    expect(effects).toEqual([]);
  });

  it('a duplicate changes nothing', () => {
    const once = run([...sent, accepted(A1)]).state;
    expect(reduce(once, { type: 'frame', frame: accepted(A1) }).state).toBe(once);
  });

  it('is ignored for another session', () => {
    expect(run([...sent, accepted(A1, 'u1', 'other')]).state.acceptedAnswerId).toBeNull();
  });

  it('a failed answer ends it', () => {
    const { state } = run([
      ...sent,
      accepted(A1),
      errorFrame('STREAM_FAILED', 'the node producing this answer stopped', A1),
      message(finalOf(A1, '', 'failed')),
    ]);
    expect(state.acceptedAnswerId).toBeNull();
    expect(stopTarget(state)).toBeUndefined();
  });

  it('a NOT_FOUND answer to its cancel ends it', () => {
    const { state } = run([...sent, accepted(A1), stop, errorFrame('NOT_FOUND', 'no answer a1', A1)]);
    expect(state.acceptedAnswerId).toBeNull();
    expect(state.cancelling).toEqual([]);
  });

  it('after a reconnect, a history with the answer in flight keeps it stoppable', () => {
    const { state, effects } = run([
      ...sent,
      accepted(A1),
      { type: 'disconnected' },
      welcome('ws-node-2'),
      history([U1, inFlight(A1, '')], { messageId: A1, lastIndex: -1 }),
      chunk(A1, 0, 'Hi'),
      stop,
    ]);
    expect(ids(state)).toEqual(['u1', A1]);
    expect(text(state, A1)).toBe('Hi');
    expect(state.acceptedAnswerId).toBe(A1);
    expect(effects).toEqual([{ type: 'cancel', messageId: A1 }]);
  });

  it('Stop pressed while disconnected survives the history that shows the answer in flight', () => {
    const { state } = run([
      ...sent,
      accepted(A1),
      { type: 'disconnected' },
      stop,
      history([U1, inFlight(A1, 'Hi')], { messageId: A1, lastIndex: 0 }),
    ]);
    expect(state.cancelling).toEqual([A1]);
    expect(stopTarget(state)).toBe(A1);
  });

  it('a history that shows the answer complete ends it', () => {
    const { state } = run([
      ...sent,
      accepted(A1),
      stop,
      { type: 'disconnected' },
      history([U1, finalOf(A1, '\n\n[Cancelled]', 'cancelled')]),
    ]);
    expect(state.acceptedAnswerId).toBeNull();
    expect(stopTarget(state)).toBeUndefined();
    expect(state.cancelling).toEqual([]);
    expect(state.awaitingReply).toBe(false);
    expect(state.messages[1]).toMatchObject({ status: 'cancelled' });
  });

  it('a history on a new socket without the answer forgets it', () => {
    const { state } = run([...sent, accepted(A1), { type: 'disconnected' }, history([U1])]);
    expect(state.acceptedAnswerId).toBeNull();
    expect(stopTarget(state)).toBeUndefined();
  });

  it('a history on the same socket read before the answer started keeps it', () => {
    const { state } = run([...sent, accepted(A1), history([])]);
    expect(state.acceptedAnswerId).toBe(A1);
    const { state: later } = run([message(U1), chunk(A1, 0, 'Hi'), message(finalOf(A1, 'Hi'))], state);
    expect(later.acceptedAnswerId).toBeNull();
    expect(ids(later)).toEqual(['u1', A1]);
  });
});
