// The reducer and a Connection wired together as the useChat hook wires them, over a fake
// socket: what the server sends, what the client answers on the wire, and what it shows.
import { describe, expect, it } from 'vitest';
import { FakeTimers, socketFactory } from '../test/fakes';
import { accepted, chunk, chunkOf, finalOf, history, inFlight, message, recovery, SESSION, userMessage, welcome } from '../test/frames';
import { initialChatState, reduce, RESUME_RETRY_MS, type ChatEvent, type ChatState } from './chatState';
import { Connection } from './connection';
import { runEffects } from './effects';

function client() {
  const timers = new FakeTimers();
  const factory = socketFactory();
  let state: ChatState = initialChatState(SESSION);
  const cancelledOffline: string[] = [];
  const dispatch = (event: ChatEvent) => {
    const step = reduce(state, event);
    state = step.state;
    runEffects(step.effects, {
      send: (f) => conn.send(f),
      resync: () => conn.reconnectNow(),
      schedule: (fn, ms) => timers.setTimeout(fn, ms),
      cancelOffline: (id) => cancelledOffline.push(id),
    });
  };
  const conn: Connection = new Connection({
    url: `ws://x/ws/chat?session_id=${SESSION}`,
    createSocket: factory.create,
    timers,
    random: () => 0.5,
    onFrame: (frame) => dispatch({ type: 'frame', frame }),
    onClose: () => dispatch({ type: 'disconnected' }),
  });
  conn.start();
  return {
    conn,
    timers,
    factory,
    dispatch,
    cancelledOffline,
    get state() {
      return state;
    },
    text: (id: string) => state.messages.find((m) => m.messageId === id)?.content,
    connect(frames = [welcome(), history([])]) {
      factory.last.open();
      frames.forEach((f) => factory.last.receive(f));
    },
  };
}

const A = 'a1';

describe('chat over a fake socket', () => {
  it('sends resume for a gap and shows the text once the recovery fills it', () => {
    const c = client();
    c.connect([welcome(), history([userMessage('u1', 'hi'), inFlight(A, 'a')], { messageId: A, lastIndex: 0 })]);
    c.factory.last.receive(chunk(A, 3, 'd'));
    expect(c.factory.last.sent).toEqual([{ type: 'resume', messageId: A, fromIndex: 1 }]);
    expect(c.text(A)).toBe('a');
    c.factory.last.receive(recovery('RECOVERED', A, [chunkOf(A, 1, 'b'), chunkOf(A, 2, 'c'), chunkOf(A, 3, 'd')]));
    c.factory.last.receive(chunk(A, 4, 'e'));
    c.factory.last.receive(message(finalOf(A, 'abcde')));
    expect(c.text(A)).toBe('abcde');
    expect(c.factory.last.sent).toHaveLength(1);
  });

  it('retries the resume one second after a recovery ERROR', () => {
    const c = client();
    c.connect([welcome(), history([inFlight(A, 'a')], { messageId: A, lastIndex: 0 })]);
    c.factory.last.receive(chunk(A, 2, 'c'));
    c.factory.last.receive(recovery('ERROR', A));
    expect(c.factory.last.sent).toHaveLength(1);
    c.timers.advance(RESUME_RETRY_MS);
    expect(c.factory.last.sent).toEqual([
      { type: 'resume', messageId: A, fromIndex: 1 },
      { type: 'resume', messageId: A, fromIndex: 1 },
    ]);
  });

  it('reconnects at once to reload the conversation after an EXPIRED recovery', () => {
    const c = client();
    c.connect([welcome(), history([inFlight(A, 'a')], { messageId: A, lastIndex: 0 })]);
    c.factory.last.receive(chunk(A, 5, 'x'));
    c.factory.last.receive(recovery('EXPIRED', A));
    expect(c.factory.sockets).toHaveLength(2);
    c.connect([welcome('ws-node-2'), history([finalOf(A, 'all of it', 'failed')])]);
    expect(c.text(A)).toBe('all of it');
    expect(c.conn.status).toMatchObject({ state: 'connected', nodeId: 'ws-node-2' });
  });

  it('after the gateway dies mid-answer, the new socket continues the answer without loss or repeat', () => {
    const c = client();
    c.connect();
    c.factory.last.receive(message(userMessage('u1', 'hi')));
    c.factory.last.receive(chunk(A, 0, 'one'));
    c.factory.last.receive(chunk(A, 1, ' two'));
    c.factory.last.serverClose(1006);
    expect(c.conn.status.state).toBe('reconnecting');
    expect(c.state.synced).toBe(false);
    c.timers.advance(2000);
    expect(c.factory.sockets).toHaveLength(2);
    c.connect([
      welcome('ws-node-3'),
      history([userMessage('u1', 'hi'), inFlight(A, 'one two three')], { messageId: A, lastIndex: 2 }),
    ]);
    c.factory.last.receive(chunk(A, 3, ' four'));
    c.factory.last.receive(message(finalOf(A, 'one two three four')));
    expect(c.state.messages.map((m) => m.messageId)).toEqual(['u1', A]);
    expect(c.text(A)).toBe('one two three four');
    expect(c.factory.last.sent).toEqual([]);
  });

  it('Stop right after accepted, before any chunk, sends a cancel naming the accepted answer', () => {
    const c = client();
    c.connect();
    c.conn.send({ type: 'chat', message: 'hi' });
    c.dispatch({ type: 'chatSent' });
    c.factory.last.receive(accepted(A));
    c.dispatch({ type: 'stop' });
    expect(c.factory.last.sent).toEqual([
      { type: 'chat', message: 'hi' },
      { type: 'cancel', messageId: A },
    ]);
    c.factory.last.receive(message(userMessage('u1', 'hi')));
    c.factory.last.receive(message(finalOf(A, '\n\n[Cancelled]', 'cancelled')));
    expect(c.state.messages.map((m) => [m.messageId, m.status])).toEqual([
      ['u1', 'completed'],
      [A, 'cancelled'],
    ]);
    expect(c.state.acceptedAnswerId).toBeNull();
  });

  it('Stop while the socket is down cancels the accepted answer over REST', () => {
    const c = client();
    c.connect();
    c.factory.last.receive(accepted(A));
    c.factory.last.serverClose(1006);
    c.dispatch({ type: 'stop' });
    expect(c.cancelledOffline).toEqual([A]);
  });
});
