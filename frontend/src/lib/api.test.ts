import { describe, expect, it } from 'vitest';
import { fakeFetch, jsonResponse } from '../test/fakes';
import { authHeaders, cancelAnswer, formatWait, RestError, restFailure, retryAfterSeconds } from './api';

const API = 'http://gw.test/api';

async function failure(promise: Promise<unknown>): Promise<RestError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(RestError);
    return e as RestError;
  }
  throw new Error('expected a RestError');
}

describe('REST calls', () => {
  it('POST /cancel carries Authorization: Bearer <token> when there is a token', async () => {
    const server = fakeFetch(() => jsonResponse(200, { status: 'cancelling' }));
    await cancelAnswer({ apiUrl: API, token: () => 'jwt-7', fetch: server.fetch }, 's-1', 'm-1');
    expect(server.calls).toHaveLength(1);
    const call = server.calls[0]!;
    expect(call).toMatchObject({ url: `${API}/cancel`, method: 'POST' });
    expect(call.headers.authorization).toBe('Bearer jwt-7');
    expect(call.headers['content-type']).toBe('application/json');
    expect(JSON.parse(call.body!)).toEqual({ session_id: 's-1', message_id: 'm-1' });
  });

  it('and no Authorization header without one', async () => {
    const server = fakeFetch(() => jsonResponse(200, { status: 'cancelling' }));
    await cancelAnswer({ apiUrl: API, token: () => null, fetch: server.fetch }, 's-1', 'm-1');
    expect(server.calls[0]!.headers.authorization).toBeUndefined();
    expect(authHeaders(null)).toEqual({});
  });

  it('a cancel 404 (the answer ended meanwhile) is not an error', async () => {
    const server = fakeFetch(() => jsonResponse(404, { status: 'not_found' }));
    await expect(cancelAnswer({ apiUrl: API, token: () => null, fetch: server.fetch }, 's', 'm')).resolves.toBeUndefined();
  });

  it('401 UNAUTHORIZED asks for the sign-in step', async () => {
    const server = fakeFetch(() => jsonResponse(401, { error: 'token expired', code: 'UNAUTHORIZED' }));
    const e = await failure(cancelAnswer({ apiUrl: API, token: () => 'old', fetch: server.fetch }, 's', 'm'));
    expect(e.failure).toEqual({ kind: 'unauthorized', error: 'token expired' });
  });

  it('403 FORBIDDEN is a notice', async () => {
    const server = fakeFetch(() => jsonResponse(403, { error: 'session s belongs to another user', code: 'FORBIDDEN' }));
    const e = await failure(cancelAnswer({ apiUrl: API, token: () => 't', fetch: server.fetch }, 's', 'm'));
    expect(e.failure).toEqual({ kind: 'notice', code: 'FORBIDDEN', text: 'session s belongs to another user' });
  });

  it('429 RATE_LIMITED is a notice saying how long to wait (Retry-After)', async () => {
    const server = fakeFetch(() =>
      jsonResponse(429, { error: 'rate limited', code: 'RATE_LIMITED' }, { 'retry-after': '30' }),
    );
    const e = await failure(cancelAnswer({ apiUrl: API, token: () => 't', fetch: server.fetch }, 's', 'm'));
    expect(e.failure).toEqual({ kind: 'notice', code: 'RATE_LIMITED', text: 'Wait 30 s before trying again.' });
    const noHeader = await restFailure(jsonResponse(429, { code: 'RATE_LIMITED' }));
    expect(noHeader).toEqual({ kind: 'notice', code: 'RATE_LIMITED', text: 'Wait a moment before trying again.' });
  });

  it('other failures keep the body code and text', async () => {
    expect(await restFailure(jsonResponse(503, { error: 'redis down', code: 'UNAVAILABLE' }), 'CANCEL_FAILED')).toEqual({
      kind: 'notice',
      code: 'UNAVAILABLE',
      text: 'redis down',
    });
    expect(await restFailure(new Response('bad gateway', { status: 502 }), 'CANCEL_FAILED')).toEqual({
      kind: 'notice',
      code: 'CANCEL_FAILED',
      text: 'HTTP 502',
    });
  });

  it('Retry-After: seconds or an HTTP date', () => {
    const now = Date.parse('2024-06-10T12:00:00Z');
    expect(retryAfterSeconds('120', now)).toBe(120);
    expect(retryAfterSeconds('Mon, 10 Jun 2024 12:00:45 GMT', now)).toBe(45);
    expect(retryAfterSeconds('soon', now)).toBeNull();
    expect(retryAfterSeconds(null, now)).toBeNull();
    expect(formatWait(30)).toBe('30 s');
    expect(formatWait(120)).toBe('2 min');
    expect(formatWait(90)).toBe('1 min 30 s');
  });
});
