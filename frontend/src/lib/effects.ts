// Runs the reducer's effects against the live connection. Shared by the useChat hook and the
// tests that drive the reducer and a Connection together over a fake socket.

import type { Effect } from './chatState';
import type { ClientFrame } from './protocol';

export interface EffectRunner {
  /** Sends on the socket; false when it is not open (the next `history` supersedes the frame). */
  send(frame: ClientFrame): boolean;
  /** Replaces the socket at once, to get a fresh `history`. */
  resync(reason: string): void;
  /** Runs `fn` after `ms`. */
  schedule(fn: () => void, ms: number): void;
  /** Cancels an answer while the socket is down (POST /api/cancel). */
  cancelOffline(messageId: string): void;
}

export function runEffects(effects: readonly Effect[], io: EffectRunner): void {
  for (const effect of effects) {
    switch (effect.type) {
      case 'send':
        io.send(effect.frame);
        break;
      case 'sendLater':
        io.schedule(() => io.send(effect.frame), effect.delayMs);
        break;
      case 'cancel':
        if (!io.send({ type: 'cancel', messageId: effect.messageId })) io.cancelOffline(effect.messageId);
        break;
      case 'resync':
        io.resync(effect.reason);
        break;
    }
  }
}
