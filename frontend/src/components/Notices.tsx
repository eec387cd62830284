// Errors from the server (`error` frames, refused REST calls, auth close codes) and from the
// client, each dismissable; they also go away by themselves after a while. A known code gets a
// plain-language headline; the server's own text follows as the detail.

import { useEffect } from 'react';
import type { Notice } from '../lib/chatState';

const FRIENDLY: Record<string, string> = {
  STREAM_ACTIVE: 'An answer is still being written. Wait for it to finish, or press Stop to end it.',
  INVALID_MESSAGE: 'That message cannot be sent: it is empty or too long.',
  AI_UNAVAILABLE: 'No AI node is available right now; your message was not answered. Try again in a moment.',
  UNAVAILABLE: 'The server storage is unavailable. Try again in a moment.',
  TOO_LARGE: 'That message is too large.',
  NOT_FOUND: 'That answer no longer exists.',
  NOT_CONNECTED: 'Not connected: your message was not sent.',
  RATE_LIMITED: 'You are sending messages too fast. Wait a little, then send again.',
  FORBIDDEN: 'Your account is not allowed to do that.',
  UNAUTHORIZED: 'You are not signed in, or your token has expired. Sign in again.',
  // Close code 4429 (lib/auth).
  TOO_MANY_TABS: 'Too many open tabs; close some and retry.',
};

const AUTO_DISMISS_MS = 12_000;

export function Notices({ notices, onDismiss }: { notices: Notice[]; onDismiss: (id: number) => void }) {
  return (
    <div className="notices" aria-live="assertive">
      {notices.map((n) => (
        <NoticeItem key={n.id} notice={n} onDismiss={onDismiss} />
      ))}
    </div>
  );
}

function NoticeItem({ notice, onDismiss }: { notice: Notice; onDismiss: (id: number) => void }) {
  useEffect(() => {
    const timer = setTimeout(() => onDismiss(notice.id), AUTO_DISMISS_MS);
    return () => clearTimeout(timer);
  }, [notice.id, onDismiss]);
  const friendly = FRIENDLY[notice.code];
  return (
    <div className="notice" role="alert" data-testid="notice" data-code={notice.code}>
      <div className="notice__text">
        <strong>{friendly ?? 'Something went wrong.'}</strong>
        {notice.text && notice.text !== friendly && <span className="notice__detail">{notice.text}</span>}
      </div>
      <span className="notice__code">{notice.code}</span>
      <button type="button" className="notice__close" onClick={() => onDismiss(notice.id)} aria-label="Dismiss">
        ×
      </button>
    </div>
  );
}
