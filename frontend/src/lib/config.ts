// Where the gateway is: VITE_WS_URL and VITE_API_URL at build time, else the page's own origin
// (NGINX, or the gateway itself, serves the app and the API under one host).

export interface Endpoints {
  /** WebSocket endpoint without query, e.g. wss://chat.example/ws/chat. */
  wsUrl: string;
  /** REST base without trailing slash, e.g. https://chat.example/api. */
  apiUrl: string;
}

export interface PageLocation {
  protocol: string;
  host: string;
}

export function resolveEndpoints(
  env: { VITE_WS_URL?: string | undefined; VITE_API_URL?: string | undefined },
  location: PageLocation,
): Endpoints {
  const secure = location.protocol === 'https:';
  const wsUrl = env.VITE_WS_URL?.trim() || `${secure ? 'wss' : 'ws'}://${location.host}/ws/chat`;
  const apiUrl = env.VITE_API_URL?.trim() || `${secure ? 'https' : 'http'}://${location.host}/api`;
  return { wsUrl, apiUrl: apiUrl.replace(/\/+$/, '') };
}

/** The socket URL of one conversation: parameters by name, as the gateway reads them. */
export function socketUrl(wsUrl: string, sessionId: string, userId: string): string {
  const separator = wsUrl.includes('?') ? '&' : '?';
  const query = new URLSearchParams({ session_id: sessionId, user_id: userId });
  return `${wsUrl}${separator}${query.toString()}`;
}
