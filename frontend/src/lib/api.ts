// REST calls to the gateway, and what their errors mean for the app. Every call carries
// `Authorization: Bearer <token>` when the app has a token. No React here; `fetch` is injectable
// so the tests can answer with canned responses.

/** The part of `fetch` used here. */
export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

export interface ApiClient {
  /** REST base without trailing slash, e.g. https://chat.example/api. */
  apiUrl: string;
  /** The token to send, read at each call (null: none). */
  token: () => string | null;
  fetch?: FetchLike;
}

/** The Authorization header for `token`, or nothing without one. */
export function authHeaders(token: string | null): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** A REST call that failed, as the app reacts to it. */
export type RestFailure =
  /** 401 UNAUTHORIZED: the token is missing, invalid or expired; show the sign-in step. */
  | { kind: 'unauthorized'; error: string }
  /** Anything else: a notice (`code` as the Notices component knows it, `text` its detail). */
  | { kind: 'notice'; code: string; text: string };

export class RestError extends Error {
  constructor(readonly failure: RestFailure) {
    super(failure.kind === 'unauthorized' ? `unauthorized: ${failure.error}` : failure.text);
    this.name = 'RestError';
  }
}

/**
 * What a REST call's rejection means: the server's refusal (a RestError's failure), or, when the
 * request could not be made at all, a notice with `code` and `text`.
 */
export function failureOf(e: unknown, code: string, text: string): RestFailure {
  return e instanceof RestError ? e.failure : { kind: 'notice', code, text };
}

/**
 * How long to wait from a `Retry-After` header: seconds (`"30"`) or an HTTP date, rounded up
 * to whole seconds. Null when absent or unreadable.
 */
export function retryAfterSeconds(header: string | null, now: number = Date.now()): number | null {
  if (header == null) return null;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value);
  const at = Date.parse(value);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** "30 s", "2 min", "1 min 30 s". */
export function formatWait(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  const min = Math.floor(seconds / 60);
  const s = seconds % 60;
  return s === 0 ? `${min} min` : `${min} min ${s} s`;
}

/**
 * What a failed response means: 401 asks for a token, 403 and 429 are notices (429 saying how
 * long to wait, from `Retry-After`), anything else a notice with the body's code (or `fallbackCode`).
 * Reads the body (an `ErrorBody`, `{"error","code"}`) when it is JSON.
 */
export async function restFailure(
  response: Response,
  fallbackCode = 'HTTP_ERROR',
  now: number = Date.now(),
): Promise<RestFailure> {
  const body = await readErrorBody(response);
  if (response.status === 401) return { kind: 'unauthorized', error: body.error ?? '' };
  if (response.status === 403) {
    return {
      kind: 'notice',
      code: 'FORBIDDEN',
      text: body.error || 'The server refused this request for your account.',
    };
  }
  if (response.status === 429) {
    const wait = retryAfterSeconds(response.headers.get('retry-after'), now);
    return {
      kind: 'notice',
      code: 'RATE_LIMITED',
      text:
        wait === null || wait === 0
          ? 'Wait a moment before trying again.'
          : `Wait ${formatWait(wait)} before trying again.`,
    };
  }
  return {
    kind: 'notice',
    code: body.code ?? fallbackCode,
    text: body.error || `HTTP ${response.status}`,
  };
}

async function readErrorBody(response: Response): Promise<{ error?: string; code?: string }> {
  try {
    const value: unknown = await response.json();
    if (typeof value !== 'object' || value === null) return {};
    const v = value as Record<string, unknown>;
    return {
      ...(typeof v.error === 'string' ? { error: v.error } : {}),
      ...(typeof v.code === 'string' ? { code: v.code } : {}),
    };
  } catch {
    return {};
  }
}

/**
 * `POST {apiUrl}/cancel`: cancels an answer while the socket is down. Resolves on 200 and on
 * 404 (the answer ended meanwhile; its final frame arrives with the next `history`); rejects
 * with a RestError otherwise (and with the fetch error when the request could not be made).
 */
export async function cancelAnswer(client: ApiClient, sessionId: string, messageId: string): Promise<void> {
  const response = await fetchOf(client)(`${client.apiUrl}/cancel`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders(client.token()) },
    body: JSON.stringify({ session_id: sessionId, message_id: messageId }),
  });
  if (response.ok || response.status === 404) return;
  throw new RestError(await restFailure(response, 'CANCEL_FAILED'));
}

/** One conversation of the sidebar (`SessionSummary` of docs/PROTOCOL.md, camelCase). */
export interface SessionSummary {
  sessionId: string;
  /** The first user message, cut to 60 characters by the server. */
  title: string;
  /** Milliseconds since the epoch. */
  lastActivity: number;
}

/**
 * `GET {apiUrl}/sessions?user_id=`: the user's conversations, most recent first. `userId` is
 * the one the app uses (a token's subject wins on the server anyway). Entries that are not
 * well-formed are skipped. Rejects with a RestError on a refusal.
 */
export async function listSessions(client: ApiClient, userId: string): Promise<SessionSummary[]> {
  const query = new URLSearchParams({ user_id: userId });
  const response = await fetchOf(client)(`${client.apiUrl}/sessions?${query.toString()}`, {
    headers: authHeaders(client.token()),
  });
  if (!response.ok) throw new RestError(await restFailure(response, 'SESSIONS_FAILED'));
  const body: unknown = await response.json();
  const list = (body as { sessions?: unknown } | null)?.sessions;
  if (!Array.isArray(list)) return [];
  return list.flatMap((entry: unknown) => {
    const e = entry as Record<string, unknown> | null;
    if (!e || typeof e.session_id !== 'string' || typeof e.last_activity_time !== 'number') return [];
    return [
      {
        sessionId: e.session_id,
        title: typeof e.title === 'string' ? e.title : '',
        lastActivity: e.last_activity_time,
      },
    ];
  });
}

/**
 * `DELETE {apiUrl}/history/{sessionId}`: removes the conversation from Redis and SQL. Rejects
 * with a RestError on a refusal.
 */
export async function deleteConversation(client: ApiClient, sessionId: string): Promise<void> {
  const response = await fetchOf(client)(`${client.apiUrl}/history/${encodeURIComponent(sessionId)}`, {
    method: 'DELETE',
    headers: authHeaders(client.token()),
  });
  if (!response.ok) throw new RestError(await restFailure(response, 'DELETE_FAILED'));
}

function fetchOf(client: ApiClient): FetchLike {
  return client.fetch ?? ((url, init) => globalThis.fetch(url, init));
}
