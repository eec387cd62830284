import { describe, expect, it } from 'vitest';
import { isChunk, parseServerFrame } from './protocol';

describe('parseServerFrame', () => {
  it('reads the frames of PROTOCOL.md', () => {
    const history = parseServerFrame(
      '{"type":"history","sessionId":"demo-1","messages":[{"messageId":"m","sessionId":"demo-1","userId":"alice","role":"assistant","timestamp":1,"isComplete":false,"status":"streaming"}],"streaming":{"messageId":"m","lastIndex":-1}}',
    );
    expect(history).toMatchObject({ type: 'history', streaming: { messageId: 'm', lastIndex: -1 } });
    expect(parseServerFrame('{"type":"history","sessionId":"s","messages":[]}')).toMatchObject({ streaming: null });
    expect(parseServerFrame('{"type":"recovery","status":"NOT_FOUND","messageId":"m"}')).toMatchObject({ chunks: [] });
    expect(
      parseServerFrame(
        '{"type":"accepted","sessionId":"demo-1","userMessageId":"u","messageId":"m","nodeId":"ai-node-2"}',
      ),
    ).toEqual({ type: 'accepted', sessionId: 'demo-1', userMessageId: 'u', messageId: 'm', nodeId: 'ai-node-2' });
    expect(parseServerFrame('{"type":"pong","timestamp":5}')).toEqual({ type: 'pong', timestamp: 5 });
    expect(parseServerFrame('{"type":"error","error":"x","code":"STREAM_ACTIVE","timestamp":1}')).toMatchObject({
      code: 'STREAM_ACTIVE',
    });
  });

  it('rejects what is not a well-formed frame instead of throwing', () => {
    for (const bad of [
      '',
      'nope',
      '[]',
      '"text"',
      '{"type":7}',
      '{"type":"dance"}',
      '{"type":"welcome"}',
      '{"type":"message"}',
      '{"type":"accepted","sessionId":"s","userMessageId":"u"}',
      '{"type":"accepted","sessionId":"s","userMessageId":"u","messageId":7}',
      '{"type":"accepted","sessionId":"s","messageId":"m"}',
      '{"type":"message","data":{"messageId":"m","role":"assistant","isComplete":"no"}}',
      '{"type":"message","data":{"messageId":"m","role":"assistant","isComplete":false,"index":-1,"chunk":"x"}}',
      '{"type":"history","sessionId":"s","messages":[{}]}',
      '{"type":"history","sessionId":"s","messages":[],"streaming":{"messageId":"m"}}',
    ]) {
      expect(parseServerFrame(bad), bad).toBeNull();
    }
  });

  it('tells chunks from complete messages', () => {
    const base = { messageId: 'm', sessionId: 's', userId: 'u', role: 'assistant' as const, timestamp: 1 };
    expect(isChunk({ ...base, isComplete: false, status: 'streaming', index: 0, chunk: '' })).toBe(true);
    expect(isChunk({ ...base, isComplete: true, status: 'completed', content: 'x' })).toBe(false);
    expect(isChunk({ ...base, isComplete: false, status: 'streaming', content: 'x' })).toBe(false);
  });
});
