import { describe, expect, it } from 'vitest';
import { resolveEndpoints, socketUrl } from './config';
import { ID_PATTERN } from './protocol';
import { loadOrCreateId, randomId, type KeyValueStore } from './session';

describe('endpoints', () => {
  it('default to the page origin, ws for http and wss for https', () => {
    expect(resolveEndpoints({}, { protocol: 'http:', host: '127.0.0.1:8080' })).toEqual({
      wsUrl: 'ws://127.0.0.1:8080/ws/chat',
      apiUrl: 'http://127.0.0.1:8080/api',
    });
    expect(resolveEndpoints({}, { protocol: 'https:', host: 'chat.example' })).toEqual({
      wsUrl: 'wss://chat.example/ws/chat',
      apiUrl: 'https://chat.example/api',
    });
  });

  it('come from VITE_WS_URL and VITE_API_URL when set', () => {
    expect(
      resolveEndpoints(
        { VITE_WS_URL: 'wss://gw.example/ws/chat', VITE_API_URL: 'https://gw.example/api/' },
        { protocol: 'http:', host: 'localhost:5173' },
      ),
    ).toEqual({ wsUrl: 'wss://gw.example/ws/chat', apiUrl: 'https://gw.example/api' });
  });

  it('the socket URL carries session_id and user_id by name', () => {
    expect(socketUrl('ws://h/ws/chat', 's-1', 'u_2')).toBe('ws://h/ws/chat?session_id=s-1&user_id=u_2');
    expect(socketUrl('ws://h/ws/chat?token=t', 's', 'u')).toBe('ws://h/ws/chat?token=t&session_id=s&user_id=u');
  });
});

describe('session ids', () => {
  const memory = (): KeyValueStore & { data: Map<string, string> } => {
    const data = new Map<string, string>();
    return { data, getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) };
  };

  it('are random and valid for the server', () => {
    const a = randomId('s');
    expect(a).toMatch(ID_PATTERN);
    expect(a).toMatch(/^s-[A-Za-z0-9_-]{22}$/);
    expect(randomId('s')).not.toBe(a);
    expect(randomId('s', (b) => b.fill(255))).toBe('s-_____________________w');
  });

  it('are kept across loads, and replaced when the stored one is invalid', () => {
    const store = memory();
    const first = loadOrCreateId(store, 'k', 's');
    expect(loadOrCreateId(store, 'k', 's')).toBe(first);
    store.data.set('k', 'bad id with spaces');
    const replaced = loadOrCreateId(store, 'k', 's');
    expect(replaced).toMatch(ID_PATTERN);
    expect(store.data.get('k')).toBe(replaced);
  });

  it('still work when storage throws', () => {
    const broken: KeyValueStore = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('denied');
      },
    };
    expect(loadOrCreateId(broken, 'k', 's')).toMatch(ID_PATTERN);
  });
});
