/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** WebSocket endpoint, e.g. wss://chat.example/ws/chat (default: this page's host). */
  readonly VITE_WS_URL?: string;
  /** REST base, e.g. https://chat.example/api (default: this page's host). */
  readonly VITE_API_URL?: string;
}
